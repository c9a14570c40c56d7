// Settling a token reservation once the real usage is known, shared by the team limits and the
// deployment quotas: JSON answers settle at once, streams when they end (however they end).
import { GatewayError } from '../../errors.js';
import { ChunkPipe } from '../chunk-pipe.js';
import type { Outcome, StreamOutcome, Usage } from '../types.js';
import type { TokenEstimate } from './estimate.js';

/** Tokens the upstream says the request used. */
export function usedTokens(u: Usage): number {
  return u.total_tokens ?? u.prompt_tokens + (u.completion_tokens ?? 0);
}

/**
 * Awaits the downstream outcome, adds `headers` to it (or to its error), and calls `settle`
 * exactly once with the tokens used: 0 when the request failed before any output (the tokens
 * go back; the request itself stays counted), the upstream's usage when known, else the
 * estimate (JSON) or the prompt estimate plus what was delivered (a broken or aborted stream).
 */
export async function withReconcile(
  pending: Promise<Outcome>,
  estimate: TokenEstimate,
  settle: (used: number) => void,
  headers: Record<string, string>,
): Promise<Outcome> {
  let outcome: Outcome;
  try {
    outcome = await pending;
  } catch (err) {
    settle(0);
    if (err instanceof GatewayError) Object.assign(err.headers, { ...headers, ...err.headers });
    throw err;
  }
  Object.assign(outcome.headers, headers);
  if (outcome.kind === 'json') {
    settle(outcome.usage ? usedTokens(outcome.usage) : estimate.total);
    return outcome;
  }
  return { ...outcome, chunks: settleAfter(outcome, estimate, settle) };
}

/**
 * Passes every chunk through and settles when the stream is over: from the usage chunk when
 * there was one; else the prompt estimate plus one token per chunk delivered (a streamed chunk
 * carries about one token).
 */
function settleAfter(
  outcome: StreamOutcome,
  estimate: TokenEstimate,
  settle: (used: number) => void,
): ChunkPipe {
  let delivered = 0;
  return ChunkPipe.of(outcome.chunks).tap({
    chunk() {
      delivered += 1;
    },
    end() {
      // The provider settles `usage` when its stream is over, which it is by now.
      void outcome.usage.then((u) => settle(u ? usedTokens(u) : estimate.prompt + delivered));
    },
  });
}
