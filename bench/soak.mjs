// The soak (issue 7): the built gateway (`node dist/cli.js serve`, every stage on, as the bench's
// tollgate target: Redis store under a random key prefix deleted at the end, the cache, limits and
// budgets far above the load, accounting, one log line per request to a file) against the fake
// upstream for --minutes at a moderate fixed rate, open loop (request i leaves at start + i/rate
// whatever the earlier ones are doing), a share of them streams of several chunks and a share
// repeats a few bodies (cache hits). Every --sample-s seconds it reads the gateway's RSS
// (/proc/PID/status) and its heap (nodejs_heap_size_used_bytes from /metrics, prom-client's
// default metrics). It reports requests, errors by status, p50/p99, and the memory trend: the
// least-squares slope in MB per minute over the second half of the run (the first half is
// warm-up), with the first, last and highest samples.
//
//   npm run build && node bench/soak.mjs [--minutes 10] [--rate 200] [--max-slope 1]   (--help for all)
//
// Exit 0: no error and both slopes (RSS, heap) within --max-slope; 1: otherwise; 2: the soak
// itself failed. Pinning as in bench/run.mjs: the gateway on --target-cpu, this process (the load
// generator and the sampler) and the fake upstream on --load-cpu.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import {
  cacheableChatBody,
  everyStageConfigYaml,
  nonNegativeInt,
  positiveInt,
  ratePool,
  streamBody,
  summarize,
} from './lib.mjs';
import {
  childProcesses,
  coreTicks,
  countLines,
  freePort,
  HOST,
  machine,
  startFake as startFakeUpstream,
  stderrTail,
  stopChild,
  waitHttpOk,
} from './procs.mjs';
import { connectRedis, dropPrefixAndClose } from './state.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** The repeated bodies (cache hits after their first request), per kind. */
const HOT_BODIES = 16;

const USAGE = `usage: node bench/soak.mjs [options]   (build first: npm run build)
  --minutes N           length of the load, warm-up included (default 10; decimals allowed)
  --rate R              requests per second, open loop (default 200)
  --stream-share F      share of the requests that stream (default 0.25)
  --chunks N            content chunks per stream, from the fake upstream (default 10)
  --chunk-delay-ms MS   gap between a stream's chunks (default 20)
  --hit-share F         share of the requests that repeat one of ${HOT_BODIES} bodies per kind: cache hits
                        (default 0.1; the rest are unique bodies, misses)
  --sample-s S          seconds between memory samples (default 5)
  --max-slope MB        highest acceptable slope, RSS and heap, in MB per minute over the second half
                        (default 1)
  --connections C       the load generator's keep-alive sockets (default 256)
  --redis-url URL       the gateway's Redis, on 127.0.0.1 (default redis://127.0.0.1:6379); keys under
                        a random prefix tg:soak:<hex>: deleted at the end
  --target-cpu N        core of the gateway (default 0)
  --load-cpu N          core of this process (load generator, sampler) and the fake upstream (default 1)
  --no-pin              do not use taskset
`;

const opts = (() => {
  try {
    return parseOptions();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }
})();

function parseOptions() {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      rate: { type: 'string', default: '200' },
      'stream-share': { type: 'string', default: '0.25' },
      chunks: { type: 'string', default: '10' },
      'chunk-delay-ms': { type: 'string', default: '20' },
      'hit-share': { type: 'string', default: '0.1' },
      'sample-s': { type: 'string', default: '5' },
      'max-slope': { type: 'string', default: '1' },
      connections: { type: 'string', default: '256' },
      'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
      'target-cpu': { type: 'string', default: '0' },
      'load-cpu': { type: 'string', default: '1' },
      'no-pin': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const share = (name) => {
    const v = Number(values[name]);
    if (!(v >= 0 && v <= 1)) throw new Error(`--${name} must be between 0 and 1, got '${values[name]}'`);
    return v;
  };
  const positive = (name) => {
    const v = Number(values[name]);
    if (!(v > 0)) throw new Error(`--${name} must be a positive number, got '${values[name]}'`);
    return v;
  };
  return {
    minutes: positive('minutes'),
    rate: positiveInt('rate', values.rate),
    streamShare: share('stream-share'),
    chunks: positiveInt('chunks', values.chunks),
    chunkDelayMs: nonNegativeInt('chunk-delay-ms', values['chunk-delay-ms']),
    hitShare: share('hit-share'),
    sampleS: positive('sample-s'),
    maxSlope: positive('max-slope'),
    connections: positiveInt('connections', values.connections),
    redisUrl: values['redis-url'],
    targetCpu: nonNegativeInt('target-cpu', values['target-cpu']),
    loadCpu: nonNegativeInt('load-cpu', values['load-cpu']),
    pin: !values['no-pin'],
  };
}

