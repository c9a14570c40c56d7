// Builders for the fake upstream's OpenAI wire format: chat completions (whole and as SSE frames),
// embeddings, the model list and error bodies. Bodies are assembled from cached, pre-serialised
// fragments because the benchmark pushes ~10k req/s through this and it must not be the bottleneck.
import { randomFillSync } from 'node:crypto';

export const SYSTEM_FINGERPRINT = 'fp_fake';

// ---------------------------------------------------------------------------------------------
// ids

const ALPHANUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const HEX = '0123456789abcdef';
// One crypto fill serves hundreds of ids, so ids stay unguessable-looking without a syscall each.
const pool = Buffer.allocUnsafe(8192);
let poolPos = pool.length;

function takeRandom(len: number): number {
  if (poolPos + len > pool.length) {
    randomFillSync(pool);
    poolPos = 0;
  }
  const start = poolPos;
  poolPos += len;
  return start;
}

export function randomId(prefix: string, len: number): string {
  let s = prefix;
  for (let i = takeRandom(len), end = i + len; i < end; i++) s += ALPHANUM.charAt(pool.readUInt8(i) % 62);
  return s;
}

export function requestId(): string {
  let s = 'req_';
  for (let i = takeRandom(16), end = i + 16; i < end; i++) {
    const b = pool.readUInt8(i);
    s += HEX.charAt(b >> 4) + HEX.charAt(b & 15);
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// errors

export interface ErrorFields {
  message: string;
  type: string;
  param: string | null;
  code: string | null;
}

export function errorBody(e: ErrorFields): string {
  return JSON.stringify({ error: { message: e.message, type: e.type, param: e.param, code: e.code } });
}

/** OpenAI's way of showing a rejected key: a few characters from each end, the middle starred. */
export function maskKey(key: string): string {
  if (key.length <= 8) return `${key.slice(0, 2)}*****`;
  return `${key.slice(0, 5)}*****${key.slice(-2)}`;
}

export function invalidKeyError(sentKey: string | undefined): ErrorFields {
  if (!sentKey) {
    return {
      message:
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
      type: 'invalid_request_error',
      param: null,
      code: null,
    };
  }
  return {
    message: `Incorrect API key provided: ${maskKey(sentKey)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    type: 'invalid_request_error',
    param: null,
    code: 'invalid_api_key',
  };
}

/** What OpenAI typically sends for a status, so scripted errors look real without spelling it out. */
export function defaultError(
  status: number,
  model: string | undefined,
  sentKey: string | undefined,
): ErrorFields {
  const m = model ?? 'gpt-4o-mini';
  switch (status) {
    case 400:
      return { message: 'Invalid request.', type: 'invalid_request_error', param: null, code: null };
    case 401:
      return invalidKeyError(sentKey ?? 'sk-fake-key');
    case 403:
      return {
        message: 'You are not allowed to sample from this model',
        type: 'invalid_request_error',
        param: null,
        code: null,
      };
    case 404:
      return {
        message: `The model \`${m}\` does not exist or you do not have access to it.`,
        type: 'invalid_request_error',
        param: null,
        code: 'model_not_found',
      };
    case 429:
      return {
        message: `Rate limit reached for ${m} in organization org-fake on requests per min (RPM): Limit 10000, Used 10000, Requested 1. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to learn more.`,
        type: 'requests',
        param: null,
        code: 'rate_limit_exceeded',
      };
    case 500:
      return {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      };
    case 502:
      return { message: 'Bad gateway.', type: 'server_error', param: null, code: null };
    case 503:
      return {
        message: 'The engine is currently overloaded, please try again later.',
        type: 'server_error',
        param: null,
        code: null,
      };
    default:
      return status >= 500
        ? {
            message: 'The server had an error processing your request.',
            type: 'server_error',
            param: null,
            code: null,
          }
        : { message: 'Invalid request.', type: 'invalid_request_error', param: null, code: null };
  }
}

export const INVALID_JSON_ERROR: ErrorFields = {
  message:
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
  type: 'invalid_request_error',
  param: null,
  code: null,
};

export function missingParam(name: string): ErrorFields {
  return {
    message: `Missing required parameter: '${name}'.`,
    type: 'invalid_request_error',
    param: name,
    code: 'missing_required_parameter',
  };
}

export function invalidParam(name: string, message: string): ErrorFields {
  return { message, type: 'invalid_request_error', param: name, code: 'invalid_value' };
}

export function invalidUrl(method: string, path: string): ErrorFields {
  return {
    message: `Invalid URL (${method} ${path})`,
    type: 'invalid_request_error',
    param: null,
    code: null,
  };
}

// ---------------------------------------------------------------------------------------------
// models

export const MODEL_IDS = [
  'gpt-4o-mini',
  'gpt-4o',
  'gpt-4.1-mini',
  'gpt-3.5-turbo',
  'text-embedding-3-small',
  'text-embedding-3-large',
] as const;

function modelObject(id: string): { id: string; object: 'model'; created: number; owned_by: string } {
  return { id, object: 'model', created: 1700000000, owned_by: 'openai' };
}

export const MODELS_BODY = JSON.stringify({ object: 'list', data: MODEL_IDS.map(modelObject) });
const MODEL_BODIES = new Map<string, string>(MODEL_IDS.map((id) => [id, JSON.stringify(modelObject(id))]));

export function modelBody(id: string): string | undefined {
  return MODEL_BODIES.get(id);
}

// ---------------------------------------------------------------------------------------------
// shared helpers

export type Json = Record<string, unknown>;

export function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Splits text into at most `parts` non-empty pieces of near-equal length. */
export function splitText(text: string, parts: number): string[] {
  const k = Math.max(1, Math.min(parts, text.length));
  const out: string[] = [];
  for (let i = 0; i < k; i++) {
    out.push(text.slice(Math.floor((i * text.length) / k), Math.floor(((i + 1) * text.length) / k)));
  }
  return out;
}

function pickType(schema: Json): string | undefined {
  const t = schema.type;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) return t.find((x): x is string => typeof x === 'string' && x !== 'null');
  if (isRecord(schema.properties)) return 'object';
  return undefined;
}

