// Limits: RPM and TPM token buckets per team, per key and per team+model, and a per-team
// concurrency cap. Reads ctx.team, ctx.keyId, ctx.model and the body (for the reservation).
// On the way in it reserves 1 request and an estimate of the tokens in ONE atomic store call
// (all of a team's buckets share a Redis hash tag); over a limit it answers 429 with OpenAI's
// headers, or waits in a FIFO per team when maxWaitMs allows. On the way out (when a stream's
// usage settles) it reconciles the reservation with the real usage: refunds what was not used,
// charges any overage. Store trouble is the store's policy (ResilientStore): local limits or 503.
import type { Logger } from 'pino';
import type { LimitsConfig, RateLimitConfig, TeamConfig, TeamLimitsConfig } from '../../config/schema.js';
import { errors, GatewayError } from '../../errors.js';
import type { Keys } from '../../stores/keys.js';
import { abortableSleep } from '../sleep.js';
import type { Bucket, Store, Take, TakeResult } from '../../stores/store.js';
import { estimateTokens } from '../limits/estimate.js';
import { formatDuration, rateLimitHeaders, type LimitState } from '../limits/headers.js';
import { withReconcile } from '../limits/reconcile.js';
import type { PipelineContext, Stage } from '../types.js';
import type { Cancellation } from '../abort.js';

export interface LimitsDeps {
  store: Store;
  keys: Keys;
  log: Logger;
}

export interface LimitsOptions {
  teams: readonly Pick<TeamConfig, 'name' | 'limits'>[];
  limits: LimitsConfig;
  /** How long a concurrency slot is held at most if its release is lost (a crashed replica). */
  slotLeaseMs: number;
}

/** One limit that applies to a request: its bucket and how to talk about it. */
interface Limit {
  bucket: Bucket;
  dimension: 'requests' | 'tokens';
  perMinute: number;
  /** For messages: "team 'search'", "key k_12ab of team 'search'", ... */
  label: string;
}

export function createLimitsStage(deps: LimitsDeps, options: LimitsOptions): Stage {
  const { store, keys, log } = deps;
  const byTeam = new Map<string, TeamLimitsConfig>();
  for (const t of options.teams) if (t.limits) byTeam.set(t.name, t.limits);
  const queues = new Map<string, TeamQueue>();

  return async function limitsStage(ctx, next) {
    const tl = byTeam.get(ctx.team.name);
    if (!tl) return next(ctx);

    const limits = limitsFor(keys, ctx, tl);
    const estimate = estimateTokens(ctx, options.limits);
    for (const l of limits) {
      if (l.dimension === 'tokens' && estimate.total > l.perMinute) {
        throw errors.requestTooLarge({
          message:
            `Request too large for ${l.label}: it may use about ${estimate.total} tokens ` +
            `(prompt about ${estimate.prompt}, up to ${estimate.completion} completion), more than the limit of ` +
            `${l.perMinute} tokens per minute, so it can never be admitted. Lower max_tokens or shorten the prompt.`,
          headers: {},
        });
      }
    }
    const takes: Take[] = limits.map((l) => ({
      bucket: l.bucket,
      cost: l.dimension === 'requests' ? 1 : estimate.total,
    }));
    let queue = queues.get(ctx.team.name);
    if (!queue) queues.set(ctx.team.name, (queue = new TeamQueue()));
    const admitted = await admit(store, takes, limits, tl.maxWaitMs, queue, ctx.signal);
    const headers = rateLimitHeaders(states(limits, admitted));

    const slotKey = keys.teamConcurrency(ctx.team.name);
    if (tl.concurrency !== undefined) {
      const slot = await store.acquire(slotKey, ctx.reqId, tl.concurrency, options.slotLeaseMs);
      if (!slot.acquired) {
        void refund(store, takes, log, ctx.reqId);
        ctx.logFields.limited_by = 'concurrency';
        throw errors.rateLimited({
          dimension: 'requests',
          message: `Concurrency limit reached for team '${ctx.team.name}': ${tl.concurrency} requests are in flight. Please retry when one completes.`,
          retryAfterMs: 1000,
          headers,
        });
      }
    }
    ctx.logFields.reserved_tokens = estimate.total;

    const tokenTakes = takes.filter((_, i) => limits[i]!.dimension === 'tokens');
    let settled = false;
    const settle = (used: number): void => {
      if (settled) return;
      settled = true;
      if (tl.concurrency !== undefined) {
        store
          .release(slotKey, ctx.reqId)
          .catch((err: unknown) => log.warn({ err, reqId: ctx.reqId }, 'slot release failed'));
      }
      const delta = used - estimate.total;
      if (delta === 0 || tokenTakes.length === 0) return;
      store
        .adjust(tokenTakes.map((t) => ({ bucket: t.bucket, cost: delta })))
        .catch((err: unknown) => log.warn({ err, reqId: ctx.reqId }, 'token reconcile failed'));
    };

    return withReconcile(next(ctx), estimate, settle, headers);
  };
}

