// Limits hold globally: two gateway processes on one Redis admit, between them, exactly what
// the limit allows in a window, not the limit once per process.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { spawnCli, type SpawnedCli } from '../helpers/spawn-gateway.js';
import { baseConfig, makeTeam } from '../helpers/start-gateway.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

describe('two gateway processes sharing one Redis', () => {
  let fake: FakeUpstream;
  const procs: SpawnedCli[] = [];
  const addresses: string[] = [];
  const team = makeTeam('shared');
  team.entry = { ...team.entry, limits: { rpm: 10 } } as typeof team.entry;
  // One request at a time: each replica keeps tickets (admissions made ahead) for the next.
  const steady = makeTeam('steady');
  steady.entry = {
    ...steady.entry,
    limits: { rpm: 20, tpm: 1_000_000, concurrency: 8 },
    budgets: [{ period: 'day', usd: 100 }],
  } as typeof steady.entry;

  before(async () => {
    fake = await startFakeUpstream({ recordRequests: false });
    const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-2p-'));
    const file = path.join(dir, 'tollgate.yaml');
    writeFileSync(
      file,
      stringify(
        baseConfig(fake.url, [team, steady], {
          store: {
            type: 'redis',
            redis: { url: REDIS_URL, keyPrefix: `tg:test:${randomBytes(4).toString('hex')}:` },
          },
        }),
      ),
    );
    for (let i = 0; i < 2; i++) procs.push(spawnCli(['serve', '--config', file], { TOLLGATE_PORT: '0' }));
    for (const p of procs) addresses.push(await p.listening());
  });
  after(async () => {
    for (const p of procs) p.child.kill('SIGKILL');
    await fake.close();
  });

  it('admits exactly the team limit across both processes', async () => {
    // 1. 40 requests at once, alternating between the two processes.
    const statuses = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        fetch(`${addresses[i % 2]}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `q${i}` }] }),
        }).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        }),
      ),
    );
    // 2. 10 per minute refill one request every 6 s: within this burst, exactly 10 got in
    //    (per-process limits would have let 20 through).
    assert.equal(statuses.filter((s) => s === 200).length, 10, JSON.stringify(statuses));
    assert.equal(statuses.filter((s) => s === 429).length, 30);
  });

  it('admits exactly the limit with admission ahead, one request at a time', async () => {
    // Alternating, one after another: each process admits most of its requests with a ticket
    // made after its previous one, and gives tickets back once the limit is near. 20 per
    // minute refill one request every 3 s, more than this takes.
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const r = await fetch(`${addresses[i % 2]}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${steady.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `s${i}` }] }),
      });
      await r.arrayBuffer();
      statuses.push(r.status);
      // Past the request's settle: the ticket for the next one is made.
      await new Promise((done) => setTimeout(done, 20));
    }
    assert.equal(statuses.filter((s) => s === 200).length, 20, JSON.stringify(statuses));
    assert.equal(statuses.filter((s) => s === 429).length, 10);
    const ahead = procs.map((p) => (p.stdout().match(/"admitted_ahead":true/g) ?? []).length);
    assert.ok(
      ahead.every((n) => n > 0),
      `each process admitted requests ahead: ${ahead.join(', ')}`,
    );
  });
});
