// After-response store work that rides in the request's settle call. A request holding a budget
// reservation gets one settle call from the accounting stage when it is over (its spend, its
// reservation released); the limits stage's token reconciliation and slot release and the cache
// stage's write go in that same call (Store.settle's `also`): one Redis round trip after the
// response instead of four. For a JSON answer the accounting stage runs in the same turn as the
// others; whatever it has not taken by the end of the turn (it came first, or waits for a token
// count) goes on its own.
import { atEndOfTurn } from '../end-of-turn.js';
import type { SettleAlso } from '../stores/store.js';
import type { PipelineContext } from './types.js';

/**
 * Leaves `value` as `part` of the request's settle call, or runs `alone` when there will be no
 * such call (no reservation) or the accounting stage did not take it this turn.
 */
export function leaveForSettle<K extends keyof SettleAlso>(
  ctx: PipelineContext,
  part: K,
  value: NonNullable<SettleAlso[K]>,
  alone: () => void,
): void {
  if (ctx.budgetLeaseId === undefined) {
    alone();
    return;
  }
  const also = (ctx.settleAlso ??= {});
  also[part] = value;
  atEndOfTurn(() => {
    if (ctx.settleAlso !== also || also[part] !== value) return; // taken
    also[part] = undefined;
    alone();
  });
}

/** The parts left for the settle call, taken (by the accounting stage, which makes it). */
export function takeSettleAlso(ctx: PipelineContext): SettleAlso | undefined {
  const also = ctx.settleAlso;
  ctx.settleAlso = undefined;
  return also;
}
