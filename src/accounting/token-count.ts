// The token-counting rules shared by the main thread and the token worker: which encoding a model
// uses, how an OpenAI chat request is laid out in tokens (per-message, per-name, per-tool overheads)
// and the loaded encoders (gpt-tokenizer). Pure and synchronous: tokens.ts decides whether a count
// runs inline or in the worker.

export type EncodingName = 'o200k_base' | 'cl100k_base';

/** How a model's tokens are counted. */
export interface ModelTokenization {
  /** The encoding texts are counted with. */
  encoding: EncodingName;
  /** Multiplier applied to the final count, rounded up; 1 where the count is exact. */
  factor: number;
  /** True when `encoding` is the model's own tokenizer (the OpenAI families), so counts are exact. */
  exact: boolean;
}

/**
 * OpenAI model families by name prefix; the longest matching prefix wins, so `gpt-4o-mini` is
 * o200k_base (prefix `gpt-4o`) while `gpt-4-turbo` is cl100k_base (prefix `gpt-4`).
 */
const OPENAI_FAMILIES: ReadonlyArray<readonly [prefix: string, encoding: EncodingName]> = [
  ['gpt-4o', 'o200k_base'],
  ['chatgpt-4o', 'o200k_base'],
  ['gpt-4.1', 'o200k_base'],
  ['gpt-4.5', 'o200k_base'],
  ['gpt-5', 'o200k_base'],
  ['o1', 'o200k_base'],
  ['o3', 'o200k_base'],
  ['o4', 'o200k_base'],
  ['codex-', 'o200k_base'],
  ['gpt-realtime', 'o200k_base'],
  ['gpt-audio', 'o200k_base'],
  ['omni-moderation', 'o200k_base'],
  ['gpt-4', 'cl100k_base'],
  ['gpt-3.5', 'cl100k_base'],
  ['gpt-35', 'cl100k_base'], // Azure's spelling of gpt-3.5
  ['text-embedding-3', 'cl100k_base'],
  ['text-embedding-ada-002', 'cl100k_base'],
];

/**
 * Anthropic does not publish Claude's tokenizer (its exact count is an API call, too slow for a
 * guard). Public comparisons of Claude 3.5 Sonnet against gpt-4o on the same inputs found Claude
 * producing about 16% more tokens on English prose, 21% on maths and 30% on code (VentureBeat,
 * "Hidden costs in AI deployment", 2025). We count with o200k_base and multiply by 1.2: it errs on
 * the side of the context-window guard for prose and is within 10% for code. The upstream's
 * reported usage, when there is one, always wins over this estimate.
 */
export const CLAUDE_TOKEN_FACTOR = 1.2;

const APPROXIMATE_FAMILIES: ReadonlyArray<readonly [prefix: string, factor: number]> = [
  ['claude-', CLAUDE_TOKEN_FACTOR],
];

const BY_LONGEST_PREFIX = [
  ...OPENAI_FAMILIES.map(([prefix, encoding]) => ({
    prefix,
    tokenization: { encoding, factor: 1, exact: true },
  })),
  ...APPROXIMATE_FAMILIES.map(([prefix, factor]) => ({
    prefix,
    tokenization: { encoding: 'o200k_base' as const, factor, exact: false },
  })),
].sort((a, b) => b.prefix.length - a.prefix.length);

/**
 * Any other model (Llama, Mistral, Gemini, gpt-oss behind a compatible server...): o200k_base
 * as is. Their tokenizers are BPE or SentencePiece vocabularies of 128k-256k entries, which land
 * within about 10% of o200k_base on English text, closer than any factor we could defend.
 */
const OTHER_MODELS: ModelTokenization = { encoding: 'o200k_base', factor: 1, exact: false };

/**
 * The tokenization for a model name. The name is lower-cased; a provider prefix (`openai/gpt-4o`)
 * and a fine-tune prefix (`ft:gpt-4o-mini:org::id`) are ignored.
 */
export function modelTokenization(model: string): ModelTokenization {
  let name = model.trim().toLowerCase();
  name = name.slice(name.lastIndexOf('/') + 1);
  if (name.startsWith('ft:')) name = name.slice(3);
  for (const family of BY_LONGEST_PREFIX) {
    if (name.startsWith(family.prefix)) return family.tokenization;
  }
  return OTHER_MODELS;
}

/** Applies a tokenization's factor to a raw count. */
export function scaleCount(raw: number, factor: number): number {
  return factor === 1 ? raw : Math.ceil(raw * factor);
}

