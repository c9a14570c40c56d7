// Anthropic's Messages API for the fake upstream (POST /v1/messages): request validation with
// Anthropic's error messages, the message body, the named SSE events, error bodies and headers. Not on
// the benchmark's path, so plain JSON.stringify is fine here.
// https://docs.anthropic.com/en/api/messages
// https://docs.anthropic.com/en/docs/build-with-claude/streaming
// https://docs.anthropic.com/en/api/errors and /en/api/rate-limits (headers)
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { sseEvent } from './answer.js';
import type { Answer, Extra } from './answer.js';
import { promptSegments } from './prompt-cache.js';
import type { PromptCache, PromptUsage } from './prompt-cache.js';
import { fakeValue, isRecord, randomId, splitText, textContent } from './responses.js';
import type { Json } from './responses.js';
import { validateMessages } from './anthropic-validate.js';

export const MESSAGES_PATH = '/v1/messages';

// ---------------------------------------------------------------------------------------------
// ids, errors and headers

/** Shaped like Anthropic's (`req_011C` + 20 base62), in the `request-id` header and in error bodies. */
export function anthropicRequestId(): string {
  return randomId('req_011C', 20);
}

export interface AnthropicError {
  type: string;
  message: string;
}

/** `{"type":"error","error":{"type","message"},"request_id"}`, as Anthropic sends it today. */
export function anthropicErrorBody(e: AnthropicError, requestId: string): string {
  return JSON.stringify({
    type: 'error',
    error: { type: e.type, message: e.message },
    request_id: requestId,
  });
}

export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 402:
      return 'billing_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 413:
      return 'request_too_large';
    case 429:
      return 'rate_limit_error';
    case 504:
      return 'timeout_error';
    case 529:
      return 'overloaded_error';
    default:
      return status >= 500 ? 'api_error' : 'invalid_request_error';
  }
}

/** What Anthropic typically says for a status, so scripted errors look real without spelling it out. */
export function defaultAnthropicError(status: number, model: string | undefined): AnthropicError {
  const type = anthropicErrorType(status);
  switch (type) {
    case 'authentication_error':
      return { type, message: 'invalid x-api-key' };
    case 'billing_error':
      return { type, message: 'Your credit balance is too low to access the Anthropic API.' };
    case 'permission_error':
      return { type, message: 'Your API key does not have permission to use the specified resource.' };
    case 'not_found_error':
      return { type, message: `model: ${model ?? 'claude-unknown'}` };
    case 'request_too_large':
      return { type, message: 'Request exceeds the maximum allowed number of bytes.' };
    case 'rate_limit_error':
      return {
        type,
        message:
          'This request would exceed the rate limit for your organization (00000000-0000-0000-0000-000000000000) of 4,000 requests per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.',
      };
    case 'timeout_error':
      return { type, message: 'Request timed out' };
    case 'overloaded_error':
      return { type, message: 'Overloaded' };
    case 'api_error':
      return { type, message: 'Internal server error' };
    default:
      return { type, message: 'Invalid request' };
  }
}

/** An error answer with a fresh request id in both the body and the `request-id` header. */
export function anthropicErrorAnswer(
  status: number,
  e: AnthropicError,
  extra?: Record<string, string>,
): Answer {
  const rid = anthropicRequestId();
  const headers: Record<string, string> = { 'request-id': rid };
  // Anthropic marks its own rejections of a malformed request as not worth retrying.
  if (status >= 400 && status < 500 && status !== 429) headers['x-should-retry'] = 'false';
  return {
    t: 'body',
    status,
    body: anthropicErrorBody(e, rid),
    headers: { ...headers, ...extra },
    api: 'anthropic',
  };
}

/** The 401 for a missing or wrong `x-api-key`. */
export function anthropicAuthAnswer(sentKey: string | undefined): Answer {
  return anthropicErrorAnswer(401, {
    type: 'authentication_error',
    message: sentKey ? 'invalid x-api-key' : 'x-api-key header is required',
  });
}

