// What the gateway learns about one request as it passes through, for its single log line.
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { LogLine } from '../log.js';
import type { Principal } from '../teams/registry.js';
import type { Usage } from '../pipeline/types.js';
import type { LimitKind, Metrics } from '../metrics/metrics.js';

export interface RequestState {
  startedAt: number;
  principal: Principal | undefined;
  model: string | undefined;
  deployment: string | undefined;
  stream: boolean;
  attempts: number;
  ttftMs: number | undefined;
  usage: Usage | undefined;
  errorCode: string | undefined;
  /** The error's OpenAI `type` (a 429 says which limit: requests, tokens, insufficient_quota). */
  errorType: string | undefined;
  /** The request body, only when prompt logging is enabled. */
  prompt: unknown;
  /** Fields stages add to the log line (PipelineContext.logFields). */
  logFields: Record<string, unknown>;
  /** A model route's handler is still running (the socket may close before it settles). */
  inHandler: boolean;
  /** The socket closed while the handler ran: the handler writes the log line when it settles. */
  logWhenHandled: boolean;
}

declare module 'fastify' {
  interface FastifyRequest {
    tg: RequestState;
    /** The JSON body's bytes as received, set by the content-type parser. */
    rawBody: Buffer | undefined;
  }
}

export function newRequestState(): RequestState {
  return {
    startedAt: performance.now(),
    principal: undefined,
    model: undefined,
    deployment: undefined,
    stream: false,
    attempts: 0,
    ttftMs: undefined,
    usage: undefined,
    errorCode: undefined,
    errorType: undefined,
    prompt: undefined,
    logFields: {},
    inHandler: false,
    logWhenHandled: false,
  };
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

/** What happens once per request when it is over: its log line and its metrics. */
export type RequestFinisher = (request: FastifyRequest, reply: FastifyReply) => void;

export function requestFinisher(log: Logger, metrics: Metrics | undefined): RequestFinisher {
  return (request, reply) => {
    logRequest(log, request, reply);
    if (metrics) observeRequest(metrics, request, reply);
  };
}

/**
 * Finishes the request once the response is over: at socket close, or, if a model route's
 * handler is still settling then (a client that left mid-request), when the handler is done, so
 * the line has the final outcome and usage.
 */
export function finishWhenDone(finish: RequestFinisher, request: FastifyRequest, reply: FastifyReply): void {
  if (request.tg.inHandler) request.tg.logWhenHandled = true;
  else finish(request, reply);
}

const LIMIT_KINDS: Record<string, LimitKind> = {
  requests: 'requests',
  tokens: 'tokens',
  insufficient_quota: 'budget',
};

function observeRequest(metrics: Metrics, request: FastifyRequest, reply: FastifyReply): void {
  const s = request.tg;
  // Health checks and scrapes are not traffic.
  if (s.model === undefined && s.principal === undefined) return;
  const team = s.principal?.team.name ?? '';
  metrics.observeRequest({
    team,
    keyId: s.principal?.keyId,
    model: s.model,
    endpoint: request.routeOptions.url === '/v1/embeddings' ? 'embeddings' : 'chat',
    status: reply.raw.statusCode,
    cache: s.logFields.cache as 'HIT' | 'MISS' | 'BYPASS' | undefined,
    stream: s.stream,
    latencyMs: performance.now() - s.startedAt,
    ttftMs: s.ttftMs,
    errorCode: s.errorCode,
  });
  if (reply.raw.statusCode === 429 && s.errorType !== undefined) {
    const kind = s.logFields.limited_by === 'concurrency' ? 'concurrency' : LIMIT_KINDS[s.errorType];
    if (kind) metrics.limitRejected(team, kind);
  }
}

/** The one line per request. Never the key, never the prompt unless enabled. */
export function logRequest(log: Logger, request: FastifyRequest, reply: FastifyReply): void {
  const s = request.tg;
  const res = reply.raw;
  const aborted = !res.writableFinished;
  const usage = s.usage;
  // Built by hand (log.ts LogLine): the same line pino would write for these fields, cheaper.
  const line = new LogLine()
    .str('reqId', request.id)
    .str('method', request.method)
    .str('path', request.routeOptions.url ?? request.url.slice(0, 200))
    .str('team', s.principal?.team.name)
    .str('keyId', s.principal?.keyId)
    .str('model', s.model)
    .str('deployment', s.deployment)
    .bool('stream', s.stream)
    .num('status', res.statusCode)
    .num('latency_ms', round(performance.now() - s.startedAt))
    .num('ttft_ms', s.ttftMs === undefined ? undefined : round(s.ttftMs))
    .num('attempts', s.attempts || undefined)
    // Usage as flat fields, not a nested object.
    .num('prompt_tokens', usage?.prompt_tokens)
    .num('completion_tokens', usage ? (usage.completion_tokens ?? 0) : undefined)
    .num('total_tokens', usage?.total_tokens)
    .num('cached_tokens', usage ? (usage.prompt_tokens_details?.cached_tokens ?? 0) : undefined)
    .num('reasoning_tokens', usage ? (usage.completion_tokens_details?.reasoning_tokens ?? 0) : undefined);
  for (const name in s.logFields) {
    if (name !== 'error' && name !== 'aborted' && name !== 'prompt') line.any(name, s.logFields[name]);
  }
  line
    .str('error', s.errorCode)
    .bool('aborted', aborted || undefined)
    .any('prompt', s.prompt)
    .info(log, 'request');
}