// ----------------------------------------------------------------------------------------------
// processes (as bench/run.mjs: every child killed on any way out)

const children = childProcesses('the soak');

function spawnNode(cpu, args, options) {
  return children.spawnNode(opts.pin, cpu, args, options);
}

/** The bench's tollgate config (lib.mjs), every stage on, for the soak's team. */
function writeTollgateConfig(path, fakeOrigin, keyHash, redis) {
  const yaml = everyStageConfigYaml({
    fakeOrigin,
    keyHash,
    redis,
    team: 'soak',
    connections: opts.connections + 16,
    shutdownTimeoutMs: 5000,
  });
  writeFileSync(path, yaml);
}

async function startGateway(configPath, logPath) {
  const port = await freePort();
  const origin = `http://${HOST}:${port}`;
  const logFd = openSync(logPath, 'w');
  const env = {
    ...process.env,
    TOLLGATE_HOST: HOST,
    TOLLGATE_PORT: String(port),
    TOLLGATE_LOG_LEVEL: 'info',
  };
  // Nothing from the developer's shell may redirect the gateway or lock its /metrics.
  for (const k of ['OPENAI_API_KEY', 'OPENAI_BASE_URL', 'TOLLGATE_CONFIG', 'TOLLGATE_METRICS_TOKEN'])
    delete env[k];
  const child = spawnNode(opts.targetCpu, [join(ROOT, 'dist/cli.js'), 'serve', '--config', configPath], {
    cwd: ROOT,
    env,
    stdio: ['ignore', logFd, 'pipe'],
  });
  closeSync(logFd);
  const tail = stderrTail(child);
  try {
    await waitHttpOk(`${origin}/healthz`, 30_000, 'tollgate', child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${err.message}\n${tail()}`);
  }
  return { child, origin, pid: child.pid, tail };
}

// ----------------------------------------------------------------------------------------------
// the load: open loop, every answer checked

/** A small seeded PRNG (mulberry32): the same mix of requests on every run. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Why a 200 stream is not acceptable (undefined when it is): role, content chunks, finish, [DONE]. */
function streamProblem(text, hit) {
  const events = text
    .split('\n\n')
    .filter((b) => b.trim() !== '')
    .map((b) =>
      b
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(l[5] === ' ' ? 6 : 5))
        .join('\n'),
    );
  if (events.at(-1) !== '[DONE]') return 'no [DONE]';
  let role = 0;
  let content = 0;
  let finish = 0;
  for (const data of events.slice(0, -1)) {
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return 'an event is not JSON';
    }
    if (ev?.error) return 'error event';
    const choice = ev?.choices?.[0];
    if (!choice) continue; // the usage chunk
    if (choice.finish_reason) finish++;
    else if (choice.delta?.role) role++;
    else if (choice.delta?.content) content++;
  }
  // A hit is replayed from the stored completion: its own number of content chunks.
  const contentOk = hit ? content >= 1 : content === opts.chunks;
  return role === 1 && finish === 1 && contentOk ? undefined : 'incomplete stream';
}

function jsonProblem(text) {
  try {
    const content = JSON.parse(text)?.choices?.[0]?.message?.content;
    return typeof content === 'string' && content.length > 0 ? undefined : 'no message content';
  } catch {
    return 'not JSON';
  }
}

function createLoad(origin, key) {
  const pool = ratePool(origin, opts.connections);
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key}` };
  const runId = randomBytes(8).toString('hex');
  const random = prng(0x5eed);
  const stats = {
    sent: 0,
    answered: 0,
    byStatus: {},
    /** Answers that were not acceptable, by kind: 'status 503', 'error: ...', 'bad stream: ...'. */
    errors: {},
    cache: { HIT: 0, MISS: 0, BYPASS: 0, none: 0 },
    json: [],
    streamFirst: [],
    streamTotal: [],
    /** Per minute of the run: [answers, errors]. */
    perMinute: [],
  };
  let firstError;
  const fail = (what, minute) => {
    stats.errors[what] = (stats.errors[what] ?? 0) + 1;
    firstError ??= what;
    (stats.perMinute[minute] ??= [0, 0])[1]++;
  };

  async function one(i, minute) {
    const stream = random() < opts.streamShare;
    const hot = random() < opts.hitShare;
    const tag = hot ? `hot-${i % HOT_BODIES}`.padEnd(33, '.') : `${runId}-${String(i).padStart(16, '0')}`;
    const body = stream ? streamBody(opts.chunks, opts.chunkDelayMs, { tag }) : cacheableChatBody(tag);
    const t0 = performance.now();
    let res;
    try {
      res = await pool.request({ method: 'POST', path: '/v1/chat/completions', headers, body });
      let first;
      let text = '';
      res.body.setEncoding('utf8');
      for await (const s of res.body) {
        first ??= performance.now();
        text += s;
      }
      const end = performance.now();
      stats.answered++;
      (stats.perMinute[minute] ??= [0, 0])[0]++;
      stats.byStatus[res.statusCode] = (stats.byStatus[res.statusCode] ?? 0) + 1;
      if (res.statusCode !== 200) return fail(`status ${res.statusCode}`, minute);
      const c = res.headers['x-tollgate-cache'];
      stats.cache[c === 'HIT' || c === 'MISS' || c === 'BYPASS' ? c : 'none']++;
      const problem = stream ? streamProblem(text, c === 'HIT') : jsonProblem(text);
      if (problem) return fail(`bad ${stream ? 'stream' : 'body'}: ${problem}`, minute);
      if (stream) {
        stats.streamFirst.push((first ?? end) - t0);
        stats.streamTotal.push(end - t0);
      } else stats.json.push(end - t0);
    } catch (err) {
      fail(`error: ${err instanceof Error ? err.message : String(err)}`, minute);
    }
  }

  /** Sends rate req/s for durationMs, open loop; resolves when all have been sent. */
  async function run(durationMs, onStart) {
    const interval = 1000 / opts.rate;
    const total = Math.round((durationMs / 1000) * opts.rate);
    const inFlight = new Set();
    const sendLag = [];
    const start = performance.now();
    onStart(start);
    let sent = 0;
    await new Promise((done) => {
      function tick() {
        const now = performance.now();
        while (sent < total && start + sent * interval <= now) {
          sendLag.push(now - (start + sent * interval));
          const p = one(sent, Math.floor((sent * interval) / 60_000));
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
          sent++;
        }
        if (sent >= total) return done();
        setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
      }
      tick();
    });
    stats.sent = sent;
    stats.sendingS = (performance.now() - start) / 1000;
    stats.sendLagMs = summarize(sendLag);
    // Bounded wait for the stragglers (the pool's own 10 s timeouts end each of them anyway); any
    // still out then fail when the pool is destroyed, and are counted as errors.
    await Promise.race([Promise.all(inFlight), sleep(15_000)]);
    await pool.destroy();
    await Promise.all(inFlight);
  }

  return { run, stats, firstError: () => firstError };
}

// ----------------------------------------------------------------------------------------------
// memory samples

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function rssMB(pid) {
  try {
    const kb = /^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb === undefined ? undefined : Number(kb) / 1024;
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/** The gateway's own process metrics (prom-client's defaults), from /metrics. */
async function scrape(origin) {
  try {
    const res = await request(`${origin}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 });
    const text = await res.body.text();
    if (res.statusCode !== 200) return {};
    const value = (name) => {
      const m = new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    const mib = (v) => (v === undefined ? undefined : v / 1024 / 1024);
    return {
      heapMB: mib(value('nodejs_heap_size_used_bytes')),
      heapTotalMB: mib(value('nodejs_heap_size_total_bytes')),
      externalMB: mib(value('nodejs_external_memory_bytes')),
      handles: value('nodejs_active_handles_total'),
    };
  } catch {
    return {};
  }
}

function busyPct(a, b, core) {
  const x = a[core];
  const y = b[core];
  return x && y && y.total > x.total ? ((y.busy - x.busy) / (y.total - x.total)) * 100 : null;
}

/**
 * Reads the gateway's memory while the load runs: /metrics every second, and every --sample-s
 * seconds one sample with RSS (/proc) and, for the heap, the lowest nodejs_heap_size_used_bytes
 * of the window. A single scrape mostly says how much garbage waits for the next scavenge (5-15
 * of MB at this rate); the window's low point is close to what the last collection left, so the
 * trend follows what the gateway keeps. Also per sample: the gateway's CPU and how busy its core
 * was (more than the gateway itself: another process ran there).
 */
function createSampler(gw, answered) {
  const samples = [];
  let stopped = false;
  let loop;
  return {
    samples,
    start(loadStart) {
      loop = (async () => {
        let window = [];
        let from = { at: loadStart, cpu: cpuSeconds(gw.pid), cores: coreTicks() };
        const take = (now) => {
          const cores = coreTicks();
          const cpu = cpuSeconds(gw.pid);
          const min = (f) => {
            const v = window.map((w) => w[f]).filter((x) => typeof x === 'number');
            return v.length ? Math.min(...v) : undefined;
          };
          const last = window.at(-1) ?? {};
          const wallS = (now - from.at) / 1000;
          samples.push({
            tMin: (now - loadStart) / 60_000,
            rss: rssMB(gw.pid),
            heapMB: min('heapMB'),
            heapLastMB: last.heapMB,
            heapTotalMB: last.heapTotalMB,
            externalMB: min('externalMB'),
            handles: last.handles,
            answered: answered(),
            gatewayCpuPct:
              cpu !== undefined && from.cpu !== undefined ? ((cpu - from.cpu) / wallS) * 100 : null,
            targetCoreBusyPct: busyPct(from.cores, cores, opts.targetCpu),
          });
          window = [];
          from = { at: now, cpu, cores };
        };
        const sampleMs = opts.sampleS * 1000;
        let next = loadStart + sampleMs;
        window.push(await scrape(gw.origin));
        take(performance.now());
        while (!stopped) {
          await sleep(Math.min(1000, Math.max(0, next - performance.now())));
          if (stopped) break;
          window.push(await scrape(gw.origin));
          const now = performance.now();
          if (now >= next) {
            take(now);
            next += sampleMs;
            if (samples.length % Math.max(1, Math.round(60 / opts.sampleS)) === 1) {
              const s = samples.at(-1);
              process.stderr.write(
                `  ${r1(s.tMin)} min: ${s.answered} answered, RSS ${r1(s.rss)} MB, heap ${r1(s.heapMB)} MB\n`,
              );
            }
          }
        }
      })();
    },
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Least-squares slope of y over t (minutes): MB per minute. */
function slope(points) {
  const pts = points.filter((p) => typeof p.y === 'number');
  if (pts.length < 3) return null;
  const n = pts.length;
  const mt = pts.reduce((s, p) => s + p.t, 0) / n;
  const my = pts.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of pts) {
    num += (p.t - mt) * (p.y - my);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? null : num / den;
}

function trend(samples, field) {
  const ys = samples.map((s) => s[field]).filter((v) => typeof v === 'number');
  const endT = samples.at(-1)?.tMin ?? 0;
  const secondHalf = samples.filter((s) => s.tMin >= endT / 2).map((s) => ({ t: s.tMin, y: s[field] }));
  return {
    first: ys[0] ?? null,
    last: ys.at(-1) ?? null,
    max: ys.length ? Math.max(...ys) : null,
    slopeMBPerMin: slope(secondHalf),
    samplesInSlope: secondHalf.length,
  };
}

// ----------------------------------------------------------------------------------------------
// report

const r1 = (x) => (x === null || x === undefined ? '-' : (Math.round(x * 10) / 10).toString());
const r2 = (x) => (x === null || x === undefined ? '-' : (Math.round(x * 100) / 100).toString());
const printed = [];
function log(line = '') {
  printed.push(line);
  process.stdout.write(`${line}\n`);
}

function report(doc) {
  const { stats, memory, checks } = doc;
  const errorCount = Object.values(stats.errors).reduce((a, b) => a + b, 0);
  log('\n## Soak summary\n');
  log(`| | |`);
  log(`| --- | --- |`);
  log(`| machine | ${doc.machine.nproc} cores, ${doc.machine.cpuModel}, node ${doc.machine.node} |`);
  log(`| command | \`${doc.command}\` |`);
  log(
    `| load | ${opts.rate} req/s open loop for ${r1(opts.minutes)} min, ${Math.round(opts.streamShare * 100)}% streams ` +
      `(${opts.chunks} chunks ${opts.chunkDelayMs} ms apart), ${Math.round(opts.hitShare * 100)}% repeated bodies |`,
  );
  log(
    `| requests | ${stats.sent} sent, ${stats.answered} answered (${r1(stats.sent / stats.sendingS)} req/s sent; ` +
      `send lag p99 ${r1(stats.sendLagMs.p99)} ms) |`,
  );
  log(
    `| status | ${
      Object.entries(stats.byStatus)
        .map(([k, v]) => `${k}: ${v}`)
        .join(', ') || '-'
    } |`,
  );
  log(
    `| errors | ${
      errorCount === 0
        ? '0'
        : Object.entries(stats.errors)
            .map(([k, v]) => `${k}: ${v}`)
            .join('; ')
    } |`,
  );
  log(`| cache | HIT ${stats.cache.HIT}, MISS ${stats.cache.MISS}, BYPASS ${stats.cache.BYPASS} |`);
  const l = doc.latency;
  log(
    `| latency, JSON (to last byte) | p50 ${r2(l.json.p50)} ms, p99 ${r2(l.json.p99)} ms, max ${r1(l.json.max)} ms |`,
  );
  log(
    `| latency, streams | first byte p50 ${r2(l.streamFirst.p50)} ms, p99 ${r2(l.streamFirst.p99)} ms; ` +
      `whole stream p50 ${r1(l.streamTotal.p50)} ms, p99 ${r1(l.streamTotal.p99)} ms |`,
  );
  log(
    `| gateway CPU | ${r1(doc.gatewayCpuPct)}% of a core on average; its core ${r1(doc.targetCoreBusyPct)}% busy ` +
      `(the difference: other processes) |`,
  );
  log(`| gateway log | ${doc.logLines ?? '-'} lines |`);
  log(
    `\nMemory, sampled every ${opts.sampleS} s (heap and external: the lowest of the window's 1 s scrapes); ` +
      'slope: least squares over the second half:\n',
  );
  log('| | first | last | max | slope, 2nd half |');
  log('| --- | --- | --- | --- | --- |');
  const row = (name, t, unit = 'MB') =>
    log(
      `| ${name} | ${r1(t.first)} ${unit} | ${r1(t.last)} ${unit} | ${r1(t.max)} ${unit} | ` +
        `${t.slopeMBPerMin === null ? '-' : `${r2(t.slopeMBPerMin)} ${unit}/min`} |`,
    );
  row('RSS', memory.rss);
  row('heap used (window low)', memory.heap);
  row('heap total', memory.heapTotal);
  row('external (window low)', memory.external);
  row('active handles', memory.handles, '');
  const byMinute = (f) =>
    doc.samples
      .filter((x, i) => i === 0 || Math.floor(x.tMin) > Math.floor(doc.samples[i - 1].tMin))
      .map((x) => r1(x[f]))
      .join(', ');
  log(`\nRSS at each minute (MB): ${byMinute('rss')}`);
  log(`heap (window low) at each minute (MB): ${byMinute('heapMB')}\n`);
  for (const c of checks) log(`- ${c.pass ? 'PASS' : 'FAIL'} ${c.name}: ${c.detail}`);
}

// ----------------------------------------------------------------------------------------------

async function main() {
  for (const f of ['dist/cli.js', 'dist/fake-upstream/main.js']) {
    if (!existsSync(join(ROOT, f))) throw new Error(`${f} is missing: run \`npm run build\``);
  }
  const m = machine();
  if (opts.pin) {
    if (spawnSync('taskset', ['-V']).error)
      throw new Error('taskset (util-linux) not found; --no-pin runs unpinned');
    if (opts.targetCpu === opts.loadCpu) throw new Error('--target-cpu and --load-cpu must differ');
    if (Math.max(opts.targetCpu, opts.loadCpu) >= m.nproc)
      throw new Error(`cores ${opts.targetCpu} and ${opts.loadCpu} are needed, this machine has ${m.nproc}`);
    spawnSync('taskset', ['-a', '-p', '-c', String(opts.loadCpu), String(process.pid)], { stdio: 'ignore' });
  }
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const runDir = join(ROOT, 'bench', 'out', `soak-${stamp}`);
  mkdirSync(runDir, { recursive: true });
  const command = `node bench/soak.mjs ${process.argv.slice(2).join(' ')}`.trimEnd();
  log('# tollgate soak\n');
  log(`date:     ${started.toISOString()}`);
  log(
    `machine:  ${m.nproc} cores, ${m.cpuModel}, ${m.memGB} GB RAM, ${m.kernel}${m.vm ? ' (virtual machine)' : ''}`,
  );
  log(`command:  ${command}`);

  const redis = await connectRedis(opts.redisUrl);
  const prefix = `tg:soak:${randomBytes(6).toString('hex')}:`;
  const key = `tg-${randomBytes(24).toString('base64url')}`;
  let fake;
  let gw;
  let sampler;
  let load;
  let logLines = null;
  let cpu0;
  let cpu1;
  try {
    fake = await startFakeUpstream(spawnNode, opts.loadCpu, ROOT);
    const configPath = join(runDir, 'tollgate.yaml');
    writeTollgateConfig(configPath, fake.origin, createHash('sha256').update(key).digest('hex'), {
      url: opts.redisUrl,
      prefix,
    });
    const logPath = join(runDir, 'tollgate.log');
    gw = await startGateway(configPath, logPath);
    log(`gateway:  ${gw.origin} (pid ${gw.pid}), Redis ${redis.version}, key prefix ${prefix}`);
    log(`logs:     ${logPath.slice(ROOT.length + 1)}\n`);

    load = createLoad(gw.origin, key);
    sampler = createSampler(gw, () => load.stats.answered);
    await load.run(opts.minutes * 60_000, (start) => {
      cpu0 = { cpu: cpuSeconds(gw.pid), cores: coreTicks() };
      sampler.start(start);
    });
    cpu1 = { cpu: cpuSeconds(gw.pid), cores: coreTicks() };
    await sampler.stop();
    if (gw.child.exitCode !== null)
      throw new Error(`the gateway exited (${gw.child.exitCode}) during the soak\n${gw.tail()}`);
    await stopChild(gw.child, 8000);
    logLines = countLines(logPath);
  } finally {
    if (gw) await stopChild(gw.child, 8000);
    if (fake) await stopChild(fake.child);
    await dropPrefixAndClose(redis, prefix, (line) => log(line.trim()));
  }

  const { stats } = load;
  const { samples } = sampler;
  const errorCount = Object.values(stats.errors).reduce((a, b) => a + b, 0);
  const memory = {
    rss: trend(samples, 'rss'),
    heap: trend(samples, 'heapMB'),
    heapTotal: trend(samples, 'heapTotalMB'),
    external: trend(samples, 'externalMB'),
    handles: trend(samples, 'handles'),
  };
  const slopeCheck = (name, t) => ({
    name: `${name} slope over the second half <= ${opts.maxSlope} MB/min`,
    pass: t.slopeMBPerMin !== null && t.slopeMBPerMin <= opts.maxSlope,
    detail: t.slopeMBPerMin === null ? 'not enough samples' : `${r2(t.slopeMBPerMin)} MB/min`,
  });
  const checks = [
    {
      name: 'every request answered with an acceptable 200',
      pass: errorCount === 0 && stats.answered === stats.sent,
      detail: `${stats.sent} sent, ${errorCount} errors${load.firstError() ? ` (first: ${load.firstError()})` : ''}`,
    },
    slopeCheck('RSS', memory.rss),
    slopeCheck('heap used', memory.heap),
  ];
  const doc = {
    date: started.toISOString(),
    machine: m,
    command,
    options: opts,
    stats: { ...stats, json: undefined, streamFirst: undefined, streamTotal: undefined },
    latency: {
      json: summarize(stats.json),
      streamFirst: summarize(stats.streamFirst),
      streamTotal: summarize(stats.streamTotal),
    },
    gatewayCpuPct:
      cpu0.cpu !== undefined && cpu1.cpu !== undefined
        ? ((cpu1.cpu - cpu0.cpu) / stats.sendingS) * 100
        : null,
    targetCoreBusyPct: busyPct(cpu0.cores, cpu1.cores, opts.targetCpu),
    logLines,
    memory,
    samples,
    checks,
  };
  report(doc);
  const file = join(ROOT, 'bench', 'out', `soak-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  log(`\nresults:  ${file.slice(ROOT.length + 1)}`);
  writeFileSync(join(runDir, 'report.md'), `${printed.join('\n')}\n`);
  process.exitCode = checks.every((c) => c.pass) ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(`soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  children.killAll();
  process.exit(2);
});