/** RFC 3339 to the second, as Anthropic's `anthropic-ratelimit-*-reset` headers give it. */
function rfc3339(ms: number): string {
  return `${new Date(Math.ceil(ms / 1000) * 1000).toISOString().slice(0, 19)}Z`;
}

const LIMITS = { requests: 4000, 'input-tokens': 2_000_000, 'output-tokens': 400_000, tokens: 400_000 };

/** Headers of every Anthropic answer; `extra` (scripted headers, a 429's exhausted bucket) wins. */
export function anthropicHeaders(contentType: string, extra: Extra): OutgoingHttpHeaders {
  const now = Date.now();
  const h: OutgoingHttpHeaders = {
    'content-type': contentType,
    'request-id': extra?.['request-id'] ?? anthropicRequestId(),
    'anthropic-organization-id': '00000000-0000-0000-0000-000000000000',
  };
  for (const [name, limit] of Object.entries(LIMITS)) {
    const used = name === 'requests' ? 1 : 0;
    h[`anthropic-ratelimit-${name}-limit`] = String(limit);
    h[`anthropic-ratelimit-${name}-remaining`] = String(limit - used);
    h[`anthropic-ratelimit-${name}-reset`] = rfc3339(now + used * 1000);
  }
  if (extra) Object.assign(h, extra);
  return h;
}

/** A 429's headers: the request bucket empty until `retry-after` seconds from now (default 1). */
export function rateLimitedHeaders(retryAfter: string | undefined): Record<string, string> {
  const seconds = retryAfter !== undefined && /^\d+$/.test(retryAfter) ? Number(retryAfter) : 1;
  return {
    'retry-after': String(seconds),
    'anthropic-ratelimit-requests-remaining': '0',
    'anthropic-ratelimit-requests-reset': rfc3339(Date.now() + seconds * 1000),
  };
}

/** The mid-stream `error` event (Anthropic sends it after a 200, then ends the stream). */
export function anthropicStreamError(type = 'overloaded_error', message = 'Overloaded'): string {
  return sseEvent('error', JSON.stringify({ type: 'error', error: { type, message } }));
}

const VERSIONS = new Set(['2023-06-01', '2023-01-01']);

function checkVersion(v: string | string[] | undefined): AnthropicError | undefined {
  if (v === undefined || v === '') {
    return { type: 'invalid_request_error', message: 'anthropic-version: header is required' };
  }
  const s = Array.isArray(v) ? v.join(', ') : v;
  if (VERSIONS.has(s)) return undefined;
  return { type: 'invalid_request_error', message: `anthropic-version: "${s}" is not a valid version` };
}

// ---------------------------------------------------------------------------------------------
// planning an answer

type StopReason = 'end_turn' | 'max_tokens' | 'tool_use' | 'stop_sequence';

type Block =
  | { readonly type: 'text'; readonly pieces: readonly string[] }
  | {
      readonly type: 'tool_use';
      readonly id: string;
      readonly name: string;
      readonly input: unknown;
      readonly pieces: readonly string[];
    };

export interface MessagesPlan {
  readonly model: string;
  readonly blocks: readonly Block[];
  readonly stopReason: StopReason;
  readonly stopSequence: string | null;
  readonly usage: PromptUsage;
  /** Text pieces plus tool-input JSON pieces, over all blocks. */
  readonly outputTokens: number;
}

export interface MessagesKnobs {
  chunks: number;
  parallelTools: boolean;
}

/** Said before a tool call when Claude chooses to call one (`tool_choice` auto), not when forced. */
export const TOOL_PREAMBLE = 'Let me look that up.';

interface Tool {
  name: string;
  schema: unknown;
}

function customTools(tools: unknown): Tool[] {
  if (!Array.isArray(tools)) return [];
  const out: Tool[] = [];
  for (const t of tools) {
    // Server tools (web search and such, with their own `type`) are Anthropic's to run, never answered.
    if (isRecord(t) && typeof t.name === 'string' && (t.type === undefined || t.type === 'custom')) {
      out.push({ name: t.name, schema: t.input_schema });
    }
  }
  return out;
}