// OpenAI's chat layout, from the cookbook "How to count tokens with tiktoken" (its examples match
// the API's prompt_tokens: 129 for cl100k models and 124 for o200k models on the message example,
// 105 and 101 on the tool example; both are in the unit tests).

/** Every message is wrapped in <|start|>{role/name}\n{content}<|end|>\n. */
export const TOKENS_PER_MESSAGE = 3;
/** A `name` costs its tokens plus one. */
export const TOKENS_PER_NAME = 1;
/** Every reply is primed with <|start|>assistant<|message|>. */
export const REPLY_PRIMING_TOKENS = 3;
/**
 * A tool call in an assistant message: its function name and arguments, plus this much for the
 * call's framing. OpenAI does not document it; 3 is what gpt-tokenizer uses for a function_call.
 */
export const TOKENS_PER_TOOL_CALL = 3;
/**
 * Images cannot be measured without decoding them, so an image part costs a fixed estimate:
 * `detail: 'low'` is OpenAI's fixed 85 tokens; `high`, `auto` or none is 765, what OpenAI's docs
 * give for a 1024x1024 image at high detail (85 + 4 tiles x 170). gpt-4o-mini and the o-series
 * bill images at other rates; their upstream usage corrects the figure when it is reported.
 */
export const IMAGE_TOKENS_LOW_DETAIL = 85;
export const IMAGE_TOKENS_DEFAULT = 765;

/**
 * Tool definitions, per the cookbook's num_tokens_for_tools: per function, a start overhead (7 on
 * o200k_base, 10 on cl100k_base) plus `name:description`; when it has properties, 3 plus, per
 * property, 3 and `key:type:description` (a trailing '.' dropped from descriptions); an enum adds
 * -3 and, per value, 3 plus the value; 12 closes the list. The cookbook stops at flat properties:
 * any other keywords of a property (nested `properties`, `items`, `anyOf`, `format`...) are counted
 * as their compact JSON, and a tool that is not a function as the compact JSON of the whole tool.
 */
const TOOL_OVERHEAD = {
  functionStart: { o200k_base: 7, cl100k_base: 10 } as const satisfies Record<EncodingName, number>,
  properties: 3,
  property: 3,
  enumStart: -3,
  enumItem: 3,
  end: 12,
};

/** The part of a chat completion request that is counted. Unknown fields and shapes are ignored. */
export interface ChatBody {
  messages: readonly unknown[];
  tools?: readonly unknown[] | undefined;
  /** The deprecated `functions` list, counted like `tools`. */
  functions?: readonly unknown[] | undefined;
}

