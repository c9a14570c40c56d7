// Spend goes to the store in batches: one settle call per team per flush window (default 25 ms),
// the increments of every request in it summed per counter. At saturation that is one Redis
// script every 25 ms per team instead of one per request (each ~30 HINCRBYs): at 1,200 misses/s
// the per-request scripts pushed Redis past the command timeout. A request that holds a budget
// reservation also has a call of its own, at once: its reservation must be released by the very
// call that adds the spend its budgets check (so spent + reserved never undercounts), and holding
// a reservation a window longer piles reservations up under fast sequential requests (a team was
// refused at 150 of 400 tokens). That call carries only the counters its budgets check (2-4);
// the rest of its spend (the breakdown per key, model and feature, ~30 counters) joins the batch.
// Threshold checks run on the totals of each written call.
import type { Logger } from 'pino';
import type { Keys } from '../stores/keys.js';
import type { CounterIncrement, SettleAlso, Store } from '../stores/store.js';

export interface SpendWriterOptions {
  retentionMs: number;
  /** How long increments gather before they are written; 0 = at the end of the current turn. */
  flushMs: number;
  /** Each written batch with the totals after it ([] when the store deferred the write). */
  onSettled?: (team: string, increments: readonly CounterIncrement[], totals: readonly number[]) => void;
}

/** One counter: a field of a hash. */
export interface CounterRef {
  key: string;
  field: string;
}

interface Batch {
  /** Hash key -> field -> the summed increment (nested: no joined id string per increment). */
  merged: Map<string, Map<string, CounterIncrement>>;
  leaseIds: string[];
}

export class SpendWriter {
  private batches = new Map<string, Batch>();
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly deps: { store: Store; keys: Keys; log: Logger },
    private readonly options: SpendWriterOptions,
  ) {}

  /** Queues one request's increments (all under `team`'s hash tag) and its reservation's release. */
  add(
    team: string,
    leaseId: string | undefined,
    increments: readonly CounterIncrement[],
    /** With a lease: the counters its budgets check, written with its release. */
    budgetCounters?: readonly CounterRef[],
    /** With a lease: the request's token reconciliation and slot release, in the same call. */
    also?: SettleAlso,
  ): void {
    if (leaseId !== undefined) {
      const mine: CounterIncrement[] = [];
      const rest: CounterIncrement[] = [];
      for (const inc of increments) {
        if (!budgetCounters || budgetCounters.some((c) => c.field === inc.field && c.key === inc.key))
          mine.push(inc);
        else rest.push(inc);
      }
      const own: Batch = { merged: new Map(), leaseIds: [leaseId] };
      merge(own, mine);
      const p = this.write(team, own, also).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
      if (rest.length === 0) return;
      increments = rest;
    }
    let batch = this.batches.get(team);
    if (!batch) this.batches.set(team, (batch = { merged: new Map(), leaseIds: [] }));
    merge(batch, increments);
    this.timer ??=
      this.options.flushMs > 0
        ? setTimeout(() => void this.flush(), this.options.flushMs)
        : setImmediate(() => void this.flush());
  }

  /** Writes everything queued now; resolves when those writes (and any earlier) are done. */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    const batches = this.batches;
    this.batches = new Map();
    for (const [team, batch] of batches) {
      const p = this.write(team, batch).finally(() => this.inFlight.delete(p));
      this.inFlight.add(p);
    }
    await Promise.all([...this.inFlight]);
  }

  private async write(team: string, batch: Batch, also?: SettleAlso): Promise<void> {
    const increments: CounterIncrement[] = [];
    for (const fields of batch.merged.values()) for (const inc of fields.values()) increments.push(inc);
    let totals: number[];
    try {
      totals = await this.deps.store.settle(
        this.deps.keys.teamBudgetLeases(team),
        batch.leaseIds,
        increments,
        this.options.retentionMs,
        also,
      );
    } catch (err) {
      // ResilientStore buffers through outages; reaching here is a store bug: the log keeps the spend.
      this.deps.log.error({ err, team, increments }, 'spend could not be recorded');
      return;
    }
    this.options.onSettled?.(team, increments, totals);
  }
}

/** Adds increments to a batch, one entry per counter. */
function merge(batch: Batch, increments: readonly CounterIncrement[]): void {
  for (const inc of increments) {
    let fields = batch.merged.get(inc.key);
    if (!fields) batch.merged.set(inc.key, (fields = new Map()));
    const m = fields.get(inc.field);
    if (m) m.by += inc.by;
    else fields.set(inc.field, { key: inc.key, field: inc.field, by: inc.by });
  }
}
