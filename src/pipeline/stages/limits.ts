// Limits: RPM and TPM token buckets per team, per key and per team+model, and a per-team
// concurrency cap. Reads ctx.team, ctx.keyId, ctx.model and the body (for the reservation).
// On the way in it reserves 1 request and an estimate of the tokens, the concurrency slot, and
// the budgets' reservation (planned by the budget stage's planner) in ONE atomic store call, one
// Redis round trip (all of a team's keys share a hash tag); over a limit it answers 429 with
// OpenAI's headers, or waits in a FIFO per team when maxWaitMs allows (rate limits only). The
// cache stage may send that call with its own read (Admitter), and gives back what it took on a hit. On the way out (when a stream's
// usage settles) it reconciles the reservation with the real usage: refunds what was not used,
// charges any overage. Store trouble is the store's policy (ResilientStore): local limits or 503.
import { holderId } from '../holder-id.js';
import type { Logger } from 'pino';
import type { LimitsConfig, RateLimitConfig, TeamConfig, TeamLimitsConfig } from '../../config/schema.js';
import { errors, GatewayError } from '../../errors.js';
import type { Keys } from '../../stores/keys.js';
import { abortableSleep } from '../sleep.js';
import type { AdmissionResult, Bucket, SlotRequest, Store, Take, TakeResult } from '../../stores/store.js';
import type { BudgetPlan, BudgetPlanner } from './budget.js';
import { estimateTokens } from '../limits/estimate.js';
import { formatDuration, rateLimitHeaders, type LimitState } from '../limits/headers.js';
import { withReconcile } from '../limits/reconcile.js';
import type { Next, Outcome, PipelineContext, Stage } from '../types.js';
import type { Cancellation } from '../abort.js';
import { leaveForSettle } from '../settle-also.js';
import {
  AdmissionsAhead,
  type AheadOptions,
  type Need,
  type ShapeRef,
  type Ticket,
} from '../limits/ahead.js';
import type { Admission } from '../../stores/store.js';

export interface LimitsDeps {
  store: Store;
  keys: Keys;
  log: Logger;
  /** The budgets to reserve in the same store call, when the pipeline has them. */
  budget?: BudgetPlanner | undefined;
  /**
   * False while the store is away (ResilientStore degraded): tickets are then neither made nor
   * used, so a request gets what the store's policy says (local limits or a 503), as without them.
   */
  storeUp?: (() => boolean) | undefined;
}

export interface LimitsOptions {
  teams: readonly Pick<TeamConfig, 'name' | 'limits'>[];
  limits: LimitsConfig;
  /** How long a concurrency slot is held at most if its release is lost (a crashed replica). */
  slotLeaseMs: number;
  /** Admission ahead (limits/ahead.ts): worth it where admitting costs a round trip (Redis). */
  ahead?: AheadOptions | undefined;
}

/** One limit that applies to a request: its bucket and how to talk about it. */
interface Limit {
  bucket: Bucket;
  dimension: 'requests' | 'tokens';
  perMinute: number;
  /** For messages: "team 'search'", "key k_12ab of team 'search'", ... */
  label: string;
}

/**
 * A request's admission planned (and possibly already sent): what it takes, and the first store
 * call's result. The cache stage may start it before its own read, so that both leave in one
 * socket write and come back in one turn (Admitter).
 */
export interface PreparedAdmission {
  tl: TeamLimitsConfig | undefined;
  limits: Limit[];
  estimate: ReturnType<typeof estimateTokens>;
  admission: Admission;
  budget: BudgetPlan | undefined;
  /** The first admit call, when started ahead; the stage makes it otherwise. */
  first: Promise<AdmissionResult> | undefined;
  /** With admission ahead: the request's shape and what it needs from a ticket. */
  shape: ShapeRef | undefined;
  need: Need | undefined;
  /** The ticket the request was admitted with, if any: `admission` is then the ticket's. */
  ticket: Ticket | undefined;
  /** The request's own admission and holder id, when a ticket stands in for them. */
  own: { admission: Admission; holderId: string | undefined } | undefined;
}

/** Starts a request's admission ahead of the limits stage, or gives back what it took. */
export interface Admitter {
  /** Sends the admission now, when the team has any; the limits stage then uses its answer. */
  start(ctx: PipelineContext): void;
  /** The request ends before the limits stage (a cache hit): returns whatever it was given. */
  cancel(ctx: PipelineContext): void;
}

export function createLimitsStage(deps: LimitsDeps, options: LimitsOptions): Stage {
  return createLimits(deps, options).stage;
}

export interface Limits {
  stage: Stage;
  admitter: Admitter;
  /** Gives back the tickets admission ahead holds (shutdown). */
  close(): Promise<void>;
  /** Admission ahead's counts (made, used, expired, declined), when it is on. */
  aheadCounts: (() => Readonly<Record<string, number>>) | undefined;
}

