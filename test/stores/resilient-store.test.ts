// ResilientStore through real Redis outages, on a redis-server this test starts itself (so it
// can kill it): under a steady load of takes, slots and cache calls, the server is stopped and
// restarted, or paused. No call may hang; 'open' serves limits from local memory and 'closed'
// answers 503, cache calls throw StoreUnavailableError under both; and the store comes back to
// Redis by itself.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { GatewayError } from '../../src/errors.js';
import { createRedisClient } from '../../src/stores/connect.js';
import { createKeys } from '../../src/stores/keys.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { RedisStore, type RedisClient } from '../../src/stores/redis-store.js';
import { FAILURES_TO_DEGRADE, ResilientStore, type StoreState } from '../../src/stores/resilient-store.js';
import { StoreUnavailableError, type Bucket, type TakeResult } from '../../src/stores/store.js';
import type { ChildProcess } from 'node:child_process';
import { freePort, startRedisServer, stopAllRedisServers, stopRedisServer } from '../helpers/redis-server.js';
import { randomKeyPrefix, waitUntilReady } from './store.contract.js';

/** No store call may take longer than this, whatever Redis is doing. */
const CALL_BOUND_MS = 250;
const COMMAND_TIMEOUT_MS = 100;

type Phase = 'up' | 'down' | 'restarting' | 'paused' | 'recovered';

interface Sample {
  store: 'open' | 'closed';
  op: 'take' | 'acquire' | 'release' | 'cacheSet' | 'cacheGet';
  phase: Phase;
  ms: number;
  error?: unknown;
  value?: unknown;
}

interface Subject {
  name: 'open' | 'closed';
  store: ResilientStore;
  client: RedisClient;
  local: MemoryStore;
  states: { state: StoreState; cause?: unknown }[];
}

