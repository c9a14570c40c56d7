// GET /healthz: the process is alive. GET /readyz: it should receive traffic; it turns 503 as
// soon as shutdown begins (server.shutdownDelayMs before the listener closes, while requests are
// still served), so a load balancer stops sending before connections are refused.
import type { FastifyInstance } from 'fastify';

export interface Readiness {
  /** Shutdown has begun: /readyz answers 503, requests are still served (shutdownDelayMs). */
  unready: boolean;
  /** The listener is closing: new requests get 503 shutting_down. */
  draining: boolean;
}

export function registerHealthRoutes(app: FastifyInstance, readiness: Readiness): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (readiness.unready || readiness.draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ready' };
  });
}