/** A chat request reduced to what costs tokens: a fixed part and text segments to encode. */
export interface ChatPlan {
  /** Overheads and image estimates: tokens known without encoding anything. */
  fixed: number;
  /** Text segments, each encoded on its own (tokens never merge across two of them). */
  texts: string[];
  /** Total length of `texts` in UTF-16 code units, to choose between inline and worker. */
  chars: number;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class PlanBuilder {
  fixed = 0;
  readonly texts: string[] = [];
  chars = 0;

  text(value: unknown): void {
    if (typeof value !== 'string' || value.length === 0) return;
    this.texts.push(value);
    this.chars += value.length;
  }

  json(value: unknown): void {
    this.text(JSON.stringify(value));
  }
}

function planContent(plan: PlanBuilder, content: unknown): void {
  if (typeof content === 'string') {
    plan.text(content);
    return;
  }
  if (!Array.isArray(content)) return;
  for (const part of content) {
    if (!isObject(part)) continue;
    if (part.type === 'text') plan.text(part.text);
    else if (part.type === 'refusal') plan.text(part.refusal);
    else if (part.type === 'image_url') {
      const detail = isObject(part.image_url) ? part.image_url.detail : undefined;
      plan.fixed += detail === 'low' ? IMAGE_TOKENS_LOW_DETAIL : IMAGE_TOKENS_DEFAULT;
    }
    // input_audio and file parts are not counted: their size is unknown without decoding them.
  }
}

function planCall(plan: PlanBuilder, fn: unknown): void {
  if (!isObject(fn)) return;
  plan.text(fn.name);
  plan.text(typeof fn.arguments === 'string' ? fn.arguments : fn.input);
  plan.fixed += TOKENS_PER_TOOL_CALL;
}

function planMessage(plan: PlanBuilder, message: unknown): void {
  if (!isObject(message)) return;
  plan.fixed += TOKENS_PER_MESSAGE;
  plan.text(message.role);
  planContent(plan, message.content);
  if (typeof message.name === 'string') {
    plan.text(message.name);
    plan.fixed += TOKENS_PER_NAME;
  }
  if (typeof message.refusal === 'string') plan.text(message.refusal);
  if (Array.isArray(message.tool_calls)) {
    for (const call of message.tool_calls) {
      if (isObject(call)) planCall(plan, call.function ?? call.custom);
    }
  }
  if (message.function_call !== undefined) planCall(plan, message.function_call);
}

function withoutFinalPeriod(text: unknown): string {
  if (typeof text !== 'string') return '';
  return text.endsWith('.') ? text.slice(0, -1) : text;
}

function planFunction(plan: PlanBuilder, fn: Json, encoding: EncodingName): void {
  plan.fixed += TOOL_OVERHEAD.functionStart[encoding];
  plan.text(`${typeof fn.name === 'string' ? fn.name : ''}:${withoutFinalPeriod(fn.description)}`);
  const properties = isObject(fn.parameters) ? fn.parameters.properties : undefined;
  if (!isObject(properties) || Object.keys(properties).length === 0) return;
  plan.fixed += TOOL_OVERHEAD.properties;
  for (const [key, schema] of Object.entries(properties)) {
    plan.fixed += TOOL_OVERHEAD.property;
    if (!isObject(schema)) {
      plan.text(`${key}::`);
      continue;
    }
    const { type, description, enum: values, ...rest } = schema;
    if (Array.isArray(values)) {
      plan.fixed += TOOL_OVERHEAD.enumStart;
      for (const value of values) {
        plan.fixed += TOOL_OVERHEAD.enumItem;
        plan.text(typeof value === 'string' ? value : JSON.stringify(value));
      }
    }
    const typeText = typeof type === 'string' ? type : type === undefined ? '' : JSON.stringify(type);
    plan.text(`${key}:${typeText}:${withoutFinalPeriod(description)}`);
    if (Object.keys(rest).length > 0) plan.json(rest);
  }
}

function planTools(plan: PlanBuilder, tools: readonly unknown[], encoding: EncodingName): void {
  let counted = 0;
  for (const tool of tools) {
    if (!isObject(tool)) continue;
    counted++;
    if (isObject(tool.function)) planFunction(plan, tool.function, encoding);
    else if (tool.type === undefined && typeof tool.name === 'string') planFunction(plan, tool, encoding);
    else {
      plan.fixed += TOOL_OVERHEAD.functionStart[encoding];
      plan.json(tool);
    }
  }
  if (counted > 0) plan.fixed += TOOL_OVERHEAD.end;
}

/** Reduces a chat request to its fixed overheads and the text segments that must be encoded. */
export function planChat(encoding: EncodingName, body: ChatBody): ChatPlan {
  const plan = new PlanBuilder();
  for (const message of body.messages) planMessage(plan, message);
  plan.fixed += REPLY_PRIMING_TOKENS;
  const tools = [...(body.tools ?? []), ...(body.functions ?? [])];
  if (tools.length > 0) planTools(plan, tools, encoding);
  return { fixed: plan.fixed, texts: plan.texts, chars: plan.chars };
}

/** Loaded encodings: counts a text as plain text (special-token strings count as ordinary text). */
export interface Encoders {
  count(encoding: EncodingName, text: string): number;
}

/** Special tokens in user text are plain text, as the OpenAI API treats them; never an error. */
const PLAIN_TEXT = { disallowedSpecial: new Set<string>() };

/**
 * Loads both encodings (about 0.7 s and 30 MB of heap per thread on the bench machine, see
 * bench/tokens.mjs) and warms them up. Call once at start-up; each worker thread loads its own copy.
 */
export async function loadEncodings(): Promise<Encoders> {
  const [o200k, cl100k] = await Promise.all([
    import('gpt-tokenizer/encoding/o200k_base'),
    import('gpt-tokenizer/encoding/cl100k_base'),
  ]);
  const counters: Record<EncodingName, (text: string) => number> = {
    o200k_base: (text) => o200k.countTokens(text, PLAIN_TEXT),
    cl100k_base: (text) => cl100k.countTokens(text, PLAIN_TEXT),
  };
  const encoders: Encoders = {
    count: (encoding, text) => (text.length === 0 ? 0 : counters[encoding](text)),
  };
  const warmUp = 'Warm-up: the quick brown fox jumps over the lazy dog, 3 times; {"ok": true}\n';
  encoders.count('o200k_base', warmUp);
  encoders.count('cl100k_base', warmUp);
  return encoders;
}

/** The sum of the counts of each text, each encoded on its own. */
export function countTexts(encoders: Encoders, encoding: EncodingName, texts: readonly string[]): number {
  let total = 0;
  for (const text of texts) total += encoders.count(encoding, text);
  return total;
}
