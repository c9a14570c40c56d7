// Cache: exact-match response cache. Reads ctx.team, ctx.model, ctx.endpoint, ctx.body, ctx.stream
// and the Cache-Control / x-tollgate-cache-ttl headers; adds `x-tollgate-cache` (HIT | MISS |
// BYPASS) to the outcome's headers and logFields.cache (+ cache_saved_tokens on a hit). A hit
// answers without calling next: no upstream, no limits, no cost (an admission started with the
// read, see CacheDeps.admission, is given back). When the store is unavailable
// (or fails at all) the request goes on as a BYPASS: a cache error never fails a request.
// The policy (what is cached, for how long) is spelled out above decide() below.
import type { Logger } from 'pino';
import { ClientAbortedError } from '../../providers/upstream-client.js';
import type { Keys } from '../../stores/keys.js';
import { StoreUnavailableError, type Store } from '../../stores/store.js';
import { StreamAssembler, type ChatCompletion } from '../cache/assemble.js';
import { cacheDigest } from '../cache/cache-key.js';
import { parseStoredCompletion, readStoredUsage, replayChunkData } from '../cache/replay.js';
import type {
  Chunk,
  JsonOutcome,
  Next,
  Outcome,
  PipelineContext,
  Stage,
  StreamOutcome,
  Usage,
} from '../types.js';
import { onAbort, type Cancellation } from '../abort.js';
import type { Admitter } from './limits.js';
import { ChunkPipe } from '../chunk-pipe.js';
import { leaveForSettle } from '../settle-also.js';

export interface CacheOptions {
  /** Seconds to keep an entry for this team and model; undefined = caching off for them. */
  ttlSecondsFor(team: string, model: string): number | undefined;
  /** Entries larger than this (bytes) are not stored. */
  maxEntryBytes: number;
  /** Cache requests whose sampling is random (temperature > 0, or absent = provider default 1). Default false. */
  cacheSampled: boolean;
  /** The cache scope of a team: its own name by default; 'shared' only when configured. */
  scopeFor(team: string): string;
  /** Max seconds a client may ask for with the per-request TTL header. */
  maxTtlSeconds: number;
}

export interface CacheDeps {
  store: Store;
  keys: Keys;
  log: Logger;
  /**
   * The limits stage's admission, started alongside the cache read while most reads miss: the
   * two store calls then leave in one socket write and return in one turn, a round trip less
   * before the upstream call. A hit gives the admission back (limits do not apply to hits).
   */
  admission?: Admitter | undefined;
}

/** Misses above this share (recent reads) make starting the admission with the read worth it. */
const SPECULATE_BELOW_HIT_RATIO = 0.5;
/** Weight of one read in the running hit ratio (about the last 100 reads). */
const HIT_RATIO_ALPHA = 0.01;

export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS';

export const CACHE_HEADER = 'x-tollgate-cache';
export const CACHE_TTL_HEADER = 'x-tollgate-cache-ttl';

/** What this request may do with the cache. */
interface Plan {
  read: boolean;
  /** 0: do not store. */
  ttlMs: number;
}

const COMPLETE_FINISH_REASONS = new Set(['stop', 'tool_calls']);

