// `tollgate serve --workers 2`: two node:cluster workers on one port and one Redis. The limit
// holds in total (not per worker) while both workers serve; /metrics from either worker counts
// every worker's requests; a killed worker is replaced; SIGTERM to the primary drains both and
// exits 0. And more than one worker with the memory store is refused at start.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import { stringify } from 'yaml';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { readSse } from '../helpers/sse.js';
import { spawnCli, type SpawnedCli } from '../helpers/spawn-gateway.js';
import { baseConfig, makeTeam } from '../helpers/start-gateway.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-cluster-'));

interface LogLine {
  msg: string;
  pid: number;
  worker?: number;
  team?: string;
  path?: string;
  status?: number;
  stream?: boolean;
}

/** Every JSON line the process (the primary, relaying its workers) has written so far. */
function lines(p: SpawnedCli): LogLine[] {
  return p
    .stdout()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Starting a worker under tsx takes seconds, more on a busy machine: the bound is generous. */
const START_TIMEOUT_MS = 60_000;

async function waitFor<T>(
  what: string,
  p: SpawnedCli,
  probe: () => T | undefined,
  timeoutMs = START_TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${p.stderr()}${p.stdout()}`);
    await sleep(50);
  }
}

/**
 * A GET on a connection of its own (no keep-alive pool), so node:cluster deals it to a worker.
 * Gives up after `timeoutMs`: a connection node:cluster's primary accepts just as the last worker
 * closes its server can be left unanswered (round_robin_handle.js re-queues it with no one left).
 */
function getOnNewConnection(url: string, timeoutMs = 10_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http
      .get(url, { agent: false, timeout: timeoutMs }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject)
      .on('timeout', () => req.destroy(Object.assign(new Error('no answer'), { code: 'TIMEOUT' })));
  });
}

/** The sum of a counter's samples whose labels include all of `labels`. */
function sumOf(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe('tollgate serve --workers 2 on one Redis', () => {
  let fake: FakeUpstream;
  let p: SpawnedCli;
  let address: string;
  const limited = makeTeam('limited');
  limited.entry = { ...limited.entry, limits: { rpm: 10 } } as typeof limited.entry;
  const open = makeTeam('open');
  const chat = (team: typeof open, extra: Record<string, unknown> = {}) =>
    fetch(`${address}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });

  before(async () => {
    fake = await startFakeUpstream({ recordRequests: false });
    const file = path.join(dir, 'redis.yaml');
    writeFileSync(
      file,
      stringify(
        baseConfig(fake.url, [limited, open], {
          server: { shutdownTimeoutMs: 10000 },
          store: {
            type: 'redis',
            redis: { url: REDIS_URL, keyPrefix: `tg:test:${randomBytes(4).toString('hex')}:` },
          },
        }),
      ),
    );
    p = spawnCli(['serve', '--config', file, '--workers', '2'], { TOLLGATE_PORT: '0' });
    address = await p.listening(START_TIMEOUT_MS);
    await waitFor('both workers listening', p, () =>
      lines(p).filter((l) => l.msg === 'tollgate listening').length === 2 ? true : undefined,
    );
  });
  after(async () => {
    // Killing the primary disconnects the workers, which then exit by themselves.
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await fake.close();
  });

  it('admits exactly the team limit in total, while both workers serve', async () => {
    // 1. 40 requests at once, each on a connection of its own (fetch opens one per concurrent
    //    request), which node:cluster deals out to the two workers in turn.
    const statuses = await Promise.all(
      Array.from({ length: 40 }, () =>
        chat(limited).then(async (r) => {
          await r.arrayBuffer();
          return r.status;
        }),
      ),
    );
    // 2. 10 per minute in total: per-worker limits would have let 20 through.
    assert.equal(statuses.filter((s) => s === 200).length, 10, JSON.stringify(statuses));
    assert.equal(statuses.filter((s) => s === 429).length, 30);
    // 3. Both workers answered some of them (each line names its worker).
    const served = await waitFor('40 request lines', p, () => {
      const found = lines(p).filter((l) => l.msg === 'request' && l.team === 'limited');
      return found.length === 40 ? found : undefined;
    });
    assert.deepEqual(
      new Set(served.map((l) => l.worker)).size,
      2,
      JSON.stringify(served.map((l) => l.worker)),
    );
  });

  it('answers /metrics from either worker with the sum over both', async () => {
    // 1. Four scrapes on new connections: round-robin gives each worker some.
    for (let i = 0; i < 4; i++) {
      const { status, body } = await getOnNewConnection(`${address}/metrics`);
      assert.equal(status, 200, body);
      // 2. Each reports all 40 requests: one worker alone holds about half.
      assert.equal(sumOf(body, 'tollgate_requests_total', { team: 'limited', status: '200' }), 10, body);
      assert.equal(sumOf(body, 'tollgate_requests_total', { team: 'limited', status: '429' }), 30);
      assert.equal(sumOf(body, 'tollgate_limit_rejections_total', { team: 'limited', kind: 'requests' }), 30);
    }
    // 3. And the scrapes were indeed answered by both workers.
    const scrapes = await waitFor('4 scrape lines', p, () => {
      const found = lines(p).filter((l) => l.msg === 'request' && l.path === '/metrics');
      return found.length === 4 ? found : undefined;
    });
    assert.equal(new Set(scrapes.map((l) => l.worker)).size, 2);
  });

  it('replaces a worker that is killed', async () => {
    const listening = () => lines(p).filter((l) => l.msg === 'tollgate listening');
    const victim = listening()[0]!;
    // 1. A worker dies without warning.
    process.kill(victim.pid, 'SIGKILL');
    // 2. The primary logs it and starts a replacement, which listens on the same port.
    const exit = await waitFor('the exit line', p, () =>
      lines(p).find((l) => l.msg === 'worker exited unexpectedly: starting a replacement'),
    );
    assert.equal(exit.worker, victim.worker);
    const replacement = await waitFor('a replacement', p, () => listening()[2]);
    assert.notEqual(replacement.pid, victim.pid);
    assert.notEqual(replacement.worker, victim.worker);
    // 3. The gateway serves on.
    const statuses = await Promise.all(Array.from({ length: 6 }, () => chat(open).then((r) => r.status)));
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200]);
  });

  it('on SIGTERM to the primary, every worker finishes its in-flight streams, then it exits 0', async () => {
    // 1. Four streams of ~2 s each are in flight, on four new connections: two per worker.
    const agent = new Agent();
    const responses = await Promise.all(
      [0, 1, 2, 3].map(() =>
        undiciFetch(`${address}/v1/chat/completions`, {
          dispatcher: agent,
          method: 'POST',
          headers: { authorization: `Bearer ${open.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            model: 'gpt-4o-mini',
            stream: true,
            messages: [{ role: 'user', content: 'hi' }],
            x_fake: { chunks: 20, chunkDelayMs: 100 },
          }),
        }),
      ),
    );
    for (const r of responses) assert.equal(r.status, 200);
    const reading = responses.map((r) => readSse(r.body as ReadableStream<Uint8Array>));
    let refused: number | undefined;
    const outcomes: string[] = [];
    const probe = async (): Promise<void> => {
      const until = Date.now() + 5000;
      while (refused === undefined && Date.now() < until) {
        // Only a refused connection counts: one accepted before both workers had closed their
        // servers may be answered, reset or (see getOnNewConnection) left hanging.
        await getOnNewConnection(`${address}/healthz`, 500).then(
          (r) => outcomes.push(String(r.status)),
          (err: NodeJS.ErrnoException) => {
            outcomes.push(err.code ?? err.message);
            if (err.code === 'ECONNREFUSED') refused = Date.now();
          },
        );
        await sleep(20);
      }
    };
    // 2. SIGTERM reaches the primary mid-stream.
    p.child.kill('SIGTERM');
    void probe();
    // 3. New connections are soon refused (once both workers have had the forwarded signal),
    //    while the streams still drain.
    const refusedAt = await waitFor('new connections refused', p, () => refused, 6000).catch((err: Error) =>
      assert.fail(`${err.message.split('\n')[0]}; probes: ${outcomes.join(' ')}`),
    );
    // 4. Every stream still completes normally, after the refusal.
    for (const events of await Promise.all(reading)) {
      assert.equal(events.at(-1)?.data, '[DONE]');
      assert.ok(events.at(-1)!.at > refusedAt, 'the stream was still open when connections were refused');
    }
    // 5. Then the primary exits 0, once both workers have stopped cleanly. (The client closes
    //    its keep-alive connections: a worker, like a single process, otherwise waits for them
    //    until server.shutdownTimeoutMs.)
    await agent.close();
    const { code } = await p.exit;
    assert.equal(code, 0, p.stdout());
    const all = lines(p);
    const streamed = all.filter((l) => l.msg === 'request' && l.stream === true);
    assert.equal(streamed.length, 4);
    assert.equal(new Set(streamed.map((l) => l.worker)).size, 2, 'the streams were spread over both workers');
    assert.equal(all.filter((l) => l.msg === 'shutting down: draining in-flight requests').length, 2);
    assert.equal(all.filter((l) => l.msg === 'worker stopped').length, 2);
    assert.equal(all.filter((l) => l.msg.startsWith('shutdown deadline reached')).length, 0);
  });
});

describe('tollgate serve --workers with the memory store', () => {
  it('refuses more than one worker, saying why, and exits 1', async () => {
    const team = makeTeam('solo');
    const file = path.join(dir, 'memory.yaml');
    writeFileSync(file, stringify(baseConfig('http://127.0.0.1:9', [team], { store: { type: 'memory' } })));
    const p = spawnCli(['serve', '--config', file, '--workers', '2'], { TOLLGATE_PORT: '0' });
    const { code } = await p.exit;
    assert.equal(code, 1);
    assert.match(p.stderr(), /refusing to start 2 workers with the memory store/);
    assert.match(p.stderr(), /per worker, not per gateway/);
    assert.doesNotMatch(p.stdout(), /tollgate listening/);
  });

  it('reads a bare --workers as one per core', { skip: availableParallelism() < 2 }, async () => {
    const team = makeTeam('solo');
    const file = path.join(dir, 'memory-auto.yaml');
    writeFileSync(file, stringify(baseConfig('http://127.0.0.1:9', [team], { store: { type: 'memory' } })));
    const p = spawnCli(['serve', '--workers', '--config', file], { TOLLGATE_PORT: '0' });
    assert.equal((await p.exit).code, 1);
    assert.match(p.stderr(), new RegExp(`refusing to start ${availableParallelism()} workers`));
  });
});
