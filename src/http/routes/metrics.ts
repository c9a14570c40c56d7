// GET /metrics: the Prometheus scrape endpoint. Open by default (Prometheus scrapes it and
// operators restrict it by network); with a `token`, only `Authorization: Bearer <token>` gets
// in. It is outside /v1, so team keys never apply to it.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';

export interface RenderedMetrics {
  contentType: string;
  body: string;
}

/** A Metrics object, or a cluster worker's view of the whole gateway (cluster/metrics-ipc.ts). */
export interface MetricsSource {
  render(): Promise<RenderedMetrics>;
}

export interface MetricsRouteOptions {
  /** When set, scrapes must send it as a bearer token (Prometheus: `authorization.credentials`). */
  token?: string | undefined;
  /** Default /metrics. */
  path?: string;
}

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i;

/** Fixed-length digests, so the comparison takes the same time whatever the candidate's length. */
function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

export function registerMetricsRoute(
  app: FastifyInstance,
  metrics: MetricsSource,
  options: MetricsRouteOptions = {},
): void {
  // An empty token would read as "no check": refuse it rather than open the endpoint by accident.
  if (options.token === '') throw new Error('metrics token is empty: leave it unset for an open /metrics');
  const expected = options.token === undefined ? undefined : digest(options.token);

  app.get(options.path ?? '/metrics', async (request, reply) => {
    if (expected) {
      const presented = BEARER.exec(request.headers.authorization ?? '')?.[1];
      if (presented === undefined || !timingSafeEqual(digest(presented), expected)) {
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer realm="metrics"')
          .type('text/plain; charset=utf-8')
          .send('unauthorized\n');
      }
    }
    let rendered: RenderedMetrics;
    try {
      rendered = await metrics.render();
    } catch (err) {
      // A cluster whose aggregation failed (a worker that did not answer in time): a failed scrape,
      // which Prometheus records as such, rather than one worker's counts passed off as the total.
      request.log.warn({ err }, 'metrics: could not render');
      return reply
        .code(503)
        .header('cache-control', 'no-store')
        .type('text/plain; charset=utf-8')
        .send(`metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`);
    }
    return reply.header('cache-control', 'no-store').type(rendered.contentType).send(rendered.body);
  });
}
