// The admin API through real HTTP: admin-key auth (team keys refused, off without an admin key),
// spend by day from counters written as the accounting stage writes them, team budgets, keys
// created and revoked at runtime taking effect on /v1 at once (and on a second replica after
// its reload), and `tollgate spend` against it. Each replica is a real gateway (buildApp), the
// replicas sharing one MemoryStore.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { runSpendCli } from '../../src/admin/spend-cli.js';
import type { TeamConfig } from '../../src/config/schema.js';
import { MemoryStore } from '../../src/stores/memory-store.js';
import { hashKey, mintKey } from '../../src/teams/keys.js';
import type { LogSink } from '../helpers/log-sink.js';
import { startGateway } from '../helpers/start-gateway.js';
import { captureCli as capture, recordKeys, recordSpend, spend } from '../unit/admin/helpers.js';

const ADMIN_KEY = 'tg-admin-0123456789abcdefghijklmnop';
const keys = recordKeys('tg:');

function team(name: string, over: Partial<TeamConfig> = {}): TeamConfig & { key: string } {
  const k = mintKey();
  return {
    key: k.key,
    name,
    keys: [{ id: k.id, sha256: k.sha256, budgets: [] }],
    models: ['*'],
    tier: undefined,
    limits: undefined,
    cache: { enabled: undefined, ttlSeconds: undefined },
    budgets: [],
    ...over,
  };
}

interface Replica {
  url: string;
  logs: LogSink;
  close(): Promise<void>;
}

/** The config file's shape of a team (what startGateway parses). */
function teamEntry(t: TeamConfig): Record<string, unknown> {
  return {
    name: t.name,
    keys: t.keys.map((k) => ({ id: k.id, sha256: k.sha256 })),
    models: t.models,
    ...(t.limits ? { limits: { rpm: t.limits.rpm, concurrency: t.limits.concurrency } } : {}),
    budgets: t.budgets.map((b) => ({ period: b.period, usd: b.usd, thresholds: b.thresholds })),
  };
}

/** A real gateway (buildApp) on `store`; several replicas may share one store. */
async function startReplica(
  store: MemoryStore,
  teamList: TeamConfig[],
  adminKeySha256: string[],
  keyRefreshMs = 5_000,
): Promise<Replica> {
  const gw = await startGateway(
    {
      providers: { fake: { type: 'openai', baseUrl: 'http://127.0.0.1:9/v1', apiKey: 'sk-unused' } },
      models: { 'gpt-4o-mini': { deployments: [{ provider: 'fake' }] } },
      teams: teamList.map(teamEntry),
      admin: { keySha256: adminKeySha256, keyRefreshMs },
    },
    {},
    { store: { store, keys, ready: async () => true } },
  );
  return { url: gw.url, logs: gw.logs, close: () => gw.close() };
}