function toolBlocks(body: Json, knobs: MessagesKnobs): { tools: Tool[]; forced: boolean } {
  const tools = customTools(body.tools);
  const choice = isRecord(body.tool_choice) ? body.tool_choice : {};
  const type = typeof choice.type === 'string' ? choice.type : 'auto';
  if (tools.length === 0 || type === 'none') return { tools: [], forced: false };
  if (type === 'tool' && typeof choice.name === 'string') {
    const name = choice.name;
    return { tools: [tools.find((t) => t.name === name) ?? { name, schema: undefined }], forced: true };
  }
  const parallel = knobs.parallelTools && choice.disable_parallel_tool_use !== true;
  return { tools: parallel ? tools : tools.slice(0, 1), forced: type === 'any' };
}

/** Cuts the text at the earliest stop sequence, as Anthropic does (the sequence itself is not sent). */
function applyStopSequences(
  pieces: readonly string[],
  stops: unknown,
): { pieces: string[]; hit: string | null } {
  const text = pieces.join('');
  let at = -1;
  let hit: string | null = null;
  if (Array.isArray(stops)) {
    for (const s of stops) {
      if (typeof s !== 'string' || s === '') continue;
      const i = text.indexOf(s);
      if (i !== -1 && (at === -1 || i < at)) {
        at = i;
        hit = s;
      }
    }
  }
  if (hit === null) return { pieces: [...pieces], hit };
  const out: string[] = [];
  let pos = 0;
  for (const p of pieces) {
    if (pos >= at) break;
    out.push(p.slice(0, at - pos));
    pos += p.length;
  }
  return { pieces: out, hit };
}

/** Decides what to answer. Also records the prompt's cache prefixes, so call it once per request. */
export function planMessages(body: Json, knobs: MessagesKnobs, cache: PromptCache): MessagesPlan {
  const model = typeof body.model === 'string' ? body.model : 'unknown';
  const usage = cache.usage(model, promptSegments(body));
  const blocks: Block[] = [];
  let stopReason: StopReason = 'end_turn';
  let stopSequence: string | null = null;
  const { tools, forced } = toolBlocks(body, knobs);
  if (tools.length > 0) {
    if (!forced) blocks.push({ type: 'text', pieces: [TOOL_PREAMBLE] });
    for (const t of tools) {
      const input = t.schema === undefined ? {} : (fakeValue(t.schema) ?? {});
      const json = JSON.stringify(input);
      blocks.push({
        type: 'tool_use',
        id: randomId('toolu_01', 22),
        name: t.name,
        input,
        pieces: splitText(json, Math.max(3, knobs.chunks)),
      });
    }
    stopReason = 'tool_use';
  } else {
    let pieces: readonly string[] = textContent(knobs.chunks).pieces;
    const limit = body.max_tokens;
    if (typeof limit === 'number' && limit >= 0 && limit < pieces.length) {
      pieces = pieces.slice(0, Math.floor(limit));
      stopReason = 'max_tokens';
    }
    const cut = applyStopSequences(pieces, body.stop_sequences);
    if (cut.hit !== null) {
      pieces = cut.pieces;
      stopReason = 'stop_sequence';
      stopSequence = cut.hit;
    }
    // An empty answer has no text block at all: Anthropic never sends an empty one.
    if (pieces.length > 0) blocks.push({ type: 'text', pieces });
  }
  let outputTokens = 0;
  for (const b of blocks) outputTokens += b.pieces.length;
  return { model, blocks, stopReason, stopSequence, usage, outputTokens };
}

// ---------------------------------------------------------------------------------------------
// rendering

