// A deployment's own upstream quota (the provider account's RPM/TPM), shared by every team and
// replica: before a candidate is called, one request and the token estimate are reserved from
// its buckets; a candidate without room is skipped (its retryAfterMs tells when it has room).
// After the call the reservation is reconciled with the real usage.
import type { Logger } from 'pino';
import type { Keys } from '../../stores/keys.js';
import type { Bucket, Store, Take } from '../../stores/store.js';
import type { TokenEstimate } from '../limits/estimate.js';
import type { Deployment } from '../types.js';

export type QuotaReservation =
  | { admitted: true; settle: (usedTokens: number) => void; tokensLeftShare: number | undefined }
  | { admitted: false; retryAfterMs: number };

const NOTHING_RESERVED: QuotaReservation = { admitted: true, settle: () => {}, tokensLeftShare: undefined };

export async function reserveQuota(
  deps: { store: Store; keys: Keys; log: Logger },
  dep: Deployment,
  estimate: TokenEstimate,
  reqId: string,
): Promise<QuotaReservation> {
  const quota = dep.quota;
  if (!quota) return NOTHING_RESERVED;
  const takes: Take[] = [];
  if (quota.rpm !== undefined) takes.push({ bucket: bucket(deps.keys, dep.id, 'rpm', quota.rpm), cost: 1 });
  const tokens = quota.tpm !== undefined ? bucket(deps.keys, dep.id, 'tpm', quota.tpm) : undefined;
  // A request larger than the whole quota is still sent when the quota is full: the upstream judges it.
  const reserved = tokens ? Math.min(estimate.total, tokens.capacity) : 0;
  if (tokens) takes.push({ bucket: tokens, cost: reserved });
  const r = await deps.store.take(takes);
  if (!r.admitted) return { admitted: false, retryAfterMs: r.retryAfterMs };
  const tokenSnap = tokens ? r.buckets[takes.length - 1] : undefined;
  return {
    admitted: true,
    tokensLeftShare: tokens && tokenSnap ? tokenSnap.remaining / tokens.capacity : undefined,
    settle(used) {
      const delta = used - reserved;
      if (!tokens || delta === 0) return;
      deps.store
        .adjust([{ bucket: tokens, cost: delta }])
        .catch((err: unknown) => deps.log.warn({ err, reqId }, 'quota reconcile failed'));
    },
  };
}

function bucket(keys: Keys, id: string, name: 'rpm' | 'tpm', perMinute: number): Bucket {
  return { key: keys.deploymentBucket(id, name), capacity: perMinute, refillPerSecond: perMinute / 60 };
}
