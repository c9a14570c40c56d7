// Folds a chat.completion.chunk stream into the one chat.completion a non-stream request would
// have got, so a streamed answer can be cached once and served in either form. Accumulation
// follows the official SDK's (openai-node ChatCompletionStream): strings are concatenated,
// tool calls are keyed by their index with `arguments` concatenated and id/type/name taken as
// they come. Anything it cannot fold faithfully (unparseable data, an unknown non-string delta
// field, a legacy function_call) marks the stream as not assemblable: better no entry than a
// wrong one.
import type { Usage } from '../types.js';

export interface ToolCall {
  id?: string;
  type: string;
  function: { name: string; arguments: string };
  [k: string]: unknown;
}

export interface CompletionMessage {
  role: string;
  content: string | null;
  refusal?: string | null;
  tool_calls?: ToolCall[];
  annotations?: unknown[];
  /** Provider extras such as `reasoning_content`, kept as they came. */
  [k: string]: unknown;
}

export interface CompletionChoice {
  index: number;
  message: CompletionMessage;
  logprobs: { content: unknown[] | null; refusal: unknown[] | null; [k: string]: unknown } | null;
  finish_reason: string | null;
  [k: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: string;
  created: number;
  model: string;
  choices: CompletionChoice[];
  usage?: Usage;
  service_tier?: string | null;
  system_fingerprint?: string | null;
  [k: string]: unknown;
}

interface ToolCallState {
  id: string | undefined;
  type: string | undefined;
  name: string;
  arguments: string;
}

interface ChoiceState {
  index: number;
  role: string;
  /** undefined until a string delta arrives: a message that never streamed content has content null. */
  content: string | undefined;
  refusal: string | undefined;
  toolCalls: Map<number, ToolCallState>;
  /** Unknown string delta fields (reasoning_content, reasoning, ...), concatenated. */
  extras: Map<string, string>;
  annotations: unknown[] | undefined;
  logprobsContent: unknown[] | undefined;
  logprobsRefusal: unknown[] | undefined;
  logprobsSeen: boolean;
  finishReason: string | null;
}

/** Received chunk text held before it is folded in: a long stream is folded as it goes. */
const FOLD_BYTES = 64 * 1024;

const KNOWN_DELTA_FIELDS = new Set(['role', 'content', 'refusal', 'tool_calls', 'annotations']);

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export class StreamAssembler {
  private broken = false;
  private id: string | undefined;
  private created: number | undefined;
  private model: string | undefined;
  private systemFingerprint: string | null | undefined;
  private serviceTier: string | null | undefined;
  private usage: Usage | undefined;
  private readonly choices = new Map<number, ChoiceState>();
  /** Text accumulated so far: past maxBytes the entry could not be stored, so stop holding it. */
  private bytes = 0;
  /**
   * Chunks received and not folded in yet. Folding parses each chunk's JSON, which a relay should
   * not pay while the client waits for the next chunk: chunks are kept as received (the
   * accounting stage keeps the same strings) and folded at the end, or FOLD_BYTES at a time.
   */
  private unfolded: string[] = [];
  private unfoldedBytes = 0;

  constructor(private readonly maxBytes: number = Number.POSITIVE_INFINITY) {}

  /** False once a chunk could not be folded in (or the text outgrew maxBytes). */
  get ok(): boolean {
    this.fold();
    return !this.broken;
  }

  /** Feeds one chunk's `data` text (never `[DONE]`). */
  push(data: string): void {
    if (this.broken) return;
    this.unfolded.push(data);
    this.unfoldedBytes += data.length;
    if (this.unfoldedBytes >= FOLD_BYTES) this.fold();
  }

  private fold(): void {
    const pending = this.unfolded;
    if (pending.length === 0) return;
    this.unfolded = [];
    this.unfoldedBytes = 0;
    for (const data of pending) {
      if (this.broken) return;
      this.foldOne(data);
    }
  }

  private foldOne(data: string): void {
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      return this.fail();
    }
    if (!isRecord(chunk) || !Array.isArray(chunk.choices)) return this.fail();
    if (typeof chunk.id === 'string') this.id = chunk.id;
    if (typeof chunk.created === 'number') this.created = chunk.created;
    if (typeof chunk.model === 'string') this.model = chunk.model;
    if (typeof chunk.system_fingerprint === 'string' || chunk.system_fingerprint === null)
      this.systemFingerprint = chunk.system_fingerprint;
    if (typeof chunk.service_tier === 'string' || chunk.service_tier === null)
      this.serviceTier = chunk.service_tier;
    if (isRecord(chunk.usage) && typeof chunk.usage.prompt_tokens === 'number')
      this.usage = chunk.usage as Usage;
    for (const c of chunk.choices) {
      if (!this.pushChoice(c)) return this.fail();
    }
    if (this.bytes > this.maxBytes) this.fail();
  }

