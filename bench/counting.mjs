#!/usr/bin/env node
// Exact counting under load, through the gateway: the p99 of small requests at a fixed rate, while
// 1 MB prompts are counted at the same time. The 1 MB prompts go to a model whose only deployment
// has a 200k-token window: their admission estimate (bytes / 3) is near it, so the context-window
// guard counts them exactly (in the counting worker), finds ~250k tokens and answers 400 without
// an upstream call. Three phases per round, interleaved:
//   idle:      small requests only
//   counted:   small requests + `--big` loops each sending 1 MB prompts back to back (counted)
//   uncounted: the same 1 MB prompts to a model with a 2M window (far from it: not counted, sent to
//              the fake), which isolates what accepting a 1 MB body costs apart from counting
// The gateway is pinned to core 0 (its counting worker with it), everything else to core 1.
//
//   node bench/counting.mjs [--rounds 3] [--rate 200] [--duration 10] [--big 2] [--big-rate 1]
// (build first). --big-rate 0 sends the 1 MB prompts back to back: a stress test of body handling.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { stringify } from 'yaml';
import { positiveInt, runMain } from './lib.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';
const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an ' +
  'they you were her she there been one all we their has would when if so no what up out can more about ' +
  'gateway request token budget window stream cache limit replica provider model answer question simple'
).split(' ');

function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer().listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

function pinned(cpu, args, options) {
  return spawn('taskset', ['-c', String(cpu), process.execPath, ...args], options);
}

/** ~1 MB of varied English words (a fixed seed: every run sends the same text). */
function bigText(bytes) {
  let seed = 7;
  const out = [];
  let n = 0;
  while (n < bytes) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const w = WORDS[seed % WORDS.length];
    out.push(w);
    n += w.length + 1;
  }
  return out.join(' ');
}

async function waitReady(url, child, what) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode})`);
    try {
      const res = await request(url);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} not ready in 30 s`);
}

