// The server's internal description of a response, shared by the OpenAI and Anthropic routes and by
// scripted answers: a whole body, a list of pre-rendered SSE frames, a TCP reset, or silence.
import type { ScriptedEvent } from './types.js';

export type Extra = Record<string, string> | undefined;

/**
 * `api` picks the header set: OpenAI's (`x-request-id`, `x-ratelimit-*`) when unset, Anthropic's
 * (`request-id`, `anthropic-ratelimit-*`) for `'anthropic'`.
 */
export type Answer =
  | { t: 'body'; status: number; body: string; headers: Extra; api?: 'anthropic' }
  | {
      t: 'stream';
      status: number;
      frames: string[];
      delayMs: number;
      cutAfter: number | undefined;
      stallAfter: number | undefined;
      headers: Extra;
      api?: 'anthropic';
    }
  | { t: 'reset' }
  | { t: 'stall' };

export type StreamAnswer = Extract<Answer, { t: 'stream' }>;

export function lowerKeys(h: Record<string, string> | undefined): Extra {
  if (!h) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

/** `event: E\ndata: D\n\n`, the framing of every Anthropic stream event. */
export function sseEvent(event: string, data: string): string {
  return `event: ${event}\ndata: ${data}\n\n`;
}

/** Frames for `ScriptedStream.events`: strings as `data:` only, objects with their `event:` name. */
export function scriptedFrames(events: readonly (string | ScriptedEvent)[]): string[] {
  return events.map((e) => {
    if (typeof e === 'string') return `data: ${e}\n\n`;
    const data = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
    return e.event === undefined ? `data: ${data}\n\n` : sseEvent(e.event, data);
  });
}