  /**
   * The assembled chat.completion, or undefined when the stream could not be assembled. `usage`
   * (the stream outcome's settled usage) wins over a usage chunk, which the provider may have
   * hidden from this stage when the client did not ask for it.
   */
  finish(usage?: Usage): ChatCompletion | undefined {
    this.fold();
    if (this.broken || this.id === undefined) return undefined;
    const u = usage ?? this.usage;
    const choices = [...this.choices.values()].sort((a, b) => a.index - b.index).map(buildChoice);
    const out: ChatCompletion = {
      id: this.id,
      object: 'chat.completion',
      created: this.created ?? 0,
      model: this.model ?? '',
      choices,
    };
    // Same member order as OpenAI's own non-stream bodies.
    if (u) out.usage = u;
    if (this.serviceTier !== undefined) out.service_tier = this.serviceTier;
    if (this.systemFingerprint !== undefined) out.system_fingerprint = this.systemFingerprint;
    return out;
  }

  private fail(): void {
    this.broken = true;
    this.choices.clear();
    this.unfolded = [];
  }

  private choice(index: number): ChoiceState {
    let s = this.choices.get(index);
    if (!s) {
      s = {
        index,
        role: 'assistant',
        content: undefined,
        refusal: undefined,
        toolCalls: new Map(),
        extras: new Map(),
        annotations: undefined,
        logprobsContent: undefined,
        logprobsRefusal: undefined,
        logprobsSeen: false,
        finishReason: null,
      };
      this.choices.set(index, s);
    }
    return s;
  }

  private pushChoice(c: unknown): boolean {
    if (!isRecord(c) || typeof c.index !== 'number') return false;
    const s = this.choice(c.index);
    if (typeof c.finish_reason === 'string') s.finishReason = c.finish_reason;
    if (isRecord(c.logprobs)) {
      s.logprobsSeen = true;
      const { content, refusal } = c.logprobs;
      if (Array.isArray(content)) s.logprobsContent = (s.logprobsContent ?? []).concat(content);
      if (Array.isArray(refusal)) s.logprobsRefusal = (s.logprobsRefusal ?? []).concat(refusal);
    }
    const delta = c.delta;
    if (delta === undefined || delta === null) return true;
    if (!isRecord(delta)) return false;
    if (typeof delta.role === 'string') s.role = delta.role;
    if (typeof delta.content === 'string') s.content = this.append(s.content, delta.content);
    else if (delta.content !== undefined && delta.content !== null) return false;
    if (typeof delta.refusal === 'string') s.refusal = this.append(s.refusal, delta.refusal);
    else if (delta.refusal !== undefined && delta.refusal !== null) return false;
    if (Array.isArray(delta.annotations)) s.annotations = (s.annotations ?? []).concat(delta.annotations);
    if (delta.tool_calls !== undefined && delta.tool_calls !== null) {
      if (!Array.isArray(delta.tool_calls)) return false;
      for (const tc of delta.tool_calls) if (!this.pushToolCall(s, tc)) return false;
    }
    for (const name of Object.keys(delta)) {
      if (KNOWN_DELTA_FIELDS.has(name)) continue;
      const v = delta[name];
      if (v === null || v === undefined) continue;
      // A string field (reasoning_content, ...) streams like content; anything else (a legacy
      // function_call, audio) has merge rules we do not know.
      if (typeof v !== 'string') return false;
      s.extras.set(name, this.append(s.extras.get(name), v));
    }
    return true;
  }

  private pushToolCall(s: ChoiceState, tc: unknown): boolean {
    if (!isRecord(tc) || typeof tc.index !== 'number') return false;
    let t = s.toolCalls.get(tc.index);
    if (!t) {
      t = { id: undefined, type: undefined, name: '', arguments: '' };
      s.toolCalls.set(tc.index, t);
    }
    if (typeof tc.id === 'string') t.id = tc.id;
    if (typeof tc.type === 'string') t.type = tc.type;
    const fn = tc.function;
    if (fn !== undefined && fn !== null) {
      if (!isRecord(fn)) return false;
      if (typeof fn.name === 'string' && fn.name !== '') t.name = fn.name;
      if (typeof fn.arguments === 'string') t.arguments = this.append(t.arguments, fn.arguments);
    }
    return true;
  }

  private append(to: string | undefined, piece: string): string {
    this.bytes += piece.length;
    return to === undefined ? piece : to + piece;
  }
}

function buildChoice(s: ChoiceState): CompletionChoice {
  const message: CompletionMessage = {
    role: s.role,
    content: s.content ?? null,
    refusal: s.refusal ?? null,
  };
  for (const [name, v] of s.extras) message[name] = v;
  if (s.toolCalls.size > 0) {
    message.tool_calls = [...s.toolCalls.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([, t]) => ({
        ...(t.id !== undefined ? { id: t.id } : {}),
        type: t.type ?? 'function',
        function: { name: t.name, arguments: t.arguments },
      }));
  }
  if (s.annotations) message.annotations = s.annotations;
  return {
    index: s.index,
    message,
    logprobs: s.logprobsSeen
      ? { content: s.logprobsContent ?? null, refusal: s.logprobsRefusal ?? null }
      : null,
    finish_reason: s.finishReason,
  };
}