function perKeyName(keyId: string, dim: string): string {
  return `key:${keyId}:${dim}`;
}

function limitsFor(keys: Keys, ctx: PipelineContext, tl: TeamLimitsConfig): Limit[] {
  const team = ctx.team.name;
  const out: Limit[] = [];
  const add = (r: RateLimitConfig | undefined, prefix: string, label: string): void => {
    if (!r) return;
    if (r.rpm !== undefined) out.push(limit(keys.teamBucket(team, `${prefix}rpm`), 'requests', r.rpm, label));
    if (r.tpm !== undefined) out.push(limit(keys.teamBucket(team, `${prefix}tpm`), 'tokens', r.tpm, label));
  };
  add(tl, '', `team '${team}'`);
  if (tl.perKey) {
    add(
      { rpm: tl.perKey.rpm, tpm: tl.perKey.tpm },
      perKeyName(ctx.keyId, ''),
      `key ${ctx.keyId} of team '${team}'`,
    );
  }
  add(tl.models[ctx.model], `model:${ctx.model}:`, `team '${team}' on model ${ctx.model}`);
  return out;
}

function limit(key: string, dimension: 'requests' | 'tokens', perMinute: number, label: string): Limit {
  return {
    bucket: { key, capacity: perMinute, refillPerSecond: perMinute / 60 },
    dimension,
    perMinute,
    label,
  };
}

function states(limits: Limit[], result: TakeResult): LimitState[] {
  return limits.map((l, i) => ({ dimension: l.dimension, limit: l.perMinute, snapshot: result.buckets[i]! }));
}

/**
 * Takes the reservation, or waits for it in the team's FIFO queue when maxWaitMs allows, or
 * throws the 429. A request never jumps a queue: while others of the team wait, it waits too.
 */
async function admit(
  store: Store,
  takes: Take[],
  limits: Limit[],
  maxWaitMs: number,
  queue: TeamQueue,
  signal: Cancellation,
): Promise<TakeResult> {
  if (takes.length === 0) return { admitted: true, buckets: [], retryAfterMs: 0, limiting: -1 };
  if (queue.size === 0) {
    const first = await store.take(takes);
    if (first.admitted || maxWaitMs <= 0 || first.retryAfterMs > maxWaitMs) {
      if (!first.admitted) throw overLimit(limits, takes, first);
      return first;
    }
  }
  const deadline = Date.now() + maxWaitMs;
  return queue.run(async () => {
    for (;;) {
      const r = await store.take(takes);
      if (r.admitted) return r;
      if (Date.now() + r.retryAfterMs > deadline) throw overLimit(limits, takes, r);
      await abortableSleep(r.retryAfterMs, signal);
    }
  });
}

function overLimit(limits: Limit[], takes: Take[], r: TakeResult): GatewayError {
  const l = limits[r.limiting] ?? limits[0]!;
  const snap = r.buckets[r.limiting];
  const unit = l.dimension === 'requests' ? 'requests per min (RPM)' : 'tokens per min (TPM)';
  const remaining = Math.max(0, Math.floor(snap?.remaining ?? 0));
  return errors.rateLimited({
    dimension: l.dimension,
    retryAfterMs: r.retryAfterMs,
    headers: rateLimitHeaders(states(limits, r)),
    message:
      `Rate limit reached for ${l.label} on ${unit}: Limit ${l.perMinute}, Remaining ${remaining}, ` +
      `Requested ${takes[r.limiting]?.cost ?? 1}. Please try again in ${formatDuration(r.retryAfterMs)}.`,
  });
}

async function refund(store: Store, takes: Take[], log: Logger, reqId: string): Promise<void> {
  try {
    await store.adjust(takes.map((t) => ({ bucket: t.bucket, cost: -t.cost })));
  } catch (err) {
    log.warn({ err, reqId }, 'refund failed');
  }
}

/** Runs tasks one after another in arrival order: a team's waiting requests are served FIFO. */
export class TeamQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  get size(): number {
    return this.waiting;
  }

  run<T>(task: () => Promise<T>): Promise<T> {
    this.waiting += 1;
    const result = this.tail.then(task);
    this.tail = result.then(
      () => (this.waiting -= 1),
      () => (this.waiting -= 1),
    );
    return result;
  }
}
