// Admission ahead: a replica keeps a few admissions made in advance ("tickets") for the shapes
// of request it serves (team, key, model: the same buckets, slot set and budgets), so that a
// request far from every limit is admitted without waiting for the store. On Redis the
// admission script is most of the round trip a miss waits for (the cache read alone is a few µs
// of Redis time); with a ticket the request's only store wait is its cache read.
//
// Exact, not optimistic: a ticket is a real admission, made by the same atomic call, that holds
// what it took (a request, its tokens, a slot, the budgets' reservation) until a request uses
// it or it is given back. Every request served was admitted by the store; a ticket only moves
// the moment of its admission earlier, by at most maxAgeMs, as if the request had arrived then.
// A ticket is kept only while its admission found every limit under `1 - headroom` of use, so
// tickets never hold anything a team near a limit needs: there, every request is admitted on
// its own, as without tickets. A request that needs more than a ticket holds (a bigger prompt
// or max_tokens) is admitted on its own too.
//
// Refills leave after a request settles (in the turn its answer is written), never with a
// request's cache read: Redis answers the commands of one write together, so a refill sent
// with the read would make the read wait for the script.
import type { Admission, AdmissionResult, SlotRequest, Store } from '../../stores/store.js';
import { newHolderId } from '../holder-id.js';

export interface AheadOptions {
  /** Most tickets kept per shape of request; 0 turns admission ahead off. */
  tickets: number;
  /** A ticket unused for this long is given back. */
  maxAgeMs: number;
  /** A ticket is kept only while every limit has at least this share (0-1) left after it. */
  headroom: number;
}

/** What a request needs from a ticket: its token cost and each budget's reservation. */
export interface Need {
  tokens: number;
  amounts: readonly number[];
}

export interface Ticket {
  /** The admission the ticket holds: its own slot and lease ids, its costs. */
  admission: Admission;
  result: AdmissionResult;
  /** What it holds: each token bucket's charge (one cost for all of them) and each reservation. */
  size: Need;
  madeAt: number;
}

/**
 * A shape of request: `key`, short, names it (team, key id, model) for the lookup; `full`
 * (shapeOf) is what its admissions touch, compared before a ticket is used, so a change of period
 * or of limits never hands out a ticket made for other keys. Hashing `full` (hundreds of
 * characters, built anew per request) for every lookup cost ~1% of the CPU at saturation.
 */
export interface ShapeRef {
  key: string;
  full: string;
}

interface Shape {
  full: string;
  /** Oldest first: used in the order made, so none waits out its age while newer ones are used. */
  tickets: Ticket[];
  /**
   * How many tickets to keep: one more each time a request finds none, one less for each given
   * back unused. One request at a time needs one; a burst of N at once, up to N (the cap).
   */
  target: number;
  /** Refills sent and not yet answered. */
  pending: number;
  /** The biggest need seen in this window and the last: tickets are made to fit it. */
  high: Need;
  lastHigh: Need;
  /** Until then no ticket is made: the last one found a limit within the headroom. */
  quietUntil: number;
}

export interface AheadDeps {
  store: Store;
  /** Gives back what an admission took (its tokens and request, slot and reservation). */
  giveBack(admission: Admission): Promise<void>;
  now?: () => number;
}

export class AdmissionsAhead {
  private readonly shapes = new Map<string, Shape>();
  private readonly sweep: NodeJS.Timeout;
  private readonly now: () => number;
  private closed = false;
  /** Counts, for metrics and tests. */
  readonly counts = { used: 0, made: 0, expired: 0, declined: 0 };

  constructor(
    private readonly deps: AheadDeps,
    private readonly options: AheadOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.sweep = setInterval(() => this.expire(), Math.max(50, options.maxAgeMs / 2));
    this.sweep.unref();
  }

  /** The shape a request's admission belongs to: the same keys and limits, the same tickets. */
  static shapeOf(a: Admission): string {
    let s = '';
    for (const t of a.takes) s += `${t.bucket.key}/${t.bucket.capacity}/${t.bucket.refillPerSecond}|`;
    if (a.slot) s += `#${a.slot.key}/${a.slot.limit}`;
    if (a.budget) {
      s += `#${a.budget.lease.key}`;
      for (const c of a.budget.checks) s += `|${c.key}/${c.spentField}/${c.limit}`;
    }
    return s;
  }

  /** A ticket that covers `need`, taken from the shape's pool; undefined when none does. */
  take(shape: ShapeRef, need: Need): Ticket | undefined {
    const pool = this.pool(shape);
    if (!pool) return undefined;
    raise(pool.high, need);
    const oldest = this.now() - this.options.maxAgeMs;
    for (let i = 0; i < pool.tickets.length; i++) {
      const t = pool.tickets[i]!;
      if (t.madeAt < oldest || !covers(t, need)) continue;
      pool.tickets.splice(i, 1);
      this.counts.used += 1;
      return t;
    }
    if (pool.target < this.options.tickets) pool.target += 1;
    return undefined;
  }

  /** A ticket taken for a request that did not need it after all (a cache hit): kept for the next. */
  putBack(shape: ShapeRef, ticket: Ticket): void {
    const pool = this.pool(shape);
    if (this.closed || !pool || pool.tickets.length >= pool.target) void this.deps.giveBack(ticket.admission);
    else pool.tickets.push(ticket);
  }