function makeSubject(name: 'open' | 'closed', url: string): Subject {
  const client = createRedisClient({ url, commandTimeoutMs: COMMAND_TIMEOUT_MS, connectTimeoutMs: 500 });
  const local = new MemoryStore();
  const store = new ResilientStore(new RedisStore(client), {
    policy: name,
    local,
    recheckMs: 200,
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  const states: Subject['states'] = [];
  store.onStateChange((state, cause) => states.push({ state, cause }));
  return { name, store, client, local, states };
}

/** Drives a steady mix of store calls until stop(), timing each one. */
function startLoad(subjects: Subject[], bucket: Bucket, phase: () => Phase) {
  const samples: Sample[] = [];
  let running = true;
  const keys = createKeys(randomKeyPrefix());
  const timed = async (s: Subject, op: Sample['op'], call: () => Promise<unknown>) => {
    const p = phase();
    const t0 = performance.now();
    try {
      const value = await call();
      samples.push({ store: s.name, op, phase: p, ms: performance.now() - t0, value });
    } catch (error) {
      samples.push({ store: s.name, op, phase: p, ms: performance.now() - t0, error });
    }
  };
  const loops = subjects.map(async (s) => {
    for (let i = 0; running; i++) {
      const slot = keys.teamConcurrency('load');
      const entry = keys.cacheEntry('load', `d${i % 10}`);
      await Promise.all([
        timed(s, 'take', () => s.store.take([{ bucket, cost: 1 }])),
        timed(s, 'cacheSet', () => s.store.cacheSet(entry, Buffer.from([0xff, i % 256]), 10_000)),
        timed(s, 'cacheGet', () => s.store.cacheGet(entry)),
        (async () => {
          await timed(s, 'acquire', () => s.store.acquire(slot, `req-${i}`, 1_000, 10_000));
          await timed(s, 'release', () => s.store.release(slot, `req-${i}`));
        })(),
      ]);
      await sleep(5);
    }
  });
  return {
    samples,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<number> {
  const t0 = performance.now();
  while (!(await cond())) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
  return performance.now() - t0;
}

function slowestMs(samples: Sample[]): number {
  return Math.max(...samples.map((s) => s.ms));
}

function assertBounded(samples: Sample[]): void {
  const slowest = samples.reduce((a, b) => (b.ms > a.ms ? b : a));
  assert.ok(
    slowest.ms < CALL_BOUND_MS,
    `slowest call: ${JSON.stringify({ ...slowest, error: String(slowest.error) })}`,
  );
}

function assertDegradedBehaviour(samples: Sample[]): void {
  for (const s of samples) {
    const where = `${s.store} ${s.op} (${s.phase})`;
    if (s.op === 'cacheGet' || s.op === 'cacheSet') {
      assert.ok(s.error instanceof StoreUnavailableError, `${where}: ${String(s.error)}`);
    } else if (s.op === 'release') {
      assert.equal(s.error, undefined, `${where} must not throw`);
    } else if (s.store === 'open') {
      assert.equal(s.error, undefined, `${where}: ${String(s.error)}`);
      if (s.op === 'take') assert.equal((s.value as { admitted: boolean }).admitted, true, where);
    } else {
      assert.ok(s.error instanceof GatewayError, `${where}: ${String(s.error)}`);
      assert.equal(s.error.status, 503);
      assert.equal(s.error.code, 'store_unavailable');
      assert.equal(s.error.retryable, true);
    }
  }
}

describe('ResilientStore through Redis outages', () => {
  let port: number;
  let url: string;
  let server: ChildProcess;
  const subjects: Subject[] = [];

  before(async () => {
    port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    server = await startRedisServer(port);
  });

  after(async () => {
    await Promise.all(subjects.map((s) => s.store.close()));
    // Always, whatever failed: no redis-server of ours outlives the test.
    await stopAllRedisServers();
  });

  it('serves locally (open) or answers 503 (closed) while Redis is down, then recovers by itself', async (t) => {
    const open = makeSubject('open', url);
    const closed = makeSubject('closed', url);
    subjects.push(open, closed);
    await Promise.all([waitUntilReady(open.client), waitUntilReady(closed.client)]);
    const bucket: Bucket = {
      key: createKeys(randomKeyPrefix()).teamBucket('load', 'rpm'),
      capacity: 1_000_000,
      refillPerSecond: 1,
    };
    let phase: Phase = 'up';
    const load = startLoad([open, closed], bucket, () => phase);

    // 1. Redis up: every call goes to Redis and succeeds.
    await sleep(150);
    // 2. Stop the server mid-load; calls in flight must fail fast, not wait for a reply.
    phase = 'restarting';
    await stopRedisServer(server);
    phase = 'down';
    await sleep(400);
    assert.equal(open.store.degraded, true);
    assert.equal(closed.store.degraded, true);
    // 3. Restart on the same port; the clients reconnect in the background.
    phase = 'restarting';
    server = await startRedisServer(port);
    const recoveryMs = await waitFor('recovery', () => !open.store.degraded && !closed.store.degraded, 5_000);
    phase = 'recovered';
    await sleep(150);
    await load.stop();

    const { samples } = load;
    const inPhase = (p: Phase) => samples.filter((s) => s.phase === p);
    assertBounded(samples);
    // 1. Up: no errors at all.
    assert.deepEqual(
      inPhase('up').filter((s) => s.error !== undefined),
      [],
    );
    // 2. Down: the policy's answers, from both stores, for every kind of call.
    const down = inPhase('down');
    for (const store of ['open', 'closed'])
      for (const op of ['take', 'acquire', 'release', 'cacheGet', 'cacheSet'])
        assert.ok(
          down.filter((s) => s.store === store && s.op === op).length >= 5,
          `${store} ${op} while down`,
        );
    assertDegradedBehaviour(down);
    // Open: the takes were charged to the local bucket.
    const [localLevel] = await open.local.adjust([{ bucket, cost: 0 }]);
    assert.ok(localLevel!.remaining < bucket.capacity - 5, `local bucket at ${localLevel!.remaining}`);
    // 3. Recovered: back to Redis, without errors; the restarted (empty) server has the bucket.
    assert.deepEqual(
      inPhase('recovered').filter((s) => s.error !== undefined),
      [],
    );
    const admin = new Redis(url);
    try {
      const tokens = Number(await admin.hget(bucket.key, 'tokens'));
      assert.ok(tokens > 0 && tokens < bucket.capacity, `bucket in Redis: ${tokens}`);
    } finally {
      await admin.quit();
    }
    for (const s of [open, closed]) {
      assert.deepEqual(
        s.states.map((x) => x.state),
        ['degraded', 'ok'],
        `${s.name} transitions`,
      );
      assert.notEqual(s.states[0]!.cause, undefined);
    }
    assert.ok(recoveryMs < 5_000);
    t.diagnostic(
      `recovered ${Math.round(recoveryMs)} ms after the restart; ${samples.length} calls, slowest ${Math.round(slowestMs(samples))} ms`,
    );
  });

  it('keeps spend made while Redis is down, bounded, and writes it when Redis is back', async () => {
    const client = createRedisClient({ url, commandTimeoutMs: COMMAND_TIMEOUT_MS, connectTimeoutMs: 500 });
    const store = new ResilientStore(new RedisStore(client), {
      policy: 'closed',
      recheckMs: 200,
      timeoutMs: COMMAND_TIMEOUT_MS,
      maxPendingIncrements: 30,
    });
    subjects.push({ name: 'closed', store, client, local: new MemoryStore(), states: [] });
    await waitUntilReady(client);
    const keys = createKeys(randomKeyPrefix());
    const day = keys.teamSpend('outage', 'd:2026-11-25');
    const leases = keys.teamBudgetLeases('outage');
    const add = (by: number) => store.settle(leases, [], [{ key: day, field: 'cost', by }], 3_600_000);
    assert.deepEqual(await add(5), [5]);
    await stopRedisServer(server);
    // 30 increments fit the buffer; the 31st is dropped and counted, never silently.
    for (let i = 0; i < 31; i++) assert.deepEqual(await add(1_000 + i), []);
    assert.equal(store.pendingCount, 30);
    assert.equal(store.droppedIncrements, 1);
    server = await startRedisServer(port);
    await waitFor('recovery', () => !store.degraded, 5_000);
    await waitFor('flush', () => store.pendingCount === 0, 5_000);
    const [hash] = await store.readCounters([day]);
    // The restarted server is empty: only what was buffered (not the 5 from before) is there.
    const buffered = Array.from({ length: 30 }, (_, i) => 1_000 + i).reduce((a, b) => a + b, 0);
    assert.deepEqual(hash, { cost: buffered });
  });

  it('bounds every call while Redis stops answering, and probes its way back', async (t) => {
    const open = makeSubject('open', url);
    const closed = makeSubject('closed', url);
    subjects.push(open, closed);
    await Promise.all([waitUntilReady(open.client), waitUntilReady(closed.client)]);
    const bucket: Bucket = {
      key: createKeys(randomKeyPrefix()).teamBucket('pause', 'rpm'),
      capacity: 1_000_000,
      refillPerSecond: 1,
    };
    const admin = new Redis(url);
    let phase: Phase = 'up';
    const load = startLoad([open, closed], bucket, () => phase);
    try {
      await sleep(100);
      // 1. The server holds every other client's commands for 600 ms; the connections stay up,
      //    so only timeouts can tell, and only probes (not a 'ready' event) can bring it back.
      await admin.client('PAUSE', 600, 'ALL');
      phase = 'paused';
      await waitFor('degradation', () => open.store.degraded && closed.store.degraded, 1_000);
      await sleep(300);
      // 2. Pause over: a probe finds Redis answering again.
      phase = 'restarting';
      await waitFor('recovery', () => !open.store.degraded && !closed.store.degraded, 3_000);
      phase = 'recovered';
      await sleep(100);
    } finally {
      await load.stop();
      await admin.quit();
    }
    const { samples } = load;
    assertBounded(samples);
    // Calls that began in the pause met either a timeout or an already degraded store.
    const paused = samples.filter((s) => s.phase === 'paused');
    assert.ok(paused.length > 20, `${paused.length} calls while paused`);
    assertDegradedBehaviour(paused);
    assert.deepEqual(
      samples.filter((s) => s.phase === 'recovered' && s.error !== undefined),
      [],
    );
    for (const s of [open, closed]) {
      assert.deepEqual(
        s.states.map((x) => x.state),
        ['degraded', 'ok'],
        `${s.name} transitions`,
      );
    }
    t.diagnostic(
      `${samples.length} calls, ${paused.length} while paused, slowest ${Math.round(slowestMs(samples))} ms`,
    );
  });
});

describe('ResilientStore under a single failing call', () => {
  it('fails that call alone, and only a run of failures marks Redis unavailable', async () => {
    const { redisUrl } = await import('./store.contract.js');
    const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 100, connectTimeoutMs: 1000 });
    await waitUntilReady(client);
    const states: StoreState[] = [];
    const store = new ResilientStore(new RedisStore(client), { policy: 'open', timeoutMs: 100 });
    store.onStateChange((s) => states.push(s));
    // 1. A key of the wrong type makes the take script fail in Redis (WRONGTYPE), connection up.
    const key = createKeys(randomKeyPrefix()).teamBucket('wrong', 'rpm');
    await client.set(key, 'not a hash');
    const bucket: Bucket = { key, capacity: 10, refillPerSecond: 1 };
    // 2. One failure: served locally, the store stays on Redis for everyone else.
    assert.equal((await store.take([{ bucket, cost: 1 }])).admitted, true);
    assert.equal(store.degraded, false);
    // 3. A run of them: now Redis counts as unavailable.
    await store.take([{ bucket, cost: 1 }]);
    await store.take([{ bucket, cost: 1 }]);
    assert.equal(store.degraded, true);
    assert.deepEqual(states, ['degraded']);
    await client.del(key);
    await store.close();
  });
});

describe('ResilientStore on a busy event loop', () => {
  /** Keeps this thread busy for `ms`, as a saturated gateway's event loop is. */
  const blockFor = (ms: number): void => {
    const until = performance.now() + ms;
    while (performance.now() < until) {
      // spin
    }
  };

  it('does not time out calls Redis answered while the loop was blocked past the deadline', async () => {
    const { redisUrl } = await import('./store.contract.js');
    const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 50, connectTimeoutMs: 1000 });
    await waitUntilReady(client);
    const states: StoreState[] = [];
    const store = new ResilientStore(new RedisStore(client), { policy: 'closed', timeoutMs: 50 });
    store.onStateChange((s) => states.push(s));
    const bucket: Bucket = {
      key: createKeys(randomKeyPrefix()).teamBucket('busy', 'rpm'),
      capacity: 100,
      refillPerSecond: 1,
    };
    try {
      for (let round = 0; round < FAILURES_TO_DEGRADE + 2; round++) {
        // The scripts go out now and Redis answers within a millisecond, but nothing reads the
        // replies until the loop is free again, six deadlines later.
        const calls = [store.take([{ bucket, cost: 1 }]), store.cacheGet(`busy-${round}`)];
        blockFor(300);
        const [take, cached] = await Promise.all(calls);
        assert.equal((take as TakeResult).admitted, true, `round ${round}`);
        assert.equal(cached, undefined);
      }
      assert.equal(store.degraded, false);
      assert.deepEqual(states, []);
    } finally {
      await store.close();
    }
  });

  it('waits out a queue while replies keep arriving: no call fails, Redis is not marked down', async () => {
    const { redisUrl } = await import('./store.contract.js');
    const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 200, connectTimeoutMs: 1000 });
    await waitUntilReady(client);
    // Each cache read holds Redis for about 70 ms (a Lua loop, sized on this machine, warm).
    const slowRead = 'local x = 0; for i = 1, tonumber(ARGV[1]) do x = x + i end; return false';
    await client.eval(slowRead, 0, 1_000);
    const t0 = performance.now();
    await client.eval(slowRead, 0, 3_000_000);
    const loops = Math.round((70 / (performance.now() - t0)) * 3_000_000);
    class SlowRedisStore extends RedisStore {
      override async cacheGet(): Promise<Buffer | undefined> {
        await client.eval(slowRead, 0, loops);
        return undefined;
      }
    }
    // Ten reads 50 ms apart queue behind each other (each arrives while the one before runs, so
    // Redis reads them one at a time and answers each as it finishes): the later ones wait
    // ~100-250 ms, while a reply arrives every ~70 ms all along. A queue, not an outage: every
    // call waits its turn and the store stays on Redis. (The silence rule itself is tested with a
    // fake clock in deadline.test.ts: Redis's own timing is too loose to pin it here.) A loaded
    // machine can still open a reply gap past 200 ms, so the scenario gets five tries, each after
    // Redis has finished the last one's scripts.
    const outcomes: string[] = [];
    try {
      for (let attempt = 0; attempt < 5; attempt++) {
        const states: StoreState[] = [];
        await client.ping(); // queued behind the previous try's scripts: Redis is idle again
        const store = new ResilientStore(new SlowRedisStore(client), { policy: 'closed', timeoutMs: 200 });
        store.onStateChange((s) => states.push(s));
        const calls: Promise<unknown>[] = [];
        for (let i = 0; i < 10; i++) {
          const call = store.cacheGet(`q${i}`);
          call.catch(() => {}); // a failure is counted below, not left unhandled while we sleep
          calls.push(call);
          await sleep(50);
        }
        const failed = (await Promise.allSettled(calls)).filter((o) => o.status === 'rejected').length;
        outcomes.push(`${failed} of 10 failed (${states.join(',') || 'no state change'})`);
        if (failed === 0 && states.length === 0 && !store.degraded) return;
      }
      assert.fail(`a moving queue failed calls: ${outcomes.join('; ')}`);
    } finally {
      client.disconnect();
    }
  });

  it('still marks Redis down when a run of calls times out with no reply at all', async () => {
    const { redisUrl } = await import('./store.contract.js');
    const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 30, connectTimeoutMs: 1000 });
    const admin = createRedisClient({ url: redisUrl(), commandTimeoutMs: 5_000, connectTimeoutMs: 1000 });
    await Promise.all([waitUntilReady(client), waitUntilReady(admin)]);
    const states: StoreState[] = [];
    const store = new ResilientStore(new RedisStore(client), { policy: 'closed', timeoutMs: 30 });
    store.onStateChange((s) => states.push(s));
    try {
      // Another client's script holds the server for 150 ms: nothing on this connection moves.
      const hold = admin.eval(
        'local t = redis.call("TIME"); local s = t[1]*1e6 + t[2]; ' +
          'repeat t = redis.call("TIME") until t[1]*1e6 + t[2] - s > 150000; return 1',
        0,
      );
      await sleep(5);
      const outcomes = await Promise.allSettled(
        Array.from({ length: FAILURES_TO_DEGRADE }, (_, i) => store.cacheGet(`held${i}`)),
      );
      await hold;
      assert.deepEqual(
        outcomes.map((o) => o.status),
        Array.from({ length: FAILURES_TO_DEGRADE }, () => 'rejected'),
      );
      assert.equal(store.degraded, true);
      assert.deepEqual(states, ['degraded']);
    } finally {
      await store.close();
      admin.disconnect();
    }
  });
});
