// Anthropic prompt caching, simulated: a request's input tokens split into cache writes, cache reads
// and the uncached rest, the way Anthropic reports them. Anthropic caches the prompt prefix up to each
// `cache_control` breakpoint, in the order tools -> system -> messages; a later request whose prefix up
// to a breakpoint is identical reads it instead of writing it. `input_tokens` then counts only what
// follows the last breakpoint: it EXCLUDES cache reads and writes (unlike OpenAI's cached_tokens).
// https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching
import { createHash } from 'node:crypto';
import { isRecord } from './responses.js';
import type { Json } from './responses.js';

export interface PromptUsage {
  /** Tokens after the last breakpoint (all of them when there is none). */
  inputTokens: number;
  cacheCreationTokens: number;
  cacheReadTokens: number;
  /** cacheCreationTokens split by the TTL of the breakpoint that wrote them. */
  cacheCreation5m: number;
  cacheCreation1h: number;
}

interface Segment {
  /** Canonical text: the block's JSON without its cache_control, so marking a block changes no count. */
  text: string;
  tokens: number;
  /** The block's cache_control, if any. */
  breakpoint: unknown;
}

function segment(prefix: string, block: unknown): Segment {
  let breakpoint: unknown;
  let value = block;
  if (isRecord(block) && block.cache_control !== undefined) {
    const { cache_control, ...rest } = block;
    breakpoint = cache_control;
    value = rest;
  }
  const text = prefix + (JSON.stringify(value) ?? 'null');
  return { text, tokens: Math.max(1, Math.ceil(text.length / 4)), breakpoint };
}

/**
 * The prompt as Anthropic orders its cache prefix: each tool, each system block (a string system
 * prompt is one block), then each message's content blocks (string content is one block), every
 * message block prefixed with its role. Tolerates any input (scripted streams accept anything).
 */
export function promptSegments(body: Json): Segment[] {
  const out: Segment[] = [];
  if (Array.isArray(body.tools)) for (const t of body.tools) out.push(segment('tool:', t));
  if (Array.isArray(body.system)) for (const b of body.system) out.push(segment('system:', b));
  else if (body.system !== undefined) out.push(segment('system:', body.system));
  if (Array.isArray(body.messages)) {
    for (const m of body.messages) {
      const role = isRecord(m) && typeof m.role === 'string' ? m.role : '?';
      const content = isRecord(m) ? m.content : m;
      if (Array.isArray(content)) for (const b of content) out.push(segment(`${role}:`, b));
      else out.push(segment(`${role}:`, content));
    }
  }
  return out;
}

/** Input tokens of a request without any caching: ceil(length / 4) of each segment, summed (at least 1). */
export function countInputTokens(segments: readonly Segment[]): number {
  let total = 0;
  for (const s of segments) total += s.tokens;
  return Math.max(1, total);
}

/** Remembers the prefixes seen at breakpoints, per model; bounded, oldest forgotten first. */
export class PromptCache {
  private readonly seen = new Set<string>();

  constructor(private readonly maxEntries = 4096) {}

  clear(): void {
    this.seen.clear();
  }

  /** Splits the request's input tokens and records its prefixes as cached. */
  usage(model: string, segments: readonly Segment[]): PromptUsage {
    const total = countInputTokens(segments);
    const marks: { upTo: number; key: string; oneHour: boolean }[] = [];
    if (segments.some((s) => s.breakpoint !== undefined)) {
      // Keyed by everything up to the breakpoint, and by model: caches are not shared across models.
      const hash = createHash('sha256').update(`${model}\u0000`);
      let upTo = 0;
      for (const s of segments) {
        upTo += s.tokens;
        hash.update(`${s.text}\u0000`);
        if (s.breakpoint === undefined) continue;
        const oneHour = isRecord(s.breakpoint) && s.breakpoint.ttl === '1h';
        marks.push({ upTo, key: hash.copy().digest('base64'), oneHour });
      }
    }
    const last = marks.at(-1);
    if (!last) {
      return {
        inputTokens: total,
        cacheCreationTokens: 0,
        cacheReadTokens: 0,
        cacheCreation5m: 0,
        cacheCreation1h: 0,
      };
    }
    // The longest prefix already cached is read; every later breakpoint writes its own stretch.
    let hit = -1;
    for (let i = marks.length - 1; i >= 0; i--) {
      if (this.seen.has(marks[i]!.key)) {
        hit = i;
        break;
      }
    }
    const read = hit >= 0 ? marks[hit]!.upTo : 0;
    let prev = read;
    let w5m = 0;
    let w1h = 0;
    for (let i = hit + 1; i < marks.length; i++) {
      const m = marks[i]!;
      if (m.oneHour) w1h += m.upTo - prev;
      else w5m += m.upTo - prev;
      prev = m.upTo;
    }
    for (const m of marks) this.remember(m.key);
    return {
      inputTokens: total - last.upTo,
      cacheCreationTokens: w5m + w1h,
      cacheReadTokens: read,
      cacheCreation5m: w5m,
      cacheCreation1h: w1h,
    };
  }

  private remember(key: string): void {
    this.seen.delete(key);
    this.seen.add(key);
    if (this.seen.size > this.maxEntries) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
  }
}
