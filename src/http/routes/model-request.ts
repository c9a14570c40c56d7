// POST /v1/chat/completions and POST /v1/embeddings: build the PipelineContext from the
// authenticated, validated request, run the pipeline, and reply with JSON or SSE. The client's
// disconnect aborts ctx.signal, which aborts the upstream request at once.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from '../../config/schema.js';
import { GatewayError } from '../../errors.js';
import type { Endpoint, Next, Outcome, PipelineContext } from '../../pipeline/types.js';
import { ClientAbortedError } from '../../providers/upstream-client.js';
import { toGatewayError } from '../error-reply.js';
import type { RequestFinisher } from '../request-state.js';
import type { Metrics } from '../../metrics/metrics.js';
import { chatCompletionsBodySchema } from '../schemas/chat-completions.js';
import { embeddingsBodySchema } from '../schemas/embeddings.js';
import { writeSse } from '../sse-writer.js';
import { Canceller } from '../../pipeline/abort.js';
import { applyOutputCap, OUTPUT_CAP_HEADER } from '../../accounting/output-cap.js';
import type { TierConfig } from '../../config/schema.js';

export interface ModelRouteDeps {
  config: Config;
  pipeline: Next;
  log: Logger;
  /** The request's log line and metrics, when its handler settles after the socket closed. */
  finish: RequestFinisher;
  metrics?: Metrics | undefined;
  /** A team's tier and its output cap, when it has one. */
  tierOf?: (team: string) => { name: string; tier: TierConfig } | undefined;
}

export function registerModelRoutes(app: FastifyInstance, deps: ModelRouteDeps): void {
  app.post('/v1/chat/completions', { schema: { body: chatCompletionsBodySchema } }, (request, reply) =>
    handle(request, reply, 'chat', deps),
  );
  app.post('/v1/embeddings', { schema: { body: embeddingsBodySchema } }, (request, reply) =>
    handle(request, reply, 'embeddings', deps),
  );
}

async function handle(
  request: FastifyRequest,
  reply: FastifyReply,
  endpoint: Endpoint,
  deps: ModelRouteDeps,
): Promise<void> {
  request.tg.inHandler = true;
  try {
    await run(request, reply, endpoint, deps);
  } finally {
    request.tg.inHandler = false;
    if (request.tg.logWhenHandled) deps.finish(request, reply);
  }
}

async function run(
  request: FastifyRequest,
  reply: FastifyReply,
  endpoint: Endpoint,
  deps: ModelRouteDeps,
): Promise<void> {
  let body = request.body as Record<string, unknown>;
  let rawBody = request.rawBody ?? Buffer.from(JSON.stringify(body));
  const state = request.tg;
  const principal = state.principal!;
  const tier = endpoint === 'chat' ? deps.tierOf?.(principal.team.name) : undefined;
  if (tier) {
    const capped = applyOutputCap(tier.name, tier.tier, body, rawBody);
    body = capped.body;
    rawBody = capped.rawBody;
    if (capped.header) reply.header(OUTPUT_CAP_HEADER, capped.header);
  }
  const stream = endpoint === 'chat' && body.stream === true;
  const model = body.model as string;
  state.model = model;
  state.stream = stream;
  if (deps.config.server.logPrompts) state.prompt = endpoint === 'chat' ? body.messages : body.input;

  // A Canceller, not an AbortController: see pipeline/abort.ts.
  const cancel = new Canceller();
  const res = reply.raw;
  const onClose = (): void => {
    if (!res.writableFinished) cancel.abort(new ClientAbortedError());
  };
  res.once('close', onClose);

  const ctx: PipelineContext = {
    reqId: request.id,
    endpoint,
    team: principal.team,
    keyId: principal.keyId,
    model,
    body,
    rawBody,
    stream,
    clientWantsUsage:
      (body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage === true,
    headers: request.headers,
    logFields: state.logFields,
    signal: cancel,
    log: deps.log,
    candidates: [],
    deployment: undefined,
    attempts: 0,
    deadlineAt: undefined,
  };

  let outcome: Outcome;
  try {
    outcome = await deps.pipeline(ctx);
  } catch (err) {
    if (err instanceof ClientAbortedError || cancel.aborted) {
      // The client left before the upstream answered: nobody to reply to, nothing to alarm
      // about. 499 is nginx's "client closed request"; it only ever shows in our log line.
      state.errorCode = 'client_aborted';
      res.statusCode = 499;
      reply.hijack();
      return;
    }
    throw err;
  } finally {
    state.deployment = ctx.deployment?.id;
    state.attempts = ctx.attempts;
  }
  if (ctx.deployment) reply.header('x-tollgate-model', headerSafe(ctx.deployment.id));
  for (const [k, v] of Object.entries(outcome.headers)) reply.header(k, v);

  if (outcome.kind === 'json') {
    state.usage = outcome.usage;
    reply.code(outcome.status).header('content-type', 'application/json');
    return reply.send(outcome.body);
  }

  reply.hijack();
  const streamClosed = deps.metrics?.streamOpened();
  try {
    await writeSse(res, reply.getHeaders() as Record<string, string>, outcome, {
      onFirstChunk: () => {
        state.ttftMs = performance.now() - state.startedAt;
      },
      onError: (err) => {
        if (err instanceof ClientAbortedError || cancel.aborted) {
          state.errorCode = 'client_aborted';
          return undefined;
        }
        const ge = toGatewayError(err, deps.config.server.bodyLimitBytes);
        state.errorCode = ge.code ?? 'error';
        state.errorType = ge.type;
        if (!(err instanceof GatewayError)) deps.log.error({ reqId: request.id, err }, 'stream failed');
        else deps.log.warn({ reqId: request.id, code: ge.code, status: ge.status }, 'stream failed mid-way');
        return ge;
      },
    });
  } finally {
    streamClosed?.();
  }
  state.usage = await outcome.usage;
}

/** Any character outside printable ASCII, and '%' itself so that decodeURIComponent reverses it. */
const NOT_HEADER_SAFE = /[^\x20-\x24\x26-\x7e]/gu;

/**
 * A deployment id as a header value. On a wildcard route it holds the model name the client sent,
 * which can be anything JSON can carry; Node throws on CR, LF, other control characters and
 * anything beyond Latin-1 in a header, which failed the reply after the upstream had answered.
 * Such characters are percent-encoded (as UTF-8), so nothing the client sent ends up raw in a header.
 */
function headerSafe(value: string): string {
  return value.replace(NOT_HEADER_SAFE, (c) => {
    let out = '';
    for (const byte of Buffer.from(c, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    return out;
  });
}