/**
 * A value satisfying a JSON schema's required parts, so tool arguments and structured outputs parse and
 * validate on the client: strings "fake", numbers 1, booleans true, objects recursively, else null.
 */
export function fakeValue(schema: unknown, depth = 0): unknown {
  if (!isRecord(schema) || depth > 16) return null;
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  const alt = schema.anyOf ?? schema.oneOf;
  if (Array.isArray(alt) && alt.length > 0) return fakeValue(alt[0], depth + 1);
  switch (pickType(schema)) {
    case 'string':
      return 'fake';
    case 'number':
    case 'integer':
      return 1;
    case 'boolean':
      return true;
    case 'object': {
      const props = isRecord(schema.properties) ? schema.properties : {};
      const out: Json = {};
      if (Array.isArray(schema.required)) {
        for (const name of schema.required)
          if (typeof name === 'string') out[name] = fakeValue(props[name], depth + 1);
      }
      return out;
    }
    case 'array':
      return [];
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// chat completions

const WORDS = ['Hello', ' from', ' the', ' fake', ' upstream'] as const;

/** One generated content text, pre-serialised in every form a response needs. */
export interface ContentPlan {
  readonly pieces: readonly string[];
  /** JSON string literal of each piece. */
  readonly piecesJson: readonly string[];
  /** `{"role":"assistant","content":...,"refusal":null,"annotations":[]}` */
  readonly messageJson: string;
}

function contentPlan(pieces: string[]): ContentPlan {
  return {
    pieces,
    piecesJson: pieces.map((p) => JSON.stringify(p)),
    messageJson: `{"role":"assistant","content":${JSON.stringify(pieces.join(''))},"refusal":null,"annotations":[]}`,
  };
}

const MAX_CACHE = 256;
const textCache = new Map<number, ContentPlan>();
const jsonObjectCache = new Map<number, ContentPlan>();

function cached(cache: Map<number, ContentPlan>, key: number, make: () => ContentPlan): ContentPlan {
  let plan = cache.get(key);
  if (!plan) {
    if (cache.size >= MAX_CACHE) cache.clear();
    plan = make();
    cache.set(key, plan);
  }
  return plan;
}

export function textContent(chunks: number): ContentPlan {
  return cached(textCache, chunks, () => {
    const pieces: string[] = [];
    for (let i = 0; i < chunks; i++) {
      const w = WORDS[i % WORDS.length] ?? '';
      pieces.push(i > 0 && i % WORDS.length === 0 ? ` ${w}` : w);
    }
    return contentPlan(pieces);
  });
}

const JSON_OBJECT_TEXT = JSON.stringify({ message: 'Hello from the fake upstream' });

function jsonObjectContent(chunks: number): ContentPlan {
  return cached(jsonObjectCache, chunks, () => contentPlan(splitText(JSON_OBJECT_TEXT, chunks)));
}

export interface ToolCallPlan {
  readonly id: string;
  readonly name: string;
  readonly arguments: string;
  readonly argPieces: readonly string[];
}

export type ChoicePlan =
  | { readonly kind: 'content'; readonly content: ContentPlan; readonly finishReason: 'stop' | 'length' }
  | { readonly kind: 'tool_calls'; readonly calls: readonly ToolCallPlan[] };

export interface ChatPlan {
  /** JSON string literal of the model. */
  readonly modelJson: string;
  readonly choices: readonly ChoicePlan[];
  readonly promptTokens: number;
  readonly completionTokens: number;
}

export interface ChatKnobs {
  chunks: number;
  parallelTools: boolean;
}

/** Returns an error for requests OpenAI would reject outright; everything else is accepted. */
export function validateChat(body: unknown): ErrorFields | undefined {
  if (!isRecord(body)) return invalidParam('body', 'The request body must be a JSON object.');
  if (body.model === undefined) return missingParam('model');
  if (typeof body.model !== 'string')
    return invalidParam('model', "Invalid type for 'model': expected a string.");
  if (body.messages === undefined) return missingParam('messages');
  if (!Array.isArray(body.messages)) {
    return invalidParam('messages', "Invalid type for 'messages': expected an array of message objects.");
  }
  if (body.messages.length === 0) {
    return invalidParam(
      'messages',
      "Invalid 'messages': empty array. Expected an array with minimum length 1.",
    );
  }
  if (body.n !== undefined && body.n !== null) {
    if (typeof body.n !== 'number' || !Number.isInteger(body.n) || body.n < 1 || body.n > 128) {
      return invalidParam('n', "Invalid 'n': expected an integer between 1 and 128.");
    }
  }
  return undefined;
}

export function estimatePromptTokens(messages: unknown): number {
  return Math.max(1, Math.ceil((JSON.stringify(messages) ?? '').length / 4));
}

interface FunctionTool {
  name: string;
  parameters: unknown;
}

function functionTools(tools: unknown): FunctionTool[] {
  if (!Array.isArray(tools)) return [];
  const out: FunctionTool[] = [];
  for (const t of tools) {
    if (isRecord(t) && isRecord(t.function) && typeof t.function.name === 'string') {
      out.push({ name: t.function.name, parameters: t.function.parameters });
    }
  }
  return out;
}

function chooseTools(body: Json, knobs: ChatKnobs): FunctionTool[] {
  const tools = functionTools(body.tools);
  const choice = body.tool_choice;
  if (tools.length === 0 || choice === 'none') return [];
  if (isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === 'string') {
    const name = choice.function.name;
    return [tools.find((t) => t.name === name) ?? { name, parameters: undefined }];
  }
  if (knobs.parallelTools && body.parallel_tool_calls !== false) return tools;
  return tools.slice(0, 1);
}

function toolCalls(tools: FunctionTool[], chunks: number): ToolCallPlan[] {
  return tools.map((t) => {
    const args = JSON.stringify(t.parameters === undefined ? {} : (fakeValue(t.parameters) ?? {}));
    return {
      id: randomId('call_', 24),
      name: t.name,
      arguments: args,
      argPieces: splitText(args, Math.max(3, chunks)),
    };
  });
}

function structuredContent(body: Json, chunks: number): ContentPlan | undefined {
  const rf = body.response_format;
  if (!isRecord(rf)) return undefined;
  if (rf.type === 'json_object') return jsonObjectContent(chunks);
  if (rf.type === 'json_schema') {
    const schema = isRecord(rf.json_schema) ? rf.json_schema.schema : undefined;
    return contentPlan(splitText(JSON.stringify(fakeValue(schema) ?? {}), chunks));
  }
  return undefined;
}

function maxTokens(body: Json): number | undefined {
  const v = body.max_completion_tokens ?? body.max_tokens;
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : undefined;
}

/** Decides what to answer; `body` must have passed validateChat (scripted streams pass anything). */
export function planChat(body: Json, knobs: ChatKnobs): ChatPlan {
  const n = typeof body.n === 'number' && body.n >= 1 ? Math.floor(body.n) : 1;
  const modelJson = JSON.stringify(typeof body.model === 'string' ? body.model : 'unknown');
  const promptTokens = estimatePromptTokens(body.messages ?? []);
  const tools = chooseTools(body, knobs);
  const choices: ChoicePlan[] = [];
  let completionTokens = 0;
  if (tools.length > 0) {
    for (let i = 0; i < n; i++) {
      const calls = toolCalls(tools, knobs.chunks);
      for (const c of calls) completionTokens += c.argPieces.length;
      choices.push({ kind: 'tool_calls', calls });
    }
  } else {
    let content = structuredContent(body, knobs.chunks) ?? textContent(knobs.chunks);
    let finishReason: 'stop' | 'length' = 'stop';
    const limit = maxTokens(body);
    if (limit !== undefined && limit < content.pieces.length) {
      content = contentPlan(content.pieces.slice(0, limit));
      finishReason = 'length';
    }
    const choice: ChoicePlan = { kind: 'content', content, finishReason };
    for (let i = 0; i < n; i++) choices.push(choice);
    completionTokens = content.pieces.length * n;
  }
  return { modelJson, choices, promptTokens, completionTokens };
}

export function usageJson(promptTokens: number, completionTokens: number): string {
  return `{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},"total_tokens":${promptTokens + completionTokens},"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`;
}

function toolCallJson(c: ToolCallPlan): string {
  return `{"id":"${c.id}","type":"function","function":{"name":${JSON.stringify(c.name)},"arguments":${JSON.stringify(c.arguments)}}}`;
}

function choiceJson(choice: ChoicePlan, index: number): string {
  if (choice.kind === 'content') {
    return `{"index":${index},"message":${choice.content.messageJson},"logprobs":null,"finish_reason":"${choice.finishReason}"}`;
  }
  const calls = choice.calls.map(toolCallJson).join(',');
  return `{"index":${index},"message":{"role":"assistant","content":null,"tool_calls":[${calls}],"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"tool_calls"}`;
}

export function renderChatCompletion(plan: ChatPlan, id: string, created: number): string {
  let choices = '';
  for (let i = 0; i < plan.choices.length; i++) {
    if (i > 0) choices += ',';
    choices += choiceJson(plan.choices[i]!, i);
  }
  return `{"id":"${id}","object":"chat.completion","created":${created},"model":${plan.modelJson},"system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[${choices}],"usage":${usageJson(plan.promptTokens, plan.completionTokens)},"service_tier":"default"}`;
}

/** The `choices[]` entries, one per chunk, that stream one choice the way OpenAI does. */
function choiceDeltas(choice: ChoicePlan, index: number): string[] {
  const open = `{"index":${index},"delta":`;
  const tail = ',"logprobs":null,"finish_reason":null}';
  const out: string[] = [];
  if (choice.kind === 'content') {
    out.push(`${open}{"role":"assistant","content":"","refusal":null}${tail}`);
    for (const p of choice.content.piecesJson) out.push(`${open}{"content":${p}}${tail}`);
    out.push(`${open}{},"logprobs":null,"finish_reason":"${choice.finishReason}"}`);
    return out;
  }
  choice.calls.forEach((c, k) => {
    const head = `{"index":${k},"id":"${c.id}","type":"function","function":{"name":${JSON.stringify(c.name)},"arguments":""}}`;
    // OpenAI folds the role into the first tool-call delta instead of sending a separate role chunk.
    out.push(
      k === 0
        ? `${open}{"role":"assistant","content":null,"tool_calls":[${head}],"refusal":null}${tail}`
        : `${open}{"tool_calls":[${head}]}${tail}`,
    );
    for (const piece of c.argPieces) {
      out.push(
        `${open}{"tool_calls":[{"index":${k},"function":{"arguments":${JSON.stringify(piece)}}}]}${tail}`,
      );
    }
  });
  out.push(`${open}{},"logprobs":null,"finish_reason":"tool_calls"}`);
  return out;
}

export const DONE_FRAME = 'data: [DONE]\n\n';

/** Every SSE frame of a streamed completion, `[DONE]` included. */
export function renderChatStream(
  plan: ChatPlan,
  id: string,
  created: number,
  includeUsage: boolean,
): string[] {
  const prefix = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${plan.modelJson},"service_tier":"default","system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[`;
  const suffix = includeUsage ? '],"usage":null}\n\n' : ']}\n\n';
  const frames: string[] = [];
  if (plan.choices.length === 1) {
    for (const d of choiceDeltas(plan.choices[0]!, 0)) frames.push(prefix + d + suffix);
  } else {
    // Several choices interleave, as with OpenAI; round-robin keeps it deterministic.
    const perChoice = plan.choices.map((c, i) => choiceDeltas(c, i));
    const longest = Math.max(...perChoice.map((d) => d.length));
    for (let j = 0; j < longest; j++) {
      for (const deltas of perChoice) {
        const d = deltas[j];
        if (d !== undefined) frames.push(prefix + d + suffix);
      }
    }
  }
  if (includeUsage)
    frames.push(`${prefix}],"usage":${usageJson(plan.promptTokens, plan.completionTokens)}}\n\n`);
  frames.push(DONE_FRAME);
  return frames;
}

// ---------------------------------------------------------------------------------------------
// embeddings

type EmbeddingInput = { text: string; tokens: number };

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x));
}

