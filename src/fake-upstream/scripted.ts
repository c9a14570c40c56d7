// Turns a scripted answer (types.ts) into the server's Answer, in the wire format of the route it hit:
// OpenAI's for everything but `/v1/messages`, Anthropic's there.
import { lowerKeys, scriptedFrames } from './answer.js';
import type { Answer } from './answer.js';
import {
  anthropicErrorBody,
  anthropicRequestId,
  anthropicStreamError,
  defaultAnthropicError,
  rateLimitedHeaders,
} from './anthropic.js';
import { defaultError, errorBody, isRecord } from './responses.js';
import type { ScriptedAnswer, ScriptedError, ScriptedStream } from './types.js';

export interface ScriptContext {
  /** The request hit `/v1/messages`. */
  anthropic: boolean;
  body: unknown;
  /** The request's chunk delay (server option or override). */
  chunkDelayMs: number;
  /** The key the client sent, for OpenAI's 401 text. */
  sentKey: string | undefined;
  /** The answer the request would get without a script (for `ok` without a body). */
  normal: () => Answer;
  /** The route's generated stream frames with this many pieces (for `stream` without `events`). */
  streamFrames: (chunks: number | undefined) => string[];
}

function verbatim(body: unknown): string {
  return typeof body === 'string' ? body : JSON.stringify(body);
}

function openaiError(a: ScriptedError, c: ScriptContext): Answer {
  const model = isRecord(c.body) && typeof c.body.model === 'string' ? c.body.model : undefined;
  const d = defaultError(a.status, model, c.sentKey);
  const text =
    a.body === undefined
      ? errorBody({
          message: a.message ?? d.message,
          type: a.type ?? d.type,
          param: a.param !== undefined ? a.param : d.param,
          code: a.code !== undefined ? a.code : d.code,
        })
      : verbatim(a.body);
  const headers = a.status === 429 ? { 'x-ratelimit-remaining-requests': '0' } : undefined;
  return { t: 'body', status: a.status, body: text, headers: { ...headers, ...lowerKeys(a.headers) } };
}

function anthropicError(a: ScriptedError, c: ScriptContext): Answer {
  const model = isRecord(c.body) && typeof c.body.model === 'string' ? c.body.model : undefined;
  const d = defaultAnthropicError(a.status, model);
  const extra = lowerKeys(a.headers);
  const rid = extra?.['request-id'] ?? anthropicRequestId();
  const text =
    a.body === undefined
      ? anthropicErrorBody({ type: a.type ?? d.type, message: a.message ?? d.message }, rid)
      : verbatim(a.body);
  const limited = a.status === 429 ? rateLimitedHeaders(extra?.['retry-after']) : undefined;
  return {
    t: 'body',
    status: a.status,
    body: text,
    headers: { 'request-id': rid, ...limited, ...extra },
    api: 'anthropic',
  };
}

const OPENAI_STREAM_ERROR = {
  message: 'The server had an error while processing your request. Sorry about that!',
  type: 'server_error',
};

function streamAnswer(a: ScriptedStream, c: ScriptContext): Answer {
  let frames = a.events ? scriptedFrames(a.events) : c.streamFrames(a.chunks);
  if (a.errorAfter !== undefined) {
    const e = a.error ?? {};
    const errorFrame = c.anthropic
      ? anthropicStreamError(e.type, e.message)
      : `data: ${errorBody({
          message: e.message ?? OPENAI_STREAM_ERROR.message,
          type: e.type ?? OPENAI_STREAM_ERROR.type,
          param: null,
          code: null,
        })}\n\n`;
    frames = [...frames.slice(0, Math.max(0, a.errorAfter)), errorFrame];
  }
  const answer: Answer = {
    t: 'stream',
    status: 200,
    frames,
    delayMs: a.chunkDelayMs ?? c.chunkDelayMs,
    cutAfter: a.cutAfter,
    stallAfter: a.stallAfter,
    headers: lowerKeys(a.headers),
  };
  if (c.anthropic) answer.api = 'anthropic';
  return answer;
}

export function scriptedAnswer(a: ScriptedAnswer, c: ScriptContext): Answer {
  switch (a.kind) {
    case 'reset':
    case 'stall':
      return { t: a.kind };
    case 'error':
      return c.anthropic ? anthropicError(a, c) : openaiError(a, c);
    case 'ok': {
      if (a.body === undefined) {
        const normal = c.normal();
        if (normal.t === 'body' || normal.t === 'stream') {
          const headers =
            normal.headers || a.headers ? { ...normal.headers, ...lowerKeys(a.headers) } : undefined;
          return { ...normal, status: a.status ?? normal.status, headers };
        }
        return normal;
      }
      const answer: Answer = {
        t: 'body',
        status: a.status ?? 200,
        body: verbatim(a.body),
        headers: lowerKeys(a.headers),
      };
      if (c.anthropic) answer.api = 'anthropic';
      return answer;
    }
    case 'raw': {
      const answer: Answer = {
        t: 'body',
        status: a.status ?? 200,
        body: a.text,
        headers: lowerKeys(a.headers),
      };
      if (c.anthropic) answer.api = 'anthropic';
      return answer;
    }
    case 'stream':
      return streamAnswer(a, c);
  }
}