async function call(
  base: string,
  path: string,
  key: string | undefined,
  init: { method?: string; body?: unknown } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const headers: Record<string, string> = {};
  if (key !== undefined) headers.authorization = `Bearer ${key}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${base}${path}`, {
    method: init.method ?? 'GET',
    headers,
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  return { status: res.status, body: await res.json(), headers: res.headers };
}

describe('admin API', () => {
  const search = team('search', {
    limits: { rpm: 60, tpm: undefined, concurrency: 4, maxWaitMs: 0, perKey: undefined, models: {} },
    budgets: [{ period: 'month', usd: 5, tokens: undefined, thresholds: [80] }],
  });
  const ops = team('ops');
  const store = new MemoryStore();
  let a: Replica;
  let b: Replica;
  const today = new Date().toISOString().slice(0, 10);

  before(async () => {
    const adminHashes = [hashKey(ADMIN_KEY)];
    a = await startReplica(store, [search, ops], adminHashes);
    // A second replica on the same store, reloading often.
    b = await startReplica(store, [search, ops], adminHashes, 50);
    const t = Date.now();
    await recordSpend(
      store,
      keys,
      spend({
        team: 'search',
        keyId: search.keys[0]!.id,
        costMicros: 1_250_000,
        promptTokens: 1000,
        completionTokens: 200,
      }),
      t,
    );
    await recordSpend(
      store,
      keys,
      spend({
        team: 'search',
        keyId: search.keys[0]!.id,
        costMicros: 250_000,
        promptTokens: 10,
        completionTokens: 5,
      }),
      t - 86_400_000,
    );
  });
  after(async () => {
    await a.close();
    await b.close();
    await store.close();
  });

  describe('auth', () => {
    it('refuses a request with no key: 401 in OpenAI shape', async () => {
      const r = await call(a.url, '/admin/teams', undefined);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'invalid_api_key');
      assert.equal(r.body.error.type, 'invalid_request_error');
      assert.ok('param' in r.body.error);
    });

    it('refuses an unknown key with 401 and a team key with 403', async () => {
      assert.equal((await call(a.url, '/admin/teams', 'tg-not-a-key')).status, 401);
      const r = await call(a.url, '/admin/spend?team=search', search.key);
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'permission_denied');
      // The admin key is no team key either.
      assert.equal((await call(a.url, '/v1/models', ADMIN_KEY)).status, 401);
    });

    it('answers the admin key, and logs which admin key acted, never the key', async () => {
      const r = await call(a.url, '/admin/teams', ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.equal(r.body.object, 'list');
      assert.ok(!a.logs.text().includes(ADMIN_KEY));
    });

    it('is off with no admin key configured: every /admin path is the usual 404', async () => {
      const off = await startReplica(new MemoryStore(), [team('x')], []);
      try {
        for (const key of [ADMIN_KEY, undefined]) {
          const r = await call(off.url, '/admin/teams', key);
          assert.equal(r.status, 404);
          assert.equal(r.body.error.code, 'unknown_url');
        }
      } finally {
        await off.close();
      }
    });
  });

  describe('spend', () => {
    it("groups a team's spend by UTC day over the range", async () => {
      const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
      const r = await call(a.url, `/admin/spend?team=search&from=${yesterday}&to=${today}`, ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.deepEqual(
        r.body.days.map((d: any) => [d.date, d.requests, d.prompt_tokens, d.completion_tokens, d.cost_usd]),
        [
          [yesterday, 1, 10, 5, 0.25],
          [today, 1, 1000, 200, 1.25],
        ],
      );
      assert.equal(r.body.total.cost_usd, 1.5);
      assert.equal(r.body.by_key[search.keys[0]!.id].requests, 2);
      assert.equal(r.body.by_model['gpt-4o-mini'].tokens, 1215);
    });

    it('defaults to the last 30 days and sums all teams when none is named', async () => {
      const r = await call(a.url, '/admin/spend', ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.equal(r.body.days.length, 30);
      assert.equal(r.body.to, today);
      assert.equal(r.body.by_team.search.cost_usd, 1.5);
      assert.equal(r.body.by_team.ops.requests, 0);
    });

    it('filters by a key', async () => {
      const r = await call(a.url, `/admin/spend?team=search&key=nobody&from=${today}&to=${today}`, ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.deepEqual(r.body.filter, { key: 'nobody' });
      assert.equal(r.body.total.requests, 0);
    });

    it('refuses bad input with 400 or 404 naming the param', async () => {
      const cases: [string, number, string][] = [
        ['/admin/spend?team=search&from=2026-13-01', 400, 'from'],
        ['/admin/spend?team=search&to=26-01-01', 400, 'to'],
        ['/admin/spend?team=search&from=2024-01-01&to=2025-06-01', 400, 'from'],
        ['/admin/spend?team=nobody', 404, 'team'],
        ['/admin/spend?team=search&key=a&model=b', 400, 'model'],
        ['/admin/spend?team=search&form=2026-01-01', 400, 'form'],
        ['/admin/spend?team=search&team=ops', 400, 'team'],
      ];
      for (const [path, status, param] of cases) {
        const r = await call(a.url, path, ADMIN_KEY);
        assert.equal(r.status, status, path);
        assert.equal(r.body.error.param, param, path);
      }
    });
  });

  describe('teams', () => {
    it("shows a team's limits and its budget with what remains this period", async () => {
      const r = await call(a.url, '/admin/teams/search', ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.equal(r.body.limits.rpm, 60);
      assert.equal(r.body.limits.concurrency, 4);
      const [month] = r.body.budgets;
      assert.equal(month.period, 'month');
      // This month holds today's $1.25 and, unless today is the 1st, yesterday's $0.25.
      const used = new Date().getUTCDate() === 1 ? 1.25 : 1.5;
      assert.deepEqual(month.usd, { limit: 5, used, reserved: 0, remaining: 5 - used });
      assert.ok(Date.parse(month.resets_at) > Date.now());
    });

    it('lists every team, and 404s an unknown one naming the param', async () => {
      const list = await call(a.url, '/admin/teams', ADMIN_KEY);
      assert.deepEqual(
        list.body.data.map((t: any) => t.name),
        ['search', 'ops'],
      );
      const r = await call(a.url, '/admin/teams/nobody', ADMIN_KEY);
      assert.equal(r.status, 404);
      assert.equal(r.body.error.code, 'team_not_found');
      assert.equal(r.body.error.param, 'team');
    });
  });

  describe('keys', () => {
    it('creates a key that works on /v1 at once here, and on the other replica after its reload', async () => {
      const created = await call(a.url, '/admin/teams/ops/keys', ADMIN_KEY, { method: 'POST' });
      assert.equal(created.status, 201);
      assert.equal(created.headers.get('cache-control'), 'no-store');
      assert.match(created.body.key, /^tg-/);
      assert.equal(created.body.stored, true);
      assert.equal((await call(a.url, '/v1/models', created.body.key)).status, 200);
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await call(b.url, '/v1/models', created.body.key)).status;
        if (status !== 200) await sleep(10);
      }
      assert.equal(status, 200);
      assert.ok(!a.logs.text().includes(created.body.key), 'the key is never logged');
      const line = await a.logs.waitFor((l) => l.msg === 'admin: team key created');
      assert.equal(line.keyId, created.body.id);
    });

    it('revokes a runtime key: 401 at once', async () => {
      const created = await call(a.url, '/admin/teams/ops/keys', ADMIN_KEY, {
        method: 'POST',
        body: { id: 'temp-1' },
      });
      assert.equal(created.body.id, 'temp-1');
      assert.equal((await call(a.url, '/v1/models', created.body.key)).status, 200);
      const revoked = await call(a.url, '/admin/teams/ops/keys/temp-1', ADMIN_KEY, { method: 'DELETE' });
      assert.equal(revoked.status, 200);
      assert.equal(revoked.body.revoked, true);
      const r = await call(a.url, '/v1/models', created.body.key);
      assert.equal(r.status, 401);
      assert.equal(r.body.error.code, 'invalid_api_key');
    });

    it('revokes a config key', async () => {
      const victim = team('victim');
      const replica = await startReplica(new MemoryStore(), [victim], [hashKey(ADMIN_KEY)]);
      try {
        assert.equal((await call(replica.url, '/v1/models', victim.key)).status, 200);
        const id = victim.keys[0]!.id;
        assert.equal(
          (await call(replica.url, `/admin/teams/victim/keys/${id}`, ADMIN_KEY, { method: 'DELETE' })).status,
          200,
        );
        assert.equal((await call(replica.url, '/v1/models', victim.key)).status, 401);
        const list = await call(replica.url, '/admin/teams/victim/keys', ADMIN_KEY);
        assert.deepEqual(
          list.body.data.map((k: any) => [k.id, k.source, k.revoked]),
          [[id, 'config', true]],
        );
      } finally {
        await replica.close();
      }
    });

    it('lists key ids, never hashes or keys', async () => {
      const r = await call(a.url, '/admin/teams/search/keys', ADMIN_KEY);
      assert.equal(r.status, 200);
      assert.equal(r.body.data[0].id, search.keys[0]!.id);
      const text = JSON.stringify(r.body);
      assert.ok(!text.includes(search.keys[0]!.sha256));
      assert.ok(!text.includes(search.key));
    });

    it('refuses a taken or malformed id, unknown params, and unknown keys', async () => {
      const taken = await call(a.url, '/admin/teams/search/keys', ADMIN_KEY, {
        method: 'POST',
        body: { id: search.keys[0]!.id },
      });
      assert.equal(taken.status, 409);
      assert.equal(taken.body.error.param, 'id');
      const bad = await call(a.url, '/admin/teams/search/keys', ADMIN_KEY, {
        method: 'POST',
        body: { id: 'a b' },
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.param, 'id');
      const extra = await call(a.url, '/admin/teams/search/keys', ADMIN_KEY, {
        method: 'POST',
        body: { team: 'x' },
      });
      assert.equal(extra.body.error.param, 'team');
      const missing = await call(a.url, '/admin/teams/search/keys/nope', ADMIN_KEY, { method: 'DELETE' });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.error.param, 'id');
    });
  });

  describe('tollgate spend', () => {
    it("prints the team's spend by day and the totals from the running gateway", async () => {
      const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
      const c = capture({ TOLLGATE_ADMIN_KEY: ADMIN_KEY });
      await runSpendCli(['--team', 'search', '--from', yesterday, '--to', today, '--url', a.url], c.io);
      assert.equal(c.out.code, 0, c.out.stderr);
      const lines = c.out.stdout.split('\n');
      assert.match(lines[0]!, new RegExp(`^Spend of team 'search', ${yesterday} to ${today}`));
      assert.match(
        lines.find((l) => l.startsWith(yesterday))!,
        /\s1\s+10\s+5\s+0\.250000\s+0\.000000$/,
      );
      assert.match(
        lines.find((l) => l.startsWith(today))!,
        /\s1\s+1,000\s+200\s+1\.250000\s+0\.000000$/,
      );
      assert.match(
        lines.find((l) => l.startsWith('total'))!,
        /\s2\s+1,010\s+205\s+1\.500000\s+0\.000000$/,
      );
    });

    it('prints the API answer with --json', async () => {
      const c = capture({ TOLLGATE_ADMIN_KEY: ADMIN_KEY });
      await runSpendCli(['--team', 'search', '--from', today, '--to', today, '--url', a.url, '--json'], c.io);
      const body = JSON.parse(c.out.stdout);
      assert.equal(body.total.cost_usd, 1.25);
    });

    it("reports the gateway's error, and a gateway that is not there, with exit code 1", async () => {
      let c = capture({ TOLLGATE_ADMIN_KEY: 'tg-wrong' });
      await runSpendCli(['--team', 'search', '--url', a.url], c.io);
      assert.equal(c.out.code, 1);
      assert.match(c.out.stderr, /401 invalid_api_key/);

      c = capture({ TOLLGATE_ADMIN_KEY: ADMIN_KEY });
      await runSpendCli(['--team', 'search', '--from', '2026-02-30', '--url', a.url], c.io);
      assert.equal(c.out.code, 1);
      assert.match(c.out.stderr, /400 invalid_request: Invalid 'from'/);

      const closed = await startReplica(new MemoryStore(), [team('x')], [hashKey(ADMIN_KEY)]);
      const deadUrl = closed.url;
      await closed.close();
      c = capture({ TOLLGATE_ADMIN_KEY: ADMIN_KEY });
      await runSpendCli(['--team', 'x', '--url', deadUrl], c.io);
      assert.equal(c.out.code, 1);
      assert.match(c.out.stderr, /could not reach the gateway .*ECONNREFUSED/);
    });
  });
});