function embeddingInputs(input: unknown): EmbeddingInput[] | undefined {
  const fromText = (s: string): EmbeddingInput => ({ text: s, tokens: Math.max(1, Math.ceil(s.length / 4)) });
  // The NUL prefix keeps token input [1,2] from colliding with the text "1,2".
  const fromTokens = (t: number[]): EmbeddingInput => ({ text: `\u0000${t.join(',')}`, tokens: t.length });
  if (typeof input === 'string') return [fromText(input)];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((x) => typeof x === 'string')) return input.map(fromText);
  if (isIntArray(input)) return [fromTokens(input)];
  if (input.every(isIntArray)) return input.map(fromTokens);
  return undefined;
}

/** Unit-length, deterministic in the text: FNV-1a seeds a mulberry32 generator. */
function embed(text: string, dims: number): Float32Array {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  let seed = h >>> 0;
  const v = new Float32Array(dims);
  let norm = 0;
  for (let i = 0; i < dims; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const x = ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
    v[i] = x;
    norm += x * x;
  }
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  for (let i = 0; i < dims; i++) v[i] = v[i]! * scale;
  return v;
}

function base64Floats(v: Float32Array): string {
  const buf = Buffer.allocUnsafe(v.length * 4);
  for (let i = 0; i < v.length; i++) buf.writeFloatLE(v[i]!, i * 4);
  return buf.toString('base64');
}

