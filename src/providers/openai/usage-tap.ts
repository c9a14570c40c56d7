// Relays an OpenAI SSE stream chunk by chunk, as it arrives, and taps it on the way: the usage
// chunk is read (and hidden from a client that did not ask for it), an error event becomes an
// UpstreamError, and a stream that ends without `[DONE]` is a failure, never a silent success.
import type { Chunk, Usage } from '../../pipeline/types.js';
import { SseSource } from '../sse/source.js';
import type { UpstreamResponse } from '../upstream-client.js';
import { mapUpstreamError } from './map-error.js';

const HAS_USAGE = /"usage"\s*:\s*\{/;

export function relayStream(
  res: UpstreamResponse,
  providerName: string,
  clientWantsUsage: boolean,
  maxBytes: number,
): { chunks: AsyncIterable<Chunk>; usage: Promise<Usage | undefined> } {
  let seen: Usage | undefined;
  const chunks = new SseSource(res, providerName, maxBytes, {
    unfinishedMessage: 'the stream ended before [DONE]',
    usage: () => seen,
    event(ev, out) {
      const data = ev.data;
      if (data === '[DONE]') return true;
      if (ev.event === 'error' || (!data.includes('"choices"') && data.includes('"error"'))) {
        throw mapUpstreamError(providerName, undefined, 500, {}, data);
      }
      if (HAS_USAGE.test(data)) {
        let parsed: { usage?: unknown; choices?: unknown[] } | undefined;
        try {
          parsed = JSON.parse(data) as typeof parsed;
        } catch {
          parsed = undefined;
        }
        if (parsed && isUsage(parsed.usage)) {
          seen = parsed.usage;
          if (!clientWantsUsage && Array.isArray(parsed.choices) && parsed.choices.length === 0) return false;
        }
      }
      out.push({ data });
      return false;
    },
  });
  return { chunks, usage: chunks.usage };
}

export function isUsage(v: unknown): v is Usage {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as { prompt_tokens?: unknown }).prompt_tokens === 'number'
  );
}
