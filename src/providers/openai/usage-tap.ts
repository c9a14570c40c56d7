// Relays an OpenAI SSE stream chunk by chunk, as it arrives, and taps it on the way: the usage
// chunk is read (and hidden from a client that did not ask for it), an error event becomes an
// UpstreamError, and a stream that ends without `[DONE]` is a failure, never a silent success.
import { errors } from '../../errors.js';
import type { Chunk, Usage } from '../../pipeline/types.js';
import { SseParser } from '../sse/parse.js';
import { byteBudget, type UpstreamResponse } from '../upstream-client.js';
import { mapUpstreamError } from './map-error.js';

const HAS_USAGE = /"usage"\s*:\s*\{/;

export function relayStream(
  res: UpstreamResponse,
  providerName: string,
  clientWantsUsage: boolean,
  maxBytes: number,
): { chunks: AsyncIterable<Chunk>; usage: Promise<Usage | undefined> } {
  let settle!: (u: Usage | undefined) => void;
  const usage = new Promise<Usage | undefined>((resolve) => (settle = resolve));
  let seen: Usage | undefined;

  async function* chunks(): AsyncGenerator<Chunk> {
    const parser = new SseParser();
    const count = byteBudget(maxBytes, providerName);
    let done = false;
    try {
      // Read to the end even after [DONE]: leaving the body unread would cost the keep-alive socket.
      for await (const bytes of res.body as AsyncIterable<Buffer>) {
        if (done) continue;
        count(bytes);
        for (const ev of parser.push(bytes)) {
          const data = ev.data;
          if (data === '[DONE]') {
            done = true;
            break;
          }
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
              if (!clientWantsUsage && Array.isArray(parsed.choices) && parsed.choices.length === 0) continue;
            }
          }
          yield { data };
        }
      }
    } catch (err) {
      throw res.mapError(err);
    } finally {
      res.done();
      if (!done) res.body.destroy();
      settle(seen);
    }
    if (!done) throw errors.upstreamBadResponse(providerName, 'the stream ended before [DONE]');
  }

  return { chunks: chunks(), usage };
}

export function isUsage(v: unknown): v is Usage {
  return (
    v !== null &&
    typeof v === 'object' &&
    typeof (v as { prompt_tokens?: unknown }).prompt_tokens === 'number'
  );
}