export function createLimits(deps: LimitsDeps, options: LimitsOptions): Limits {
  const { store, keys, log } = deps;
  const storeUp = deps.storeUp ?? (() => true);
  const ahead =
    options.ahead && options.ahead.tickets > 0
      ? new AdmissionsAhead({ store, giveBack: (a) => giveBack(a, undefined) }, options.ahead)
      : undefined;
  const byTeam = new Map<string, TeamLimitsConfig>();
  for (const t of options.teams) if (t.limits) byTeam.set(t.name, t.limits);
  const queues = new Map<string, TeamQueue>();
  const queueOf = (team: string): TeamQueue => {
    let queue = queues.get(team);
    if (!queue) queues.set(team, (queue = new TeamQueue()));
    return queue;
  };

  /** The plan, or undefined when the team has neither limits nor budgets. Throws for a request that can never fit. */
  function prepare(ctx: PipelineContext): PreparedAdmission | undefined {
    const tl = byTeam.get(ctx.team.name);
    const budget = deps.budget?.(ctx);
    if (!tl && !budget) return undefined;
    const estimate = estimateTokens(ctx, options.limits);
    const limits = tl ? limitsFor(keys, ctx, tl) : [];
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
    const slot: SlotRequest | undefined =
      tl?.concurrency === undefined
        ? undefined
        : {
            key: keys.teamConcurrency(ctx.team.name),
            id: holderId(ctx),
            limit: tl.concurrency,
            leaseMs: options.slotLeaseMs,
          };
    const admission = { takes, slot, budget: budget?.request };
    return {
      tl,
      limits,
      estimate,
      admission,
      budget,
      first: undefined,
      shape: ahead && {
        key: `${ctx.team.name}\u0000${ctx.keyId}\u0000${ctx.model}`,
        full: AdmissionsAhead.shapeOf(admission),
      },
      need: ahead && {
        tokens: limits.some((l) => l.dimension === 'tokens') ? estimate.total : 0,
        amounts: budget ? budget.request.checks.map((c) => c.amount) : [],
      },
      ticket: undefined,
      own: undefined,
    };
  }

  /**
   * Starts the admission: with a ticket that covers it (nothing to wait for), else the store
   * call. Never ahead of requests of the team already waiting: FIFO holds.
   */
  function begin(p: PreparedAdmission, ctx: PipelineContext): void {
    const ticket = ahead && p.shape && p.need && storeUp() ? ahead.take(p.shape, p.need) : undefined;
    if (ticket) {
      p.ticket = ticket;
      p.own = { admission: p.admission, holderId: ctx.holderId };
      p.admission = ticket.admission;
      // The slot and the reservation are the ticket's: the request holds them under its id.
      ctx.holderId = (ticket.admission.slot ?? ticket.admission.budget?.lease)?.id ?? ctx.holderId;
      p.first = Promise.resolve(ticket.result);
      return;
    }
    p.first = store.admit(p.admission);
  }

  /** After an admitted request: the next of its shape may find a ticket. */
  function refill(p: PreparedAdmission): void {
    if (ahead && p.shape && p.need && storeUp()) {
      ahead.refill(
        p.shape,
        p.admission,
        p.limits.map((l) => l.dimension === 'tokens'),
        p.need,
      );
    }
  }

  /**
   * Gives back what an admission took: the tokens and request, the slot, the budget reservation.
   * Resolves when the store has answered; a failure is logged, not thrown.
   */
  async function giveBack(admission: Admission, reqId: string | undefined): Promise<void> {
    const { takes, slot, budget } = admission;
    const warn = (what: string) => (err: unknown) => log.warn({ err, reqId }, `${what} failed`);
    await Promise.all([
      takes.length > 0 &&
        store.adjust(takes.map((t) => ({ bucket: t.bucket, cost: -t.cost }))).catch(warn('refund')),
      slot && store.release(slot.key, slot.id).catch(warn('slot release')),
      budget &&
        store.settle(budget.lease.key, [budget.lease.id], [], budget.ttlMs).catch(warn('budget release')),
    ]);
  }

  const admitter: Admitter = {
    start(ctx) {
      let p: PreparedAdmission | undefined;
      try {
        p = prepare(ctx);
      } catch {
        return; // the stage throws it in its turn
      }
      // Never ahead of requests of the team already waiting: FIFO holds.
      if (!p || (p.tl && p.tl.maxWaitMs > 0 && queueOf(ctx.team.name).size > 0)) return;
      begin(p, ctx);
      p.first!.catch(() => {}); // reported by the stage, or dropped with a cancel
      ctx.admission = p;
    },
    cancel(ctx) {
      const p = ctx.admission;
      ctx.admission = undefined;
      if (p?.ticket && p.shape) {
        ahead!.putBack(p.shape, p.ticket);
        return;
      }
      p?.first?.then(
        (r) => {
          if (r.admitted) void giveBack(p.admission, ctx.reqId);
        },
        () => {},
      );
    },
  };

  async function stage(ctx: PipelineContext, next: Next): Promise<Outcome> {
    let p = ctx.admission;
    ctx.admission = undefined;
    if (!p) {
      p = prepare(ctx);
      if (!p) return next(ctx);
      if (queueOf(ctx.team.name).size === 0) begin(p, ctx);
    } else if (p.ticket && !storeUp()) {
      // The store went away since the ticket was taken (this request's cache read found it
      // down): the request is admitted as the store's policy says, as if it had no ticket. The
      // ticket's leases expire in Redis; it cannot be given back now.
      p.admission = p.own!.admission;
      ctx.holderId = p.own!.holderId;
      p.ticket = undefined;
      p.first = store.admit(p.admission);
    }
    const { tl, limits, estimate, budget } = p;
    const admitted = await admit(store, p, tl?.maxWaitMs ?? 0, queueOf(ctx.team.name), ctx.signal);
    const headers = rateLimitHeaders(states(limits, admitted.take));
    if (!admitted.admitted) {
      if (admitted.refusedBy === 'budget') throw withHeaders(budget!.refuse(admitted.budget!), headers);
      ctx.logFields.limited_by = 'concurrency';
      throw errors.rateLimited({
        dimension: 'requests',
        message: `Concurrency limit reached for team '${ctx.team.name}': ${tl?.concurrency} requests are in flight. Please retry when one completes.`,
        retryAfterMs: 1000,
        headers,
      });
    }
    budget?.admitted();
    if (p.ticket) {
      ctx.logFields.admitted_ahead = true;
      if (budget) ctx.budgetLeaseId = p.admission.budget!.lease.id;
    }
    if (!tl) {
      // Budgets only: the next ticket is made once this request has its answer, as below.
      if (!ahead) return next(ctx);
      const admitted = p;
      return next(ctx).finally(() => refill(admitted));
    }
    // What the buckets were charged: a ticket's cost may be above this request's estimate.
    const charged = p.ticket ? p.ticket.size.tokens : estimate.total;
    ctx.logFields.reserved_tokens = charged;

    const { takes, slot } = p.admission;
    const tokenTakes = takes.filter((_, i) => limits[i]!.dimension === 'tokens');
    let settled = false;
    const settle = (used: number): void => {
      if (settled) return;
      settled = true;
      refill(p);
      const delta = used - charged;
      // Both ride in the request's settle call when it has one (settle-also.ts).
      if (slot) {
        leaveForSettle(ctx, 'release', { key: slot.key, id: slot.id }, () =>
          store
            .release(slot.key, slot.id)
            .catch((err: unknown) => log.warn({ err, reqId: ctx.reqId }, 'slot release failed')),
        );
      }
      if (delta === 0 || tokenTakes.length === 0) return;
      const adjust = tokenTakes.map((t) => ({ bucket: t.bucket, cost: delta }));
      leaveForSettle(ctx, 'adjust', adjust, () =>
        store
          .adjust(adjust)
          .catch((err: unknown) => log.warn({ err, reqId: ctx.reqId }, 'token reconcile failed')),
      );
    };

    return withReconcile(next(ctx), estimate, settle, headers);
  }

  return {
    stage,
    admitter,
    close: async () => ahead?.close(),
    aheadCounts: ahead && (() => ahead.counts),
  };
}

