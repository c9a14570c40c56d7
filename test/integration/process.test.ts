// The gateway as a process: config errors exit non-zero naming the problem, a zero-config
// start is never an open relay, the key CLI works, and SIGTERM drains in-flight streams
// before exiting 0.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { hashKey } from '../../src/teams/keys.js';
import { readSse } from '../helpers/sse.js';
import { spawnCli } from '../helpers/spawn-gateway.js';
import { baseConfig, makeTeam } from '../helpers/start-gateway.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-test-'));
const writeConfig = (name: string, content: string): string => {
  const file = path.join(dir, name);
  writeFileSync(file, content);
  return file;
};

describe('the tollgate process', () => {
  let fake: FakeUpstream;
  before(async () => {
    fake = await startFakeUpstream();
  });
  after(() => fake.close());

  it('exits 1 on an invalid config, naming the path and the problem', async () => {
    const file = writeConfig(
      'bad.yaml',
      stringify({
        providers: { x: { type: 'openai', baseUrl: 'ftp://nope' } },
        models: { m: { deployments: [{ provider: 'y' }] } },
      }),
    );
    const p = spawnCli(['serve', '--config', file]);
    const { code } = await p.exit;
    assert.equal(code, 1);
    assert.match(p.stderr(), /bad\.yaml/);
    assert.match(p.stderr(), /providers\.x\.baseUrl/);
  });

  it('exits 1 when a referenced environment variable is missing', async () => {
    const file = writeConfig(
      'env.yaml',
      'providers:\n  openai:\n    type: openai\n    apiKey: ${NOT_SET_ANYWHERE}\n',
    );
    const p = spawnCli(['serve', '--config', file]);
    assert.equal((await p.exit).code, 1);
    assert.match(p.stderr(), /providers\.openai\.apiKey: environment variable NOT_SET_ANYWHERE is not set/);
  });

  it('exits 1 for a config file that does not exist', async () => {
    const p = spawnCli(['serve', '--config', path.join(dir, 'missing.yaml')]);
    assert.equal((await p.exit).code, 1);
    assert.match(p.stderr(), /file not found/);
  });

  it('refuses a non-loopback bind when no teams are configured', async () => {
    const p = spawnCli(['serve'], { TOLLGATE_HOST: '0.0.0.0', TOLLGATE_PORT: '0', TOLLGATE_CONFIG: '' });
    assert.equal((await p.exit).code, 1);
    assert.match(p.stderr(), /refusing to listen on 0\.0\.0\.0 with no teams/);
  });

  it('starts with no config file at all, on loopback, with a loud warning, and proxies with the env key', async () => {
    const p = spawnCli(['serve'], {
      TOLLGATE_PORT: '0',
      OPENAI_API_KEY: 'sk-zero-config',
      OPENAI_BASE_URL: fake.url,
    });
    try {
      const address = await p.listening();
      assert.match(address, /^http:\/\/127\.0\.0\.1:/);
      assert.match(p.stdout(), /NO TEAMS CONFIGURED/);
      const res = await fetch(`${address}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'any-model-name', messages: [{ role: 'user', content: 'hi' }] }),
      });
      assert.equal(res.status, 200);
      const seen = fake.requests.at(-1)!;
      assert.equal(seen.headers.authorization, 'Bearer sk-zero-config');
      assert.equal((seen.body as { model: string }).model, 'any-model-name');
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('mints a key with `keys create`: printed once, config lines hold its hash', async () => {
    const p = spawnCli(['keys', 'create', '--team', 'search']);
    assert.equal((await p.exit).code, 0);
    const out = p.stdout();
    const key = /^\s+(tg-[A-Za-z0-9_-]{32})$/m.exec(out)?.[1];
    assert.ok(key, out);
    const sha = /sha256: "([0-9a-f]{64})"/.exec(out)?.[1];
    assert.equal(sha, hashKey(key));
    assert.match(out, /- name: search/);
  });

  it('on SIGTERM turns unready first, finishes 100 in-flight streams, refuses new connections, then exits 0', async () => {
    const team = makeTeam('ops');
    const file = writeConfig(
      'ok.yaml',
      stringify({
        ...baseConfig(fake.url, [team]),
        server: { shutdownTimeoutMs: 10_000, shutdownDelayMs: 600 },
      }),
    );
    const p = spawnCli(['serve', '--config', file], { TOLLGATE_PORT: '0' });
    const address = await p.listening();
    const headers = { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' };
    const ask = (stream: boolean) =>
      fetch(`${address}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({
          model: 'gpt-4o-mini',
          stream,
          messages: [{ role: 'user', content: 'hi' }],
          x_fake: { chunks: 15, chunkDelayMs: 100 },
        }),
      });
    // 1. A hundred streams of ~1.5 s each are in flight.
    const streams = await Promise.all(Array.from({ length: 100 }, () => ask(true)));
    const reading = streams.map((r) => readSse(r.body!));
    // 2. SIGTERM arrives mid-stream.
    const signalledAt = Date.now();
    p.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 150));
    // 3. Unready first: /readyz says 503 while requests are still served (shutdownDelayMs).
    assert.equal((await fetch(`${address}/readyz`, { headers: { connection: 'close' } })).status, 503);
    const during = await ask(false);
    assert.equal(during.status, 200, 'still served while the load balancer notices');
    // 4. After the delay, new connections are refused while the streams drain.
    await new Promise((r) => setTimeout(r, 700));
    await assert.rejects(fetch(`${address}/healthz`, { headers: { connection: 'close' } }));
    // 5. Every stream still completes normally: nothing cut, nothing lost.
    const all = await Promise.all(reading);
    assert.equal(all.length, 100);
    for (const events of all) {
      assert.equal(events.at(-1)?.data, '[DONE]');
      assert.equal(events.filter((e) => e.data.includes('"content"')).length >= 15, true);
    }
    // 6. Then the process exits 0, well within the deadline.
    const { code } = await p.exit;
    assert.equal(code, 0);
    assert.ok(Date.now() - signalledAt < 10_000, `exited ${Date.now() - signalledAt} ms after SIGTERM`);
    assert.match(p.stdout(), /shutting down/);
  });
});