export function createCacheStage(deps: CacheDeps, options: CacheOptions): Stage {
  const { store, keys, log } = deps;
  /** Single flight: full cache key -> the leader's storable bytes (undefined: nothing to share). */
  const flights = new Map<string, Promise<Buffer | undefined>>();
  /** Running share of reads that hit (this process): decides whether to start admissions early. */
  let hitRatio = 0;
  const counted = (hit: boolean): void => {
    hitRatio += HIT_RATIO_ALPHA * ((hit ? 1 : 0) - hitRatio);
  };

  /**
   * The policy, decided before any hashing so that a bypass costs nothing:
   * - ttlSecondsFor(team, model) undefined (or 0) turns caching off for that pair.
   * - Sampled chat requests are not cached unless `cacheSampled`: temperature > 0, and also no
   *   temperature at all, which means the provider's default of 1. Replaying one random draw to
   *   every later caller would quietly change what those requests ask for. Embeddings are
   *   deterministic, so the rule does not apply to them.
   * - `Cache-Control: no-store`: neither read nor write. `no-cache`: no read, still write; labelled
   *   BYPASS because the cache was not consulted (nginx labels proxy_cache_bypass the same way).
   * - `x-tollgate-cache-ttl: <seconds>` replaces the configured TTL, clamped to maxTtlSeconds; 0
   *   means "do not store this answer" (the read still happens). It cannot turn caching on, and a
   *   value that is not whole seconds is ignored.
   * Only complete successes are stored (every choice finished with stop or tool_calls), after the
   * response and without making the client wait. Identical non-stream requests in flight in this
   * process wait for the first one (single flight) instead of paying twice.
   */
  function decide(ctx: PipelineContext): Plan | undefined {
    const configured = options.ttlSecondsFor(ctx.team.name, ctx.model);
    if (configured === undefined || !(configured > 0)) return undefined;
    let read = true;
    const cc = ctx.headers['cache-control'];
    if (cc !== undefined) {
      for (const d of (Array.isArray(cc) ? cc.join(',') : cc).split(',')) {
        const directive = d.trim().toLowerCase();
        if (directive === 'no-store') return undefined;
        if (directive === 'no-cache') read = false;
      }
    }
    if (ctx.endpoint === 'chat' && !options.cacheSampled && isSampled(ctx.body.temperature)) return undefined;
    let ttlSeconds = configured;
    const asked = requestedTtlSeconds(ctx.headers[CACHE_TTL_HEADER]);
    if (asked !== undefined) ttlSeconds = Math.min(asked, options.maxTtlSeconds);
    const ttlMs = ttlSeconds * 1000;
    if (!read && ttlMs <= 0) return undefined;
    return { read, ttlMs };
  }

  /** Stores an entry: in the request's settle call when it has one (settle-also.ts), else alone. */
  function write(ctx: PipelineContext, key: string, bytes: Buffer, ttlMs: number): void {
    leaveForSettle(ctx, 'cache', { key, value: bytes, ttlMs }, () =>
      store
        .cacheSet(key, bytes, ttlMs)
        .catch((err: unknown) => logStoreError(ctx, err, 'cache write failed')),
    );
  }

  function logStoreError(ctx: PipelineContext, err: unknown, msg: string): void {
    if (err instanceof StoreUnavailableError) log.debug({ reqId: ctx.reqId, err }, msg);
    else log.warn({ reqId: ctx.reqId, err }, msg);
  }

  async function bypass(ctx: PipelineContext, next: Next): Promise<Outcome> {
    ctx.logFields.cache = 'BYPASS';
    return withStatus(await next(ctx), 'BYPASS');
  }

  /** A stored entry as this request's answer; undefined when it cannot be (unreadable entry). */
  function serve(ctx: PipelineContext, bytes: Buffer): Outcome | undefined {
    const headers = { [CACHE_HEADER]: 'HIT' };
    let outcome: Outcome;
    let usage: Usage | undefined;
    if (ctx.stream) {
      const completion = parseStoredCompletion(bytes);
      if (!completion) {
        log.warn({ reqId: ctx.reqId }, 'cache entry is not a chat.completion; treating as a miss');
        return undefined;
      }
      usage = completion.usage;
      outcome = {
        kind: 'stream',
        status: 200,
        headers,
        chunks: replayChunks(completion, ctx.clientWantsUsage),
        usage: Promise.resolve(usage),
      };
    } else {
      usage = readStoredUsage(bytes);
      outcome = { kind: 'json', status: 200, headers, body: bytes, usage };
    }
    // Accounting reads `cache: 'HIT'` to charge nothing; the usage only says what was saved.
    ctx.logFields.cache = 'HIT';
    if (usage) ctx.logFields.cache_saved_tokens = usage.total_tokens;
    return outcome;
  }

  /**
   * Calls next and stores what comes back when it is a complete success. The leader of a single
   * flight hands its storable bytes to the followers (or undefined, and each calls next itself).
   */
  async function miss(
    ctx: PipelineContext,
    next: Next,
    key: string,
    plan: Plan,
    lead: boolean,
  ): Promise<Outcome> {
    const status: CacheStatus = plan.read ? 'MISS' : 'BYPASS';
    ctx.logFields.cache = status;
    let share!: (bytes: Buffer | undefined) => void;
    let flight: Promise<Buffer | undefined> | undefined;
    if (lead) {
      flight = new Promise((resolve) => (share = resolve));
      flights.set(key, flight);
    }
    let shared: Buffer | undefined;
    try {
      const outcome = await next(ctx);
      if (outcome.kind === 'stream') return tapStream(ctx, outcome, key, plan, status);
      const { out, storable } = settleJson(ctx, outcome, status);
      if (storable && plan.ttlMs > 0) write(ctx, key, storable, plan.ttlMs);
      shared = storable;
      return out;
    } finally {
      if (flight) {
        if (flights.get(key) === flight) flights.delete(key);
        share(shared);
      }
    }
  }

  /** Adds the header; returns the bytes to store when the body is a complete success. */
  function settleJson(
    ctx: PipelineContext,
    outcome: JsonOutcome,
    status: CacheStatus,
  ): { out: JsonOutcome; storable: Buffer | undefined } {
    const headers = { ...outcome.headers, [CACHE_HEADER]: status };
    if (outcome.status !== 200) return { out: { ...outcome, headers }, storable: undefined };
    let bytes: Buffer;
    let parsed: unknown;
    if (Buffer.isBuffer(outcome.body)) {
      bytes = outcome.body;
      // The provider parsed these bytes already (for usage): no second parse.
      parsed = outcome.parsed;
    } else {
      // Serialised here once; the reply then sends these bytes instead of serialising again.
      parsed = outcome.body;
      bytes = Buffer.from(JSON.stringify(outcome.body));
    }
    const out: JsonOutcome = { ...outcome, headers, body: bytes };
    if (bytes.length > options.maxEntryBytes) return { out, storable: undefined };
    // An embeddings 200 is whole by construction (no finish reasons): no need to parse megabytes.
    if (ctx.endpoint === 'chat') {
      if (parsed === undefined) {
        try {
          parsed = JSON.parse(bytes.toString('utf8'));
        } catch {
          return { out, storable: undefined };
        }
      }
      if (!isCompleteChat(parsed)) return { out, storable: undefined };
    }
    return { out, storable: bytes };
  }

  /**
   * Passes every chunk on as it arrives and folds it into one chat.completion on the side.
   * Stored only when the iterator ran to its end without throwing (an abandoned or failed
   * stream never is) and usage has settled.
   */
  function tapStream(
    ctx: PipelineContext,
    outcome: StreamOutcome,
    key: string,
    plan: Plan,
    status: CacheStatus,
  ): StreamOutcome {
    const headers = { ...outcome.headers, [CACHE_HEADER]: status };
    if (outcome.status !== 200 || plan.ttlMs <= 0) return { ...outcome, headers };
    const source = outcome.chunks;
    const assembler = new StreamAssembler(options.maxEntryBytes);
    // Taps run once the chunk is handed on (ChunkPipe): the client never waits on our parsing.
    const chunks = ChunkPipe.of(source).tap({
      chunk: (c) => assembler.push(c.data),
      end(completed) {
        if (!completed) return;
        storeAssembled().catch((err: unknown) => log.warn({ reqId: ctx.reqId, err }, 'cache store failed'));
      },
    });
    async function storeAssembled(): Promise<void> {
      if (!assembler.ok) return;
      const usage = await outcome.usage.catch(() => undefined);
      const completion = assembler.finish(usage);
      if (!completion || !isCompleteChat(completion)) return;
      const bytes = Buffer.from(JSON.stringify(completion));
      if (bytes.length > options.maxEntryBytes) return;
      write(ctx, key, bytes, plan.ttlMs);
    }
    return { ...outcome, headers, chunks };
  }

  return async function cacheStage(ctx, next) {
    const plan = decide(ctx);
    if (!plan) return bypass(ctx, next);
    let key: string;
    try {
      key = keys.cacheEntry(options.scopeFor(ctx.team.name), cacheDigest(ctx.endpoint, ctx.body));
    } catch (err) {
      // A body nested deeper than the stack allows: not worth failing the request over.
      log.warn({ reqId: ctx.reqId, err }, 'cache key failed; bypassing the cache');
      return bypass(ctx, next);
    }
    // Only non-stream requests share a flight: a stream's first bytes cannot wait on another request.
    const joinable = plan.read && !ctx.stream;
    if (joinable) {
      const flight = flights.get(key);
      if (flight) return follow(ctx, next, key, plan, flight);
    }
    if (plan.read) {
      // Issued in the same turn as the read: one socket write for both (connect.ts).
      if (deps.admission && hitRatio < SPECULATE_BELOW_HIT_RATIO) deps.admission.start(ctx);
      let stored: Buffer | undefined;
      try {
        stored = await store.cacheGet(key);
      } catch (err) {
        logStoreError(ctx, err, 'cache read failed; bypassing the cache');
        return bypass(ctx, next);
      }
      counted(stored !== undefined);
      if (stored) {
        const hit = serve(ctx, stored);
        if (hit) {
          deps.admission?.cancel(ctx);
          return hit;
        }
      }
      if (joinable) {
        // Another request may have taken the lead while this one read the store.
        const flight = flights.get(key);
        if (flight) return follow(ctx, next, key, plan, flight);
      }
    }
    return miss(ctx, next, key, plan, !ctx.stream && !flights.has(key));
  };

  /** Waits for the leader; its bytes answer this request, else it calls next itself (errors are not shared). */
  async function follow(
    ctx: PipelineContext,
    next: Next,
    key: string,
    plan: Plan,
    flight: Promise<Buffer | undefined>,
  ): Promise<Outcome> {
    const bytes = await untilAborted(flight, ctx.signal).catch((err: unknown) => {
      deps.admission?.cancel(ctx);
      throw err;
    });
    if (bytes) {
      const hit = serve(ctx, bytes);
      if (hit) {
        deps.admission?.cancel(ctx);
        return hit;
      }
    }
    return miss(ctx, next, key, plan, false);
  }
}