/** Adds the rate-limit headers to a refusal from elsewhere (a budget's), keeping its own. */
function withHeaders(err: GatewayError, headers: Record<string, string>): GatewayError {
  Object.assign(err.headers, { ...headers, ...err.headers });
  return err;
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
 * Admission: the reservation (the first call's answer, when it was started ahead), or a wait for
 * it in the team's FIFO queue when the rate limits refused and maxWaitMs allows, or the rate
 * limits' 429. A budget or concurrency refusal is returned for the caller to report. A request
 * never jumps a queue: while others of the team wait, it waits too.
 */
async function admit(
  store: Store,
  p: PreparedAdmission,
  maxWaitMs: number,
  queue: TeamQueue,
  signal: Cancellation,
): Promise<AdmissionResult> {
  const { admission, limits } = p;
  const { takes } = admission;
  const rateRefused = (r: AdmissionResult) => r.refusedBy === 'rate';
  if (p.first || queue.size === 0) {
    const first = await (p.first ?? store.admit(admission));
    if (!rateRefused(first)) return first;
    if (maxWaitMs <= 0 || first.take.retryAfterMs > maxWaitMs) throw overLimit(limits, takes, first.take);
  }
  const deadline = Date.now() + maxWaitMs;
  return queue.run(async () => {
    for (;;) {
      const r = await store.admit(admission);
      if (!rateRefused(r)) return r;
      if (Date.now() + r.take.retryAfterMs > deadline) throw overLimit(limits, takes, r.take);
      await abortableSleep(r.take.retryAfterMs, signal);
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
