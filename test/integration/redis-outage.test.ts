// Redis dies under load, through the whole gateway: with `open` every request is still served
// (local limits, cache BYPASS) and nothing hangs; with `closed` the answer is 503
// store_unavailable; when Redis is back both return to it by themselves, and the spend of every
// request served meanwhile reaches Redis then: buffered, never lost.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { dayOf } from '../../src/accounting/periods.js';
import { createKeys } from '../../src/stores/keys.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { freePort, startRedisServer, stopAllRedisServers, stopRedisServer } from '../helpers/redis-server.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

interface Result {
  status: number;
  cache: string | null;
  ms: number;
  code?: string;
  /** The answer's usage.total_tokens. */
  tokens?: number;
}

describe('a Redis outage under load', () => {
  let fake: FakeUpstream;
  let port: number;
  let server: ChildProcess;
  const gateways: Record<'open' | 'closed', StartedGateway | undefined> = {
    open: undefined,
    closed: undefined,
  };
  const team = makeTeam('load');
  team.entry = { ...team.entry, limits: { rpm: 1_000_000, tpm: 1_000_000_000 } } as typeof team.entry;

  before(async () => {
    fake = await startFakeUpstream({ recordRequests: false });
    port = await freePort();
    server = await startRedisServer(port);
    for (const policy of ['open', 'closed'] as const) {
      gateways[policy] = await startGateway(
        baseConfig(fake.url, [team], {
          store: {
            type: 'redis',
            redis: {
              url: `redis://127.0.0.1:${port}`,
              keyPrefix: `tg:outage:${policy}:`,
              onUnavailable: policy,
            },
          },
        }),
      );
    }
  });
  after(async () => {
    await gateways.open?.close();
    await gateways.closed?.close();
    await fake.close();
    await stopAllRedisServers();
  });

  const call = async (gw: StartedGateway, i: number): Promise<Result> => {
    const t0 = performance.now();
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
      // temperature 0: cacheable; a few distinct prompts so hits and misses both happen.
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        temperature: 0,
        messages: [{ role: 'user', content: `q${i % 3}` }],
      }),
    });
    const body = (await res.json()) as { error?: { code: string }; usage?: { total_tokens: number } };
    return {
      status: res.status,
      cache: res.headers.get('x-tollgate-cache'),
      ms: performance.now() - t0,
      ...(body.error ? { code: body.error.code } : {}),
      ...(body.usage ? { tokens: body.usage.total_tokens } : {}),
    };
  };

  /** Steady load on both gateways for `ms`: 4 requests every 20 ms. */
  const load = async (ms: number) => {
    const out = { open: [] as Result[], closed: [] as Result[] };
    const end = Date.now() + ms;
    let i = 0;
    while (Date.now() < end) {
      const batch = await Promise.all([
        call(gateways.open!, i),
        call(gateways.open!, i + 1),
        call(gateways.closed!, i),
        call(gateways.closed!, i + 1),
      ]);
      out.open.push(batch[0], batch[1]);
      out.closed.push(batch[2], batch[3]);
      i += 2;
      await sleep(20);
    }
    return out;
  };

  it('keeps serving (open) or answers 503 (closed), never hangs, and recovers by itself', async () => {
    // 1. Redis up: everything succeeds, the cache answers.
    const up = await load(400);
    assert.ok(up.open.every((r) => r.status === 200) && up.closed.every((r) => r.status === 200));
    assert.ok(up.open.some((r) => r.cache === 'HIT'));
    // The spend of those requests reaches this Redis (batches leave within 25 ms), which dies with
    // it: this Redis keeps nothing on disk.
    await sleep(200);

    // 2. Redis dies mid-load.
    await stopRedisServer(server);
    const down = await load(600);
    // open: every request served, the cache bypassed.
    assert.ok(
      down.open.every((r) => r.status === 200),
      JSON.stringify(down.open.filter((r) => r.status !== 200)),
    );
    assert.ok(down.open.every((r) => r.cache === 'BYPASS'));
    // closed: a clear 503, not a hang and not a 500.
    assert.ok(
      down.closed.every((r) => r.status === 503 && r.code === 'store_unavailable'),
      JSON.stringify(down.closed[0]),
    );
    // Nothing waited on Redis: the slowest request stays far below any reconnect loop.
    const slowest = Math.max(...down.open.map((r) => r.ms), ...down.closed.map((r) => r.ms));
    assert.ok(slowest < 500, `slowest request ${slowest.toFixed(0)} ms`);
    await gateways.open!.logs.waitFor((l) => l.msg?.toString().startsWith('Redis unavailable') === true);

    // 3. Redis comes back on the same port: both recover without a restart.
    server = await startRedisServer(port);
    const deadline = Date.now() + 5_000;
    let recovered = false;
    const probes: Result[] = [];
    while (Date.now() < deadline && !recovered) {
      const [o, c] = await Promise.all([call(gateways.open!, 100), call(gateways.closed!, 100)]);
      probes.push(o);
      recovered = o.status === 200 && o.cache !== 'BYPASS' && c.status === 200;
      if (!recovered) await sleep(100);
    }
    assert.ok(recovered, 'did not recover within 5 s');
    const after = await load(300);
    assert.ok(after.open.every((r) => r.status === 200 && r.cache !== 'BYPASS'));
    assert.ok(after.closed.every((r) => r.status === 200));
    await gateways.open!.logs.waitFor(
      (l) => l.msg === 'Redis available again: shared limits and cache restored',
    );

    // 4. No spend lost: the new Redis (empty: nothing persisted) holds exactly the requests and
    //    tokens the open gateway served since the old one died, outage included. A hit costs no
    //    tokens; every answer is counted as a request.
    const served = [...down.open, ...probes, ...after.open].filter((r) => r.status === 200);
    const tokens = served.reduce((n, r) => n + (r.cache === 'HIT' ? 0 : (r.tokens ?? 0)), 0);
    const redis = new Redis(`redis://127.0.0.1:${port}`);
    try {
      const key = createKeys('tg:outage:open:').teamSpend('load', dayOf(Date.now()));
      let counters: Record<string, string> = {};
      const until = Date.now() + 5_000;
      while (Date.now() < until) {
        counters = await redis.hgetall(key);
        if (Number(counters.requests) === served.length) break;
        await sleep(100);
      }
      assert.equal(Number(counters.requests), served.length, 'every request served is counted');
      assert.equal(Number(counters.tokens), tokens, 'and every token');
    } finally {
      redis.disconnect();
    }
  });
});