  /**
   * After a request of this shape settled: tops its pool up by one ticket, sized for the
   * biggest request of the shape seen lately, when the pool is not full and no limit is near.
   */
  refill(shape: ShapeRef, template: Admission, tokenTakes: readonly boolean[], need: Need): void {
    if (this.closed) return;
    let pool = this.shapes.get(shape.key);
    if (pool && pool.full !== shape.full) {
      // The same team, key and model now admit against other keys or limits (a new budget
      // period, a changed limit): the old tickets go back.
      for (const t of pool.tickets) void this.deps.giveBack(t.admission);
      pool = undefined;
    }
    if (!pool) {
      pool = {
        full: shape.full,
        tickets: [],
        target: 1,
        pending: 0,
        high: copy(need),
        lastHigh: copy(need),
        quietUntil: 0,
      };
      this.shapes.set(shape.key, pool);
    }
    raise(pool.high, need);
    if (pool.tickets.length + pool.pending >= pool.target || this.now() < pool.quietUntil) return;
    const size = bigger(pool.high, pool.lastHigh);
    const admission = ticketAdmission(template, tokenTakes, size);
    pool.pending += 1;
    this.deps.store.admit(admission).then(
      (result) => {
        pool.pending -= 1;
        const near = !result.admitted || !this.roomy(admission, result, size);
        if (near) {
          // A limit is reached or near: no ticket for this shape for a while.
          pool.quietUntil = this.now() + this.options.maxAgeMs;
          this.counts.declined += 1;
        }
        if (!result.admitted) return;
        const replaced = this.shapes.get(shape.key) !== pool;
        if (near || this.closed || replaced || pool.tickets.length >= pool.target) {
          void this.deps.giveBack(admission);
          return;
        }
        this.counts.made += 1;
        pool.tickets.push({
          admission,
          result,
          size,
          madeAt: this.now(),
        });
      },
      () => {
        // The store is down or slow: requests are admitted on their own until it answers again.
        pool.pending -= 1;
        pool.quietUntil = this.now() + this.options.maxAgeMs;
      },
    );
  }

  /** Gives back every ticket (shutdown), resolving once the store has them; no refill is made after. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweep);
    const back: Promise<void>[] = [];
    for (const pool of this.shapes.values()) {
      for (const t of pool.tickets) back.push(this.deps.giveBack(t.admission));
      pool.tickets.length = 0;
    }
    await Promise.all(back);
  }

  /** The pool of `shape`, if it holds tickets for exactly those keys and limits. */
  private pool(shape: ShapeRef): Shape | undefined {
    const pool = this.shapes.get(shape.key);
    return pool && pool.full === shape.full ? pool : undefined;
  }

  /** Gives back tickets past their age; forgets shapes with nothing left to hold. */
  expire(): void {
    const oldest = this.now() - this.options.maxAgeMs;
    for (const [shape, pool] of this.shapes) {
      const keep: Ticket[] = [];
      for (const t of pool.tickets) {
        if (t.madeAt >= oldest) keep.push(t);
        else {
          this.counts.expired += 1;
          if (pool.target > 1) pool.target -= 1;
          void this.deps.giveBack(t.admission);
        }
      }
      pool.tickets = keep;
      pool.lastHigh = pool.high;
      pool.high = { tokens: 0, amounts: pool.high.amounts.map(() => 0) };
      if (keep.length === 0 && pool.pending === 0 && this.now() >= pool.quietUntil) this.shapes.delete(shape);
    }
  }

  /** True when, with the ticket taken, every limit still has the headroom left. */
  private roomy(a: Admission, r: AdmissionResult, size: Need): boolean {
    const share = 1 - this.options.headroom;
    for (let i = 0; i < a.takes.length; i++) {
      const capacity = a.takes[i]!.bucket.capacity;
      const left = r.take.buckets[i]?.remaining ?? 0;
      if (left < capacity * this.options.headroom) return false;
    }
    if (a.slot && r.slot && r.slot.inFlight > a.slot.limit * share) return false;
    if (a.budget && r.budget) {
      for (let i = 0; i < a.budget.checks.length; i++) {
        const used = (r.budget.used[i] ?? 0) + (size.amounts[i] ?? 0);
        if (used > a.budget.checks[i]!.limit * share) return false;
      }
    }
    return true;
  }
}

/**
 * The template's admission with costs `size` and ids of its own (nobody else's slot or lease).
 * `tokenTakes[i]`: the template's take i charges tokens (else one request).
 */
function ticketAdmission(template: Admission, tokenTakes: readonly boolean[], size: Need): Admission {
  const id = newHolderId();
  const takes = template.takes.map((t, i) => ({
    bucket: t.bucket,
    cost: tokenTakes[i] ? size.tokens : t.cost,
  }));
  const slot: SlotRequest | undefined = template.slot && { ...template.slot, id };
  const budget = template.budget && {
    lease: { ...template.budget.lease, id },
    checks: template.budget.checks.map((c, i) => ({ ...c, amount: size.amounts[i] ?? c.amount })),
    ttlMs: template.budget.ttlMs,
  };
  return { takes, slot, budget };
}

function covers(t: Ticket, need: Need): boolean {
  const { size } = t;
  if (size.tokens < need.tokens) return false;
  for (let i = 0; i < need.amounts.length; i++) if ((size.amounts[i] ?? 0) < need.amounts[i]!) return false;
  return true;
}

function raise(high: Need, need: Need): void {
  const h = high as { tokens: number; amounts: number[] };
  if (need.tokens > h.tokens) h.tokens = need.tokens;
  for (let i = 0; i < need.amounts.length; i++)
    if (need.amounts[i]! > (h.amounts[i] ?? 0)) h.amounts[i] = need.amounts[i]!;
}

function bigger(a: Need, b: Need): Need {
  const n = Math.max(a.amounts.length, b.amounts.length);
  const amounts: number[] = [];
  for (let i = 0; i < n; i++) amounts.push(Math.max(a.amounts[i] ?? 0, b.amounts[i] ?? 0));
  return { tokens: Math.max(a.tokens, b.tokens), amounts };
}

function copy(n: Need): Need {
  return { tokens: n.tokens, amounts: [...n.amounts] };
}