function usageObject(u: PromptUsage, outputTokens: number): Json {
  return {
    input_tokens: u.inputTokens,
    cache_creation_input_tokens: u.cacheCreationTokens,
    cache_read_input_tokens: u.cacheReadTokens,
    cache_creation: {
      ephemeral_5m_input_tokens: u.cacheCreation5m,
      ephemeral_1h_input_tokens: u.cacheCreation1h,
    },
    output_tokens: outputTokens,
    service_tier: 'standard',
  };
}

export function renderMessage(plan: MessagesPlan, id: string): string {
  const content = plan.blocks.map((b) =>
    b.type === 'text'
      ? { type: 'text', text: b.pieces.join('') }
      : { type: 'tool_use', id: b.id, name: b.name, input: b.input },
  );
  return JSON.stringify({
    id,
    type: 'message',
    role: 'assistant',
    model: plan.model,
    content,
    stop_reason: plan.stopReason,
    stop_sequence: plan.stopSequence,
    usage: usageObject(plan.usage, plan.outputTokens),
  });
}

/** Every SSE event of a streamed message, `message_start` through `message_stop`. */
export function renderMessagesStream(plan: MessagesPlan, id: string): string[] {
  const frames: string[] = [];
  const push = (event: string, data: Json): void => {
    frames.push(sseEvent(event, JSON.stringify(data)));
  };
  push('message_start', {
    type: 'message_start',
    message: {
      id,
      type: 'message',
      role: 'assistant',
      model: plan.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: usageObject(plan.usage, Math.min(1, plan.outputTokens)),
    },
  });
  push('ping', { type: 'ping' });
  plan.blocks.forEach((b, index) => {
    const start =
      b.type === 'text'
        ? { type: 'text', text: '' }
        : { type: 'tool_use', id: b.id, name: b.name, input: {} };
    push('content_block_start', { type: 'content_block_start', index, content_block: start });
    for (const p of b.pieces) {
      const delta =
        b.type === 'text' ? { type: 'text_delta', text: p } : { type: 'input_json_delta', partial_json: p };
      push('content_block_delta', { type: 'content_block_delta', index, delta });
    }
    push('content_block_stop', { type: 'content_block_stop', index });
  });
  // Cumulative totals. Newer API versions repeat the input side here too, so a client must take the
  // last value of each field rather than add message_start's to it.
  const u = plan.usage;
  push('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: plan.stopReason, stop_sequence: plan.stopSequence },
    usage: {
      input_tokens: u.inputTokens,
      cache_creation_input_tokens: u.cacheCreationTokens,
      cache_read_input_tokens: u.cacheReadTokens,
      output_tokens: plan.outputTokens,
    },
  });
  push('message_stop', { type: 'message_stop' });
  return frames;
}

export function messageId(): string {
  return randomId('msg_01', 22);
}

// ---------------------------------------------------------------------------------------------
// the route

/** The normal answer to `POST /v1/messages` (auth is checked before, by the server). */
export function messagesAnswer(
  headers: IncomingHttpHeaders,
  body: unknown,
  badJson: boolean,
  knobs: MessagesKnobs & { chunkDelayMs: number },
  cache: PromptCache,
): Answer {
  const invalid =
    checkVersion(headers['anthropic-version']) ??
    (badJson
      ? { type: 'invalid_request_error', message: 'There was an error parsing the body as JSON.' }
      : validateMessages(body));
  if (invalid || !isRecord(body))
    return anthropicErrorAnswer(
      400,
      invalid ?? { type: 'invalid_request_error', message: 'Invalid request' },
    );
  const plan = planMessages(body, knobs, cache);
  const id = messageId();
  if (body.stream !== true) {
    return { t: 'body', status: 200, body: renderMessage(plan, id), headers: undefined, api: 'anthropic' };
  }
  return {
    t: 'stream',
    status: 200,
    frames: renderMessagesStream(plan, id),
    delayMs: knobs.chunkDelayMs,
    cutAfter: undefined,
    stallAfter: undefined,
    headers: undefined,
    api: 'anthropic',
  };
}