/** The fixed-rate load generator, as a child process (async: the 1 MB loops run meanwhile). */
function runRate(url, key, rate, duration) {
  const args = ['--url', url, '--key', key, '--rate', String(rate), '--duration', String(duration)];
  const child = pinned(1, [path.join(ROOT, 'bench/load-rate.mjs'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s) => (err += s));
  return new Promise((ok, fail) => {
    child.once('exit', (code) => {
      if (code !== 0) return fail(new Error(`load-rate failed: ${err.slice(-500)}`));
      ok(JSON.parse(out.trim().split('\n').at(-1)));
    });
  });
}

/** `n` loops sending `body` until stop(), each at most `perSecond` a second (0: back to back). */
function startBigLoops(url, key, body, n, perSecond = 0) {
  let running = true;
  const statuses = {};
  const loops = Array.from({ length: n }, async () => {
    while (running) {
      const started = performance.now();
      const res = await request(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body,
        headersTimeout: 60_000,
        bodyTimeout: 60_000,
      });
      await res.body.dump();
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      const wait = perSecond > 0 ? 1000 / perSecond - (performance.now() - started) : 0;
      if (wait > 0 && running) await new Promise((r) => setTimeout(r, wait));
    }
  });
  return {
    async stop() {
      running = false;
      await Promise.all(loops);
      return statuses;
    },
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

runMain(async () => {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      rate: { type: 'string', default: '200' },
      duration: { type: 'string', default: '10' },
      big: { type: 'string', default: '2' },
      'big-rate': { type: 'string', default: '1' },
    },
  });
  const rounds = positiveInt('rounds', values.rounds);
  const rate = positiveInt('rate', values.rate);
  const duration = positiveInt('duration', values.duration);
  const big = positiveInt('big', values.big);
  // Each loop sends at most this many 1 MB prompts a second (0: back to back, a stress test).
  const bigRate = Number(values['big-rate']);
  spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });

  const { mintKey } = await import(path.join(ROOT, 'dist/teams/keys.js'));
  const key = mintKey();
  const fakePort = await freePort();
  const fake = pinned(
    1,
    [path.join(ROOT, 'dist/fake-upstream/main.js'), '--port', String(fakePort), '--host', HOST],
    {
      stdio: 'ignore',
    },
  );
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'tollgate-counting-'));
  const config = path.join(dir, 'tollgate.yaml');
  writeFileSync(
    config,
    stringify({
      server: { host: HOST, port, logLevel: 'info', bodyLimitBytes: 4 * 1024 * 1024 },
      providers: { fake: { type: 'openai', baseUrl: `http://${HOST}:${fakePort}/v1`, apiKey: 'sk-bench' } },
      models: {
        'gpt-4o-mini': { deployments: [{ provider: 'fake' }] },
        'gpt-4o': { deployments: [{ provider: 'fake', contextWindow: 200_000 }] },
        'gpt-4.1': { deployments: [{ provider: 'fake', contextWindow: 2_000_000 }] },
      },
      teams: [{ name: 'bench', keys: [{ id: key.id, sha256: key.sha256 }] }],
    }),
  );
  const gateway = pinned(0, [path.join(ROOT, 'dist/cli.js'), 'serve', '--config', config], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    await new Promise((r) => setTimeout(r, 500));
    await waitReady(`http://${HOST}:${port}/readyz`, gateway, 'tollgate');
    const url = `http://${HOST}:${port}/v1/chat/completions`;
    const text = bigText(1024 * 1024);
    const bigBody = (model) => JSON.stringify({ model, messages: [{ role: 'user', content: text }] });
    // One counted request first: the worker's first big count warms it.
    await startBigLoops(url, key.key, bigBody('gpt-4o'), 1).stop();

    const rows = [];
    for (let round = 1; round <= rounds; round++) {
      const row = { round };
      for (const phase of ['idle', 'counted', 'uncounted']) {
        const loops =
          phase === 'idle'
            ? undefined
            : startBigLoops(url, key.key, bigBody(phase === 'counted' ? 'gpt-4o' : 'gpt-4.1'), big, bigRate);
        const r = await runRate(url, key.key, rate, duration);
        const statuses = loops ? await loops.stop() : {};
        row[phase] = { p50: r.latencyMs.p50, p99: r.latencyMs.p99, errors: r.errors + r.non2xx, statuses };
        process.stderr.write(
          `[round ${round}] ${phase.padEnd(9)} p50 ${fmt(row[phase].p50)} ms  p99 ${fmt(row[phase].p99)} ms  ` +
            `1 MB answers ${JSON.stringify(statuses)}\n`,
        );
      }
      rows.push(row);
    }
    const rise = rows.map((r) => r.counted.p99 - r.idle.p99);
    const own = rows.map((r) => r.counted.p99 - r.uncounted.p99);
    process.stdout.write(
      `\nsmall requests at ${rate} req/s, ${big} loop(s) of 1 MB prompts (${bigRate || 'unthrottled'}/s each), ` +
        `${rounds} round(s) of ${duration} s\n` +
        `p99 idle / counted / uncounted (median): ${fmt(median(rows.map((r) => r.idle.p99)))} / ` +
        `${fmt(median(rows.map((r) => r.counted.p99)))} / ${fmt(median(rows.map((r) => r.uncounted.p99)))} ms\n` +
        `p99 rise while counting, vs idle: ${fmt(median(rise))} ms (rounds ${rise.map(fmt).join(', ')}); ` +
        `goal <= 2 ms: ${median(rise) <= 2 ? 'PASS' : 'FAIL'}\n` +
        `p99 counted - uncounted (the counting's own share): ${fmt(median(own))} ms (rounds ${own.map(fmt).join(', ')})\n`,
    );
  } finally {
    gateway.kill('SIGTERM');
    fake.kill('SIGTERM');
  }
});

function fmt(n) {
  return typeof n === 'number' ? n.toFixed(2) : String(n);
}
