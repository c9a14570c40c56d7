// Quota: protects each upstream deployment's own RPM/TPM quota (the provider account's limits),
// shared by every team and every replica. Reads ctx.candidates (from route) and reserves 1
// request and the token estimate from the first candidate's buckets before it is called, then
// reconciles like the team limits. A deployment over its quota answers 429 with the time until
// it has room; the attempts stage (routing issue) will use the same check to pick another one.
// Store trouble follows the store's policy (local buckets or 503).
import type { Logger } from 'pino';
import type { LimitsConfig } from '../../config/schema.js';
import { errors } from '../../errors.js';
import type { Keys } from '../../stores/keys.js';
import type { Store, Take } from '../../stores/store.js';
import { estimateTokens } from '../limits/estimate.js';
import { formatDuration } from '../limits/headers.js';
import { withReconcile } from '../limits/reconcile.js';
import type { Stage } from '../types.js';

export function createQuotaStage(
  deps: { store: Store; keys: Keys; log: Logger },
  limits: LimitsConfig,
): Stage {
  const { store, keys, log } = deps;
  return async function quotaStage(ctx, next) {
    const quota = ctx.candidates[0]?.quota;
    if (!quota) return next(ctx);
    const dep = ctx.candidates[0]!;
    const estimate = estimateTokens(ctx, limits);
    const takes: Take[] = [];
    if (quota.rpm !== undefined) {
      takes.push({
        bucket: {
          key: keys.deploymentBucket(dep.id, 'rpm'),
          capacity: quota.rpm,
          refillPerSecond: quota.rpm / 60,
        },
        cost: 1,
      });
    }
    const tokenBucket =
      quota.tpm !== undefined
        ? { key: keys.deploymentBucket(dep.id, 'tpm'), capacity: quota.tpm, refillPerSecond: quota.tpm / 60 }
        : undefined;
    // A request larger than the whole quota is still sent: the upstream is the judge of that.
    if (tokenBucket)
      takes.push({ bucket: tokenBucket, cost: Math.min(estimate.total, tokenBucket.capacity) });
    const r = await store.take(takes);
    if (!r.admitted) {
      // The client is not told which deployment (that is the operator's business), only when to retry.
      throw errors.rateLimited({
        dimension: quota.rpm !== undefined && r.limiting === 0 ? 'requests' : 'tokens',
        retryAfterMs: r.retryAfterMs,
        headers: {},
        message: `The upstream capacity for model ${ctx.model} is used up for the moment. Please try again in ${formatDuration(r.retryAfterMs)}.`,
      });
    }
    const reserved = tokenBucket ? Math.min(estimate.total, tokenBucket.capacity) : 0;
    const settle = (used: number): void => {
      const delta = used - reserved;
      if (!tokenBucket || delta === 0) return;
      store
        .adjust([{ bucket: tokenBucket, cost: delta }])
        .catch((err: unknown) => log.warn({ err, reqId: ctx.reqId }, 'quota reconcile failed'));
    };
    return withReconcile(next(ctx), estimate, settle, {});
  };
}
