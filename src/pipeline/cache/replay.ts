// Serves a stored chat.completion to a stream request: the chunk events OpenAI would have sent
// (https://platform.openai.com/docs/api-reference/chat/streaming): per choice a role chunk, the
// text in a few pieces, each tool call as a head delta (id, type, name, empty arguments) then
// argument pieces, and a finish chunk; then the usage chunk when the client asked for it. The
// writer adds `[DONE]`. Also reads a stored entry's usage without parsing the whole entry.
import type { Usage } from '../types.js';
import type { ChatCompletion, CompletionChoice } from './assemble.js';

/** A replay need not mimic token timing; a few pieces keep progressive renderers working. */
const MAX_PIECES = 4;
const MIN_PIECE_CHARS = 32;
const MESSAGE_FIELDS_HANDLED = new Set(['role', 'content', 'refusal', 'tool_calls', 'annotations']);

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A stored entry as a chat.completion, or undefined when it is not one (an embeddings list, corrupt bytes). */
export function parseStoredCompletion(bytes: Buffer): ChatCompletion | undefined {
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  if (!isRecord(v) || typeof v.id !== 'string' || !Array.isArray(v.choices)) return undefined;
  for (const c of v.choices) {
    if (!isRecord(c) || typeof c.index !== 'number' || !isRecord(c.message)) return undefined;
  }
  return v as ChatCompletion;
}

/** The `data` text of every chunk event of the replay, in order, without `[DONE]`. */
export function* replayChunkData(completion: ChatCompletion, includeUsage: boolean): Generator<string> {
  // Every chunk shares one envelope (same id and created, as OpenAI's do); serialise it once.
  let prefix = `{"id":${JSON.stringify(completion.id)},"object":"chat.completion.chunk","created":${JSON.stringify(completion.created ?? 0)},"model":${JSON.stringify(completion.model ?? '')}`;
  if (completion.service_tier !== undefined)
    prefix += `,"service_tier":${JSON.stringify(completion.service_tier)}`;
  if (completion.system_fingerprint !== undefined)
    prefix += `,"system_fingerprint":${JSON.stringify(completion.system_fingerprint)}`;
  prefix += ',"choices":[';
  // With include_usage every chunk carries `usage: null` but the last (OpenAI's ChatCompletionStreamOptions).
  const suffix = includeUsage ? '],"usage":null}' : ']}';
  for (const choice of completion.choices) {
    for (const entry of choiceDeltas(choice)) yield prefix + JSON.stringify(entry) + suffix;
  }
  if (includeUsage && completion.usage) yield `${prefix}],"usage":${JSON.stringify(completion.usage)}}`;
}

function choiceDeltas(choice: CompletionChoice): Json[] {
  const index = choice.index;
  const message = choice.message;
  const out: Json[] = [];
  // The stored logprobs ride on the first delta after the role chunk; concatenation rebuilds them.
  let logprobs: unknown = choice.logprobs ?? null;
  const push = (delta: Json): void => {
    out.push({ index, delta, logprobs, finish_reason: null });
    logprobs = null;
  };
  const content = typeof message.content === 'string' ? message.content : null;
  out.push({
    index,
    delta: { role: message.role ?? 'assistant', content: content === null ? null : '', refusal: null },
    logprobs: null,
    finish_reason: null,
  });
  for (const [name, v] of Object.entries(message)) {
    if (MESSAGE_FIELDS_HANDLED.has(name) || v === null || v === undefined) continue;
    push({ [name]: v });
  }
  if (content) for (const piece of splitPieces(content)) push({ content: piece });
  if (typeof message.refusal === 'string' && message.refusal !== '') {
    for (const piece of splitPieces(message.refusal)) push({ refusal: piece });
  }
  (message.tool_calls ?? []).forEach((tc, k) => {
    const head: Json = { index: k };
    if (tc.id !== undefined) head.id = tc.id;
    head.type = tc.type ?? 'function';
    head.function = { name: tc.function.name, arguments: '' };
    push({ tool_calls: [head] });
    const args = tc.function.arguments;
    if (args)
      for (const piece of splitPieces(args))
        push({ tool_calls: [{ index: k, function: { arguments: piece } }] });
  });
  if (Array.isArray(message.annotations) && message.annotations.length > 0) {
    push({ annotations: message.annotations });
  }
  out.push({ index, delta: {}, logprobs, finish_reason: choice.finish_reason });
  return out;
}

/**
 * Up to MAX_PIECES near-equal pieces. A boundary never splits a surrogate pair: a lone
 * surrogate survives JSON.parse in JavaScript but not every client's decoder (Go's becomes U+FFFD).
 */
export function splitPieces(text: string): string[] {
  const n = Math.min(MAX_PIECES, Math.max(1, Math.ceil(text.length / MIN_PIECE_CHARS)));
  const out: string[] = [];
  let start = 0;
  for (let i = 1; i <= n; i++) {
    let end = i === n ? text.length : Math.floor((i * text.length) / n);
    const code = text.charCodeAt(end);
    if (end < text.length && code >= 0xdc00 && code <= 0xdfff) end += 1;
    if (end > start) out.push(text.slice(start, end));
    start = Math.max(start, end);
  }
  return out;
}

/**
 * The `usage` of a stored JSON entry. Embeddings entries run to megabytes and usage sits at
 * their end, so this finds the last `"usage":{...}` member and parses only that; an unescaped
 * `"usage"` cannot occur inside a JSON string. Falls back to a full parse when the scan fails.
 */
const USAGE_KEY = Buffer.from('"usage"');

export function readStoredUsage(bytes: Buffer): Usage | undefined {
  let from = bytes.length;
  while (from > 0) {
    const at = bytes.lastIndexOf(USAGE_KEY, from - 1);
    if (at < 0) break;
    from = at;
    let i = skipSpace(bytes, at + 7);
    if (bytes[i] !== 0x3a /* : */) continue;
    i = skipSpace(bytes, i + 1);
    if (bytes[i] !== 0x7b /* { */) continue;
    const end = matchBrace(bytes, i);
    if (end < 0) break;
    try {
      const u: unknown = JSON.parse(bytes.toString('utf8', i, end + 1));
      if (isUsageLike(u)) return u;
    } catch {
      break;
    }
  }
  try {
    const v: unknown = JSON.parse(bytes.toString('utf8'));
    return isRecord(v) && isUsageLike(v.usage) ? v.usage : undefined;
  } catch {
    return undefined;
  }
}

function isUsageLike(v: unknown): v is Usage {
  return isRecord(v) && typeof v.prompt_tokens === 'number';
}

function skipSpace(b: Buffer, i: number): number {
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return i;
}

/** Index of the `}` closing the object that opens at `open`, skipping strings; -1 if none. */
function matchBrace(b: Buffer, open: number): number {
  let depth = 0;
  let inString = false;
  for (let i = open; i < b.length; i++) {
    const c = b[i];
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) return i;
  }
  return -1;
}