export type Built = { ok: true; body: string; promptTokens: number } | { ok: false; error: ErrorFields };

export function buildEmbeddings(body: unknown, defaultDims: number): Built {
  if (!isRecord(body))
    return { ok: false, error: invalidParam('body', 'The request body must be a JSON object.') };
  if (body.model === undefined) return { ok: false, error: missingParam('model') };
  if (typeof body.model !== 'string') {
    return { ok: false, error: invalidParam('model', "Invalid type for 'model': expected a string.") };
  }
  if (body.input === undefined) return { ok: false, error: missingParam('input') };
  const inputs = embeddingInputs(body.input);
  if (!inputs) {
    return {
      ok: false,
      error: invalidParam(
        'input',
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
      ),
    };
  }
  let dims = defaultDims;
  if (body.dimensions !== undefined && body.dimensions !== null) {
    const d = body.dimensions;
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 1 || d > 4096) {
      return {
        ok: false,
        error: invalidParam('dimensions', "Invalid 'dimensions': expected an integer >= 1."),
      };
    }
    dims = d;
  }
  const format = body.encoding_format ?? 'float';
  if (format !== 'float' && format !== 'base64') {
    return {
      ok: false,
      error: invalidParam('encoding_format', "Invalid 'encoding_format': expected 'float' or 'base64'."),
    };
  }
  let data = '';
  let tokens = 0;
  inputs.forEach((input, i) => {
    const v = embed(input.text, dims);
    // Float32Array#join prints each float32 exactly, so float and base64 answers decode identically.
    const emb = format === 'base64' ? `"${base64Floats(v)}"` : `[${v.join(',')}]`;
    data += `${i > 0 ? ',' : ''}{"object":"embedding","index":${i},"embedding":${emb}}`;
    tokens += input.tokens;
  });
  return {
    ok: true,
    promptTokens: tokens,
    body: `{"object":"list","data":[${data}],"model":${JSON.stringify(body.model)},"usage":{"prompt_tokens":${tokens},"total_tokens":${tokens}}}`,
  };
}