function withStatus(outcome: Outcome, status: CacheStatus): Outcome {
  return { ...outcome, headers: { ...outcome.headers, [CACHE_HEADER]: status } };
}

/** Absent or null temperature is the provider default, 1: sampled. */
function isSampled(temperature: unknown): boolean {
  return typeof temperature !== 'number' || temperature > 0;
}

/** Whole seconds from the TTL header; anything else is ignored (the configured TTL applies). */
function requestedTtlSeconds(v: string | string[] | undefined): number | undefined {
  const s = Array.isArray(v) ? v[0] : v;
  if (s === undefined || !/^\s*\d+\s*$/.test(s)) return undefined;
  return Number(s);
}

function isCompleteChat(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const choices = (v as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) return false;
  return choices.every(
    (c: unknown) =>
      typeof c === 'object' &&
      c !== null &&
      COMPLETE_FINISH_REASONS.has((c as { finish_reason?: unknown }).finish_reason as string),
  );
}

async function* replayChunks(completion: ChatCompletion, includeUsage: boolean): AsyncGenerator<Chunk> {
  for (const data of replayChunkData(completion, includeUsage)) yield { data };
}

/** The promise's value, or a ClientAbortedError as soon as the client goes away. */
function untilAborted<T>(p: Promise<T>, signal: Cancellation): Promise<T> {
  if (signal.aborted) return Promise.reject(new ClientAbortedError());
  return new Promise<T>((resolve, reject) => {
    const stop = onAbort(signal, () => reject(new ClientAbortedError()));
    p.then(
      (v) => {
        stop();
        resolve(v);
      },
      (err: unknown) => {
        stop();
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}
