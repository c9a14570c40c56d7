// The benchmark orchestrator (`npm run bench`, which builds first). In one run it drives three
// targets, the fake upstream directly, the bare node:http + undici proxy (bench/bare-proxy.mjs)
// and tollgate, through three phases, and compares tollgate with the bare proxy measured in the
// same run on the same machine:
//   a. saturation: closed-loop autocannon, non-streaming chat (bench/load-saturation.mjs)
//   b. fixed rate: open-loop 500 req/s, non-streaming chat (bench/load-rate.mjs)
//   c. streams: 1,000 concurrent SSE streams, every chunk checked, RSS per open stream (bench/load-streams.mjs)
// The process under test runs alone on one core (taskset); the load generators, the fake upstream
// and this orchestrator share the other, so the proxy is the bottleneck and not the load side.
// Phases a and b run in interleaved rounds (each target back to back, medians reported), c once
// per target on a fresh process.
//
//   node bench/run.mjs [--quick] [--only fake,bare,tollgate] [--streams N] [--profile]   (--help for all)
//
// `--suite state` runs another suite in the same harness instead: the cache and the limits on the
// memory and Redis stores (bench/state.mjs), four tollgate configurations against each other.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { clearInterval, clearTimeout, setInterval, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { chatBody, everyStageConfigYaml, nonNegativeInt, positiveInt, streamBody } from './lib.mjs';
import {
  childProcesses,
  collectGarbage,
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
import { connectRedis, dropPrefixAndClose, STATE_TARGETS } from './state.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = join(ROOT, 'bench');
const ALL_TARGETS = ['fake', 'bare', 'portkey', 'tollgate'];
// The state suite's targets (bench/state.mjs): tollgate configurations.
const SUITES = ['default', 'state'];
const TARGET_LABEL = {
  fake: 'fake direct',
  bare: 'bare proxy',
  portkey: 'portkey',
  tollgate: 'tollgate',
  base: 'tollgate (base)',
};
/** The proxies: every target but the fake upstream itself. */
const PROXIES = ['bare', 'portkey', 'tollgate', 'base'];

// The targets (issue 6), relative to the bare proxy and the peer (Portkey) measured in the same
// run, with every tollgate stage on.
const GOALS = {
  rpsRatio: 0.4,
  peerRatio: 5,
  p50DeltaMs: 0.5,
  p99DeltaMs: 3,
  ttfcP99DeltaMs: 20,
  rssPerStreamKB: 48,
  lagP99Ms: 20,
  lagLoad: 0.8,
};

/** The peer: Portkey's open-source gateway (a dev dependency), started by its own CLI. */
const PORTKEY_BIN = join(ROOT, 'node_modules/@portkey-ai/gateway/build/start-server.js');

const USAGE = `usage: node bench/run.mjs [options]   (or: npm run bench -- [options])
  --suite NAME          default (fake upstream vs bare proxy vs tollgate) or state (cache and limits,
                        memory vs Redis store: see bench/README.md); default: default
  --quick               short phases (1 s warm-up, 3 s saturation, 3 s fixed rate); figures are indicative only
  --only LIST           targets, comma-separated from: ${ALL_TARGETS.join(',')} (default: all)
                        with --suite state: ${STATE_TARGETS.join(',')}
  --duration S          seconds of each measured load phase (default 10, --quick 3)
  --rounds N            interleaved rounds of the saturation and fixed-rate phases (default 3, --quick 1)
  --connections C       autocannon connections for saturation (default 64)
  --rate R              requests per second of the fixed-rate phase (default 500)
  --streams N           concurrent streams in the streams phase (default 2000)
  --chunks N            content chunks per stream (default 20)
  --chunk-delay-ms MS   gap between chunks, set by the fake upstream (default 50)
  --first-chunk-ms MS   the fake's wait before it answers a stream, a model's time to first token
                        (default 1000): the streams are all opened before the first chunks flow
  --open-rate R         streams opened per second, on connections opened before (default 2500)
  --stream-rounds N     rounds of the streams phase, the targets' order alternating (default 3,
                        --quick 1); the report takes the median, the first-chunk verdict the
                        median of the per-round differences
  --target-cpu N        core for the process under test (default 0)
  --load-cpu N          core for the load generators, the fake upstream and this script (default 1)
  --quiet-wait S        before each phase, wait up to S seconds for both cores to be idle (default 60)
  --base-dist DIR       also measure another build of tollgate (its dist/ directory, e.g. of a git
                        worktree at an earlier commit) in the same rounds: before/after figures
                        of one change, side by side (tollgate / base req per CPU-s, per round)
  --profile             run tollgate under --cpu-prof and print its top self-time functions
  --no-pin              do not use taskset (figures are then not comparable with RESULTS.md)
  --redis-url URL       the Redis of tollgate's store (default suite) and of the limits-redis target
                        (--suite state), on 127.0.0.1 (default redis://127.0.0.1:6379); the bench's
                        keys go under a random prefix tg:bench:<hex>: and are deleted at the end
  --retries N           --suite state: measure a phase again, up to N times, when other processes
                        used > 10% of either core (or steal > 5%) while it ran (default 2)
  --phases LIST         default suite: from http,streams (default: both), e.g. --phases streams
                        --only bare,tollgate --profile measures and profiles the streams alone;
                        --suite state: from miss,hit,rate,probe (default: all), e.g. --only cache
                        --phases hit --profile profiles the hit path alone
  --trace-gc            --suite state: run tollgate with --trace-gc and report its GC pauses per phase
  --lead-in S           --suite state: unmeasured seconds at the start of each fixed-rate phase
                        (default 5, --quick 1): a target idle for a minute needs ~3 s to warm again
  --memory-cache-mb N   --suite state: store.memoryCacheMaxBytes of the memory-store targets (default:
                        the gateway's, 64 MB); a diagnostic, figures are then not the defaults'
`;

const opts = (() => {
  try {
    return parseOptions();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }
})();
let tmp;

// ----------------------------------------------------------------------------------------------
// options and machine

function parseOptions() {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      duration: { type: 'string' },
      connections: { type: 'string', default: '64' },
      rate: { type: 'string', default: '500' },
      streams: { type: 'string', default: '2000' },
      chunks: { type: 'string', default: '20' },
      'chunk-delay-ms': { type: 'string', default: '50' },
      'first-chunk-ms': { type: 'string', default: '1000' },
      'open-rate': { type: 'string', default: '2500' },
      'stream-rounds': { type: 'string' },
      'target-cpu': { type: 'string', default: '0' },
      'load-cpu': { type: 'string', default: '1' },
      'quiet-wait': { type: 'string', default: '60' },
      rounds: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'no-pin': { type: 'boolean', default: false },
      suite: { type: 'string', default: 'default' },
      'redis-url': { type: 'string', default: 'redis://127.0.0.1:6379' },
      retries: { type: 'string', default: '2' },
      phases: { type: 'string' },
      'trace-gc': { type: 'boolean', default: false },
      'lead-in': { type: 'string' },
      'memory-cache-mb': { type: 'string' },
      'base-dist': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (!SUITES.includes(values.suite)) throw new Error(`--suite: unknown suite '${values.suite}'`);
  const knownPhases = values.suite === 'state' ? ['miss', 'hit', 'rate', 'probe'] : ['http', 'streams'];
  const phases = values.phases ? values.phases.split(',').map((s) => s.trim()) : knownPhases;
  for (const p of phases) if (!knownPhases.includes(p)) throw new Error(`--phases: unknown phase '${p}'`);
  const known = values.suite === 'state' ? STATE_TARGETS : ALL_TARGETS;
  const only = values.only ? values.only.split(',').map((s) => s.trim()) : known;
  for (const t of only) if (!known.includes(t)) throw new Error(`--only: unknown target '${t}'`);
  const quick = values.quick;
  return {
    suite: values.suite,
    redisUrl: values['redis-url'],
    retries: nonNegativeInt('retries', values.retries),
    phases,
    traceGc: values['trace-gc'],
    memoryCacheMb: values['memory-cache-mb']
      ? positiveInt('memory-cache-mb', values['memory-cache-mb'])
      : null,
    // The fixed-rate phase's unmeasured first seconds (state suite; the default suite keeps 1 s).
    leadIn: values['lead-in'] ? positiveInt('lead-in', values['lead-in']) : quick ? 1 : 5,
    quick,
    // --base-dist adds another build of tollgate, measured in the same interleaved rounds.
    targets: [...known.filter((t) => only.includes(t)), ...(values['base-dist'] ? ['base'] : [])],
    baseDist: values['base-dist'] ? resolve(values['base-dist']) : undefined,
    duration: values.duration ? positiveInt('duration', values.duration) : quick ? 3 : 10,
    warmup: quick ? 1 : 2,
    rounds: values.rounds ? positiveInt('rounds', values.rounds) : quick ? 1 : 3,
    streamRounds: values['stream-rounds']
      ? positiveInt('stream-rounds', values['stream-rounds'])
      : quick
        ? 1
        : 3,
    connections: positiveInt('connections', values.connections),
    rate: positiveInt('rate', values.rate),
    streams: positiveInt('streams', values.streams),
    // 20 chunks 50 ms apart: a stream relays for ~1.05 s after its first chunk. Opened at 2,500/s
    // (0.8 s for 2,000) all of them relay together for ~0.25 s, when the RSS is sampled. The fake
    // waits 1 s before it answers (a model's time to first token), so the opens are over before
    // the chunks flow, as the connections are opened before the phase (load-streams.mjs).
    chunks: positiveInt('chunks', values.chunks),
    chunkDelayMs: positiveInt('chunk-delay-ms', values['chunk-delay-ms']),
    firstChunkMs: nonNegativeInt('first-chunk-ms', values['first-chunk-ms']),
    openRate: positiveInt('open-rate', values['open-rate']),
    targetCpu: nonNegativeInt('target-cpu', values['target-cpu']),
    loadCpu: nonNegativeInt('load-cpu', values['load-cpu']),
    quietWaitS: nonNegativeInt('quiet-wait', values['quiet-wait']),
    profile: values.profile,
    pin: !values['no-pin'],
  };
}

function preflight(m) {
  for (const f of ['dist/cli.js', 'dist/fake-upstream/main.js']) {
    if (!existsSync(join(ROOT, f)))
      throw new Error(`${f} is missing: run \`npm run build\` (npm run bench does)`);
  }
  if (opts.targets.includes('portkey') && !existsSync(PORTKEY_BIN))
    throw new Error('the peer (@portkey-ai/gateway, a dev dependency) is missing: run `npm ci`');
  if (!opts.pin) return;
  if (spawnSync('taskset', ['-V']).error)
    throw new Error('taskset (util-linux) not found; --no-pin runs unpinned');
  if (opts.targetCpu === opts.loadCpu) throw new Error('--target-cpu and --load-cpu must differ');
  if (Math.max(opts.targetCpu, opts.loadCpu) >= m.nproc) {
    throw new Error(`cores ${opts.targetCpu} and ${opts.loadCpu} are needed, this machine has ${m.nproc}`);
  }
  // Keep this script off the target's core too (-a: every thread of this process).
  spawnSync('taskset', ['-a', '-p', '-c', String(opts.loadCpu), String(process.pid)], { stdio: 'ignore' });
}

// ----------------------------------------------------------------------------------------------
// processes: every child is tracked and killed on any way out

const children = childProcesses('the bench', () => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function spawnNode(cpu, args, options) {
  return children.spawnNode(opts.pin, cpu, args, options);
}

/**
 * Pins a running process (every thread) to `cpu`; returns what puts its affinity back, or
 * undefined when it cannot be pinned (not ours to change, no taskset).
 */
function pinProcess(pid, cpu) {
  if (!pid) return undefined;
  const was = spawnSync('taskset', ['-pc', String(pid)], { encoding: 'utf8' });
  const list = /list:\s*(\S+)/.exec(was.stdout ?? '')?.[1];
  if (was.status !== 0 || !list) return undefined;
  if (spawnSync('taskset', ['-a', '-pc', String(cpu), String(pid)]).status !== 0) return undefined;
  return () => void spawnSync('taskset', ['-a', '-pc', list, String(pid)]);
}

/** { url: 'x', rate: 5 } -> ['--url', 'x', '--rate', '5'] */
function flags(o) {
  return Object.entries(o).flatMap(([k, v]) => [`--${k}`, String(v)]);
}

/**
 * Runs one load generator on the load core and resolves with the JSON line it prints. Its stderr
 * lines go to onLine (ALL_OPEN and the MARK lines). Killed if it outlives timeoutMs.
 */
function runLoad(script, args, timeoutMs, onLine) {
  const child = spawnNode(opts.loadCpu, [join(BENCH, script), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((ok, fail) => {
    let out = '';
    let err = '';
    let pending = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s) => (out += s));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s) => {
      err = (err + s).slice(-4000);
      pending += s;
      for (let nl = pending.indexOf('\n'); nl !== -1; nl = pending.indexOf('\n')) {
        onLine?.(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    });
    const timer = setTimeout(() => {
      fail(new Error(`${script} did not finish within ${timeoutMs} ms`));
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop();
      if (code !== 0 || !last)
        return fail(new Error(`${script} exited ${code}: ${err.trim() || '(no output)'}`));
      try {
        ok(JSON.parse(last));
      } catch {
        fail(new Error(`${script} printed no JSON result: ${last.slice(0, 200)}`));
      }
    });
  });
}

// ----------------------------------------------------------------------------------------------
// /proc: memory and CPU of the process under test, and how busy each core is

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function procStatus(pid, field) {
  try {
    return new RegExp(`^${field}:\\s+(\\S+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

function rssKB(pid) {
  const v = procStatus(pid, 'VmRSS');
  return v === undefined ? undefined : Number(v);
}

/** utime + stime of a process (all its threads), in clock ticks. */
function procTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return undefined;
  }
}

function coreDelta(a, b, c) {
  const x = a[c];
  const y = b[c];
  if (!x || !y || y.total === x.total) return { busyPct: null, stealPct: null };
  const dt = y.total - x.total;
  return {
    busyPct: round(((y.busy - x.busy) / dt) * 100),
    stealPct: round(((y.steal - x.steal) / dt) * 100),
  };
}

/**
 * CPU accounting over the window a load generator marks with `MARK start` / `MARK end` on its
 * stderr: the CPU the process under test got, and how busy both cores were. On a shared machine
 * this tells a slow target from a starved one (its core much busier than itself means a neighbour
 * took time), and requests per CPU-second of the target stay comparable even then.
 */
function cpuMeter(pid) {
  let a;
  let b;
  const snap = () => ({ at: performance.now(), ticks: procTicks(pid), cores: coreTicks() });
  return {
    onLine(line) {
      if (line === 'MARK start') a = snap();
      else if (line === 'MARK end') b = snap();
    },
    result() {
      if (!a || !b) return undefined;
      const wallS = (b.at - a.at) / 1000;
      const cpuS = a.ticks !== undefined && b.ticks !== undefined ? (b.ticks - a.ticks) / CLK_TCK : undefined;
      return {
        wallS: round(wallS, 2),
        targetCpuS: cpuS === undefined ? null : round(cpuS, 2),
        targetCpuPct: cpuS === undefined ? null : round((cpuS / wallS) * 100),
        targetCore: coreDelta(a.cores, b.cores, opts.targetCpu),
        loadCore: coreDelta(a.cores, b.cores, opts.loadCpu),
      };
    },
  };
}

/**
 * Before each phase, waits (at most --quiet-wait seconds) until both cores are idle: on a shared
 * machine a neighbour's build or test run would otherwise be measured as the target's cost.
 * Returns the busier core's load over the last second, in percent.
 */
async function waitQuiet() {
  if (!opts.pin || !existsSync('/proc/stat')) return null;
  const until = Date.now() + opts.quietWaitS * 1000;
  let said = false;
  for (;;) {
    const a = coreTicks();
    await sleep(1000);
    const b = coreTicks();
    const busy = Math.max(coreDelta(a, b, opts.targetCpu).busyPct, coreDelta(a, b, opts.loadCpu).busyPct);
    if (busy <= 10) return busy;
    if (Date.now() >= until) {
      log(
        `  WARNING: cores still ${busy}% busy with other work after ${opts.quietWaitS} s; measuring anyway`,
      );
      return busy;
    }
    if (!said) log(`  cores ${busy}% busy with other work: waiting up to ${opts.quietWaitS} s for quiet`);
    said = true;
  }
}

// ----------------------------------------------------------------------------------------------
// the processes under test

/**
 * tollgate with every stage on: team key auth, the cache (every request a miss: the bodies are
 * unique), limits (RPM and TPM per team, per key and per team+model, and concurrency) and
 * budgets (USD and tokens) on Redis, routing and attempts, accounting (log line, spend counters).
 * The limits and budgets are far above what the bench sends: every request pays admission, none
 * is refused. `closed`: were Redis to fail mid-run, requests would fail visibly (503) instead of
 * being served on local limits and measured as if they had gone to Redis.
 */
function writeTollgateConfig(name, fakeOrigin, keyHash, redis) {
  const path = join(tmp, `tollgate.${name}.yaml`);
  // The pool holds one connection per stream: at 256 the streams would queue upstream.
  const connections = Math.max(256, opts.streams + 16);
  writeFileSync(
    path,
    everyStageConfigYaml({ fakeOrigin, keyHash, redis, team: 'bench', connections, shutdownTimeoutMs: 2000 }),
  );
  return path;
}

/**
 * The peer drops body fields it does not know, so the fake's stream knobs (x_fake in the body,
 * which tollgate and the bare proxy forward) reach it as headers it is told to forward.
 */
function peerStreamHeaders(name, chunks, chunkDelayMs, latencyMs) {
  if (name !== 'portkey') return {};
  return {
    'x-fake-chunks': String(chunks),
    'x-fake-chunk-delay-ms': String(chunkDelayMs),
    'x-fake-latency-ms': String(latencyMs),
    'x-portkey-forward-headers': 'x-fake-chunks,x-fake-chunk-delay-ms,x-fake-latency-ms',
  };
}

/** What the peer needs on every request to reach the fake: its provider and custom host. */
function peerHeaders(fakeOrigin) {
  return { 'x-portkey-provider': 'openai', 'x-portkey-custom-host': `${fakeOrigin}/v1` };
}

/**
 * Starts one target on the target core and resolves once it serves: { origin, pid, stop() }.
 * "fake direct" is the shared fake upstream itself: no process of its own to start or measure.
 */
async function startTarget(name, ctx, label) {
  if (name === 'fake')
    return { origin: ctx.fake.origin, pid: undefined, headers: {}, stop: async () => undefined };
  const port = await freePort();
  const origin = `http://${HOST}:${port}`;
  let child;
  let logPath;
  let headers = {};
  // The streams phase takes a memory reading after forced GCs (collectGarbage): the inspector's
  // port is set, the inspector itself only started then, after the measured run.
  const inspect = label === 'streams' ? ['--inspect-port=127.0.0.1:0'] : [];
  if (name === 'bare') {
    const args = flags({ port, upstream: ctx.fake.origin, connections: Math.max(256, opts.streams + 16) });
    child = spawnNode(opts.targetCpu, [...inspect, join(BENCH, 'bare-proxy.mjs'), ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } else if (name === 'portkey') {
    // Its own CLI, as its README runs it; it logs every request to stdout, which goes nowhere.
    child = spawnNode(opts.targetCpu, [...inspect, PORTKEY_BIN, `--port=${port}`], {
      cwd: ROOT,
      env: { ...process.env, NODE_ENV: 'production' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    headers = peerHeaders(ctx.fake.origin);
  } else {
    // One JSON log line per request is part of tollgate's real cost: it goes to a file, as in production.
    logPath = join(ctx.runDir, `tollgate-${label}.log`);
    const logFd = openSync(logPath, 'w');
    const env = {
      ...process.env,
      TOLLGATE_HOST: HOST,
      TOLLGATE_PORT: String(port),
      TOLLGATE_LOG_LEVEL: 'info',
    };
    // Nothing from the developer's shell may redirect the gateway to a real provider.
    delete env.OPENAI_API_KEY;
    delete env.OPENAI_BASE_URL;
    delete env.TOLLGATE_CONFIG;
    const prof = opts.profile ? ['--cpu-prof', '--cpu-prof-dir', join(ctx.runDir, `profiles-${label}`)] : [];
    const cli = name === 'base' ? join(opts.baseDist, 'cli.js') : join(ROOT, 'dist/cli.js');
    const args = [...inspect, ...prof, cli, 'serve', '--config', ctx.tollgateConfig];
    child = spawnNode(opts.targetCpu, args, { cwd: ROOT, env, stdio: ['ignore', logFd, 'pipe'] });
    closeSync(logFd);
  }
  const tail = stderrTail(child);
  try {
    // tollgate has /healthz, the peer answers / itself; the bare proxy forwards everything, so the
    // fake's model list through it.
    const ready = { tollgate: '/healthz', base: '/healthz', portkey: '/', bare: '/v1/models' }[name];
    await waitHttpOk(`${origin}${ready}`, 20_000, name, child);
  } catch (err) {
    await stopChild(child);
    throw new Error(`${err.message}\n${tail()}`);
  }
  const pinnedTo = procStatus(child.pid, 'Cpus_allowed_list');
  if (opts.pin && pinnedTo !== String(opts.targetCpu)) {
    await stopChild(child);
    throw new Error(`${name} may run on cores ${pinnedTo}, expected only ${opts.targetCpu}`);
  }
  return {
    origin,
    pid: child.pid,
    child,
    logPath,
    pinnedTo,
    headers,
    stop: async () => {
      await stopChild(child, 8000);
      if (child.exitCode !== 0 && child.signalCode === null && tail().trim()) {
        process.stderr.write(`  (${name} exited ${child.exitCode}: ${tail().trim().slice(-500)})\n`);
      }
    },
  };
}

/** One checked request of each kind before any load: a misconfigured target fails here, not in a table. */
async function smoke(origin, key, extra = {}) {
  const post = async (body) => {
    const res = await request(`${origin}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...extra },
      body,
      headersTimeout: 5000,
      bodyTimeout: 5000,
    });
    return { status: res.statusCode, text: await res.body.text() };
  };
  const chat = await post(chatBody());
  let content;
  try {
    content = JSON.parse(chat.text)?.choices?.[0]?.message?.content;
  } catch {
    content = undefined;
  }
  if (chat.status !== 200 || !content)
    throw new Error(`smoke: chat answered ${chat.status}: ${chat.text.slice(0, 300)}`);
  const stream = await post(streamBody(3, 0));
  if (stream.status !== 200 || !stream.text.trimEnd().endsWith('data: [DONE]')) {
    throw new Error(`smoke: stream answered ${stream.status}: ${stream.text.slice(0, 300)}`);
  }
}

// ----------------------------------------------------------------------------------------------
// phases

const LOAD_SLACK_MS = 60_000;

/**
 * How long the memory run's streams relay (its chunks spread over it): the inspector's start and
 * two full GCs of a heap of a few hundred MB must fit while all of them are open.
 */
const MEMORY_RELAY_MS = 6000;

const chatUrl = (origin) => `${origin}/v1/chat/completions`;

/**
 * What every load generator sends a target: its URL, the key, a unique body per request (so
 * tollgate's cache misses every time and a miss is what is measured), and the target's headers.
 */
function loadArgs(t, ctx) {
  const headers = Object.keys(t.headers).length > 0 ? { headers: JSON.stringify(t.headers) } : {};
  return { url: chatUrl(t.origin), key: ctx.key, body: 'unique', ...headers };
}

/**
 * Phases a and b, in interleaved rounds. This machine's speed drifts by 10-40% from one 10 s
 * window to the next (a VM: the host's other tenants), so measuring all of bare and then all of
 * tollgate would fold that drift into the ratio. Instead every round measures each target back to
 * back (the order of bare and tollgate alternating), and the report takes the median over rounds.
 */
async function httpPhases(ctx) {
  const procs = {};
  const out = {};
  try {
    for (const name of opts.targets) {
      procs[name] = await startTarget(name, ctx, 'http');
      await smoke(procs[name].origin, ctx.key, procs[name].headers);
      out[name] = { pinnedTo: procs[name].pinnedTo ?? null, saturationRounds: [], rateRounds: [] };
    }
    const orderFor = (round) => {
      const proxies = opts.targets.filter((t) => t !== 'fake');
      if (round % 2 === 1) proxies.reverse();
      return opts.targets.includes('fake') ? ['fake', ...proxies] : proxies;
    };
    for (let round = 0; round < opts.rounds; round++) {
      const order = orderFor(round);
      for (const name of order) {
        const t = procs[name];
        const busyBeforePct = await waitQuiet();
        const meter = cpuMeter(t.pid ?? ctx.fake.pid);
        const args = { ...loadArgs(t, ctx), connections: opts.connections };
        const r = await runLoad(
          'load-saturation.mjs',
          flags({ ...args, duration: opts.duration, warmup: opts.warmup }),
          (opts.warmup + opts.duration) * 1000 + LOAD_SLACK_MS,
          meter.onLine,
        );
        r.cpu = meter.result() ?? null;
        r.reqPerCpuS = r.cpu?.targetCpuS ? Math.round(r.ok / r.cpu.targetCpuS) : null;
        r.busyBeforePct = busyBeforePct;
        out[name].saturationRounds.push(r);
        log(
          `[round ${round + 1}/${opts.rounds}] saturation ${pad(TARGET_LABEL[name])} ${fmt(r.rps, 0).padStart(6)} req/s` +
            `  p99 ${fmt(r.latencyMs.p99).padStart(7)} ms  CPU ${fmt(r.cpu?.targetCpuPct, 0)}%` +
            (name === 'fake' ? ' (the fake upstream)' : ''),
        );
      }
      for (const name of order) {
        const t = procs[name];
        const busyBeforePct = await waitQuiet();
        const meter = cpuMeter(t.pid ?? ctx.fake.pid);
        const r = await runLoad(
          'load-rate.mjs',
          flags({ ...loadArgs(t, ctx), rate: opts.rate, duration: opts.duration }),
          (1 + opts.duration) * 1000 + LOAD_SLACK_MS,
          meter.onLine,
        );
        r.cpu = meter.result() ?? null;
        r.busyBeforePct = busyBeforePct;
        out[name].rateRounds.push(r);
        log(
          `[round ${round + 1}/${opts.rounds}] ${opts.rate} req/s   ${pad(TARGET_LABEL[name])}` +
            `  p50 ${fmt(r.latencyMs.p50)} ms  p99 ${fmt(r.latencyMs.p99).padStart(6)} ms  errors ${r.errors + r.non2xx + r.badBody}`,
        );
      }
    }
    for (const name of opts.targets) {
      out[name].saturation = summarizeSaturation(out[name].saturationRounds);
      out[name].rate = summarizeRate(out[name].rateRounds);
    }
    if (procs.tollgate && procs.bare) out.paired = await pairedPhase(procs.bare, procs.tollgate, ctx);
    if (procs.tollgate) out.tollgate.lag = await lagPhase(procs.tollgate, ctx, out.tollgate.saturation.rps);
  } finally {
    for (const p of Object.values(procs)) await p.stop();
  }
  for (const name of opts.targets) out[name].logLines = countLines(procs[name].logPath);
  return out;
}

/**
 * The added latency, measured so that the host's weather cancels (as the state suite does): one
 * open-loop generator at opts.rate alternates between the bare proxy and tollgate every 500 ms
 * for 3x the phase duration (load-paired.mjs), and each one's p50/p99 is taken over all its
 * slices. The separate rate rounds each take whatever the host does during them: in this
 * suite's runs the same proxy's p99 moved by 5-50 ms from one round to the next.
 */
async function pairedPhase(bare, tollgate, ctx) {
  await waitQuiet();
  const duration = opts.duration * 3;
  const leadIn = opts.quick ? 1 : 5;
  const r = await runLoad(
    'load-paired.mjs',
    flags({
      'url-a': `${bare.origin}/v1/chat/completions`,
      'url-b': `${tollgate.origin}/v1/chat/completions`,
      key: ctx.key,
      rate: opts.rate,
      duration,
      'lead-in': leadIn,
    }),
    (leadIn + duration) * 1000 + LOAD_SLACK_MS,
  );
  log(
    `[paired] ${opts.rate} req/s alternating every ${r.sliceMs} ms for ${duration} s: ` +
      `bare p50 ${fmt(r.a.latencyMs.p50)} / p99 ${fmt(r.a.latencyMs.p99)} ms, ` +
      `tollgate p50 ${fmt(r.b.latencyMs.p50)} / p99 ${fmt(r.b.latencyMs.p99)} ms`,
  );
  return { bare: r.a, tollgate: r.b, durationS: duration, sliceMs: r.sliceMs };
}

/**
 * Event-loop health: tollgate at GOALS.lagLoad of its own saturation RPS (open loop) for one
 * phase, and its `tollgate_event_loop_lag_seconds` over exactly that phase (a scrape right
 * before starts the window: each scrape reads and resets the lag histogram).
 */
async function lagPhase(t, ctx, saturationRps) {
  const rate = Math.max(1, Math.round(GOALS.lagLoad * saturationRps));
  await waitQuiet();
  await scrapeLag(t.origin);
  const meter = cpuMeter(t.pid);
  const r = await runLoad(
    'load-rate.mjs',
    flags({ ...loadArgs(t, ctx), rate, duration: opts.duration }),
    (1 + opts.duration) * 1000 + LOAD_SLACK_MS,
    meter.onLine,
  );
  const lag = await scrapeLag(t.origin);
  const out = {
    rate,
    achievedRate: r.achievedRate,
    latencyMs: r.latencyMs,
    errors: r.errors + r.non2xx + r.badBody,
    cpu: meter.result() ?? null,
    lagMs: lag,
  };
  log(
    `[lag] tollgate at ${rate} req/s (${pct(GOALS.lagLoad)} of its saturation): event-loop lag ` +
      `p50 ${fmt(lag.p50)} / p99 ${fmt(lag.p99)} / max ${fmt(lag.max)} ms, request p99 ${fmt(r.latencyMs.p99)} ms`,
  );
  return out;
}

/** tollgate's event-loop lag since its previous scrape, in ms by quantile. */
async function scrapeLag(origin) {
  const res = await request(`${origin}/metrics`, { headersTimeout: 5000, bodyTimeout: 5000 });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}: ${text.slice(0, 200)}`);
  const q = (quantile) => {
    const m = new RegExp(`^tollgate_event_loop_lag_seconds\\{quantile="${quantile}"\\} (\\S+)$`, 'm').exec(
      text,
    );
    return m ? round(Number(m[1]) * 1000, 2) : null;
  };
  return { p50: q('0.5'), p99: q('0.99'), max: q('1') };
}

/**
 * Phase c in rounds, the order of the proxies alternating as in phases a-b: one 2,000-stream run
 * per target takes whatever the host does during its few seconds (the same build's first-chunk
 * p99 moved by 200 ms between two runs), and the target measured first paid ~90 ms more.
 */
async function streamRounds(results, ctx) {
  const runs = Object.fromEntries(opts.targets.map((name) => [name, []]));
  for (let r = 0; r < opts.streamRounds; r++) {
    const proxies = opts.targets.filter((t) => t !== 'fake');
    if (r % 2 === 1) proxies.reverse();
    const order = opts.targets.includes('fake') ? ['fake', ...proxies] : proxies;
    for (const name of order) runs[name].push(await streamPhase(name, ctx, r));
  }
  for (const name of opts.targets) results[name].streams = summarizeStreams(runs[name]);
  for (const name of opts.targets) {
    if (name !== 'fake') results[name].streams.memory = await streamPhase(name, ctx, 0, true);
  }
}

/** The rounds of one target: medians of the figures, sums of what went wrong, the worst gap. */
function summarizeStreams(rounds) {
  const pick = (f) => median(rounds.map(f));
  const total = (f) => sum(rounds.map(f));
  const rss = rounds.every((r) => r.rss)
    ? {
        beforeKB: pick((r) => r.rss.beforeKB),
        afterGcKB: rounds.every((r) => r.rss.afterGcKB !== null) ? pick((r) => r.rss.afterGcKB) : null,
        allOpenKB: rounds.every((r) => r.rss.allOpenKB !== null) ? pick((r) => r.rss.allOpenKB) : null,
        peakKB: pick((r) => r.rss.peakKB),
        perStreamKB: rounds.every((r) => r.rss.perStreamKB !== null) ? pick((r) => r.rss.perStreamKB) : null,
        peakPerStreamKB: pick((r) => r.rss.peakPerStreamKB),
      }
    : undefined;
  return {
    rounds,
    streams: rounds[0].streams,
    streamsTotal: total((r) => r.streams),
    completed: total((r) => r.completed),
    failed: total((r) => r.failed),
    lostChunks: total((r) => r.lostChunks),
    unexpectedEvents: total((r) => r.unexpectedEvents),
    stalled: total((r) => r.stalled),
    maxGapMs: Math.max(...rounds.map((r) => r.maxGapMs)),
    maxOpen: Math.min(...rounds.map((r) => r.maxOpen)),
    allOpenAtMs: rounds.every((r) => r.allOpenAtMs !== null) ? pick((r) => r.allOpenAtMs) : null,
    ttfcMs: {
      p50: pick((r) => r.ttfcMs.p50),
      p99: pick((r) => r.ttfcMs.p99),
      max: pick((r) => r.ttfcMs.max),
    },
    cpu: rounds.every((r) => r.cpu) ? { targetCpuPct: pick((r) => r.cpu.targetCpuPct) } : null,
    ...(rss ? { rss } : {}),
  };
}

/**
 * One run of phase c, on a fresh process, so the RSS baseline holds no heap left from phases a-b.
 * `memory`: the run that measures what an open stream holds, not its timing: its streams relay for
 * MEMORY_RELAY_MS, long enough to collect garbage while all are open and read the RSS then.
 */
async function streamPhase(name, ctx, roundIndex, memory = false) {
  const label = TARGET_LABEL[name];
  const t = await startTarget(name, ctx, 'streams');
  try {
    const { body: _unique, headers: _h, ...common } = loadArgs(t, ctx);
    const streamArgs = (streams, chunks, delay, firstChunkMs) => [
      ...flags({
        ...common,
        headers: JSON.stringify({ ...t.headers, ...peerStreamHeaders(name, chunks, delay, firstChunkMs) }),
        streams,
        chunks,
        'chunk-delay-ms': delay,
        'first-chunk-ms': firstChunkMs,
        'open-rate': opts.openRate,
        // Connections opened before the phase: see load-streams.mjs. The peer answers its own
        // model list; the others' GET reaches the fake through them, or tollgate's own list.
        'warm-path': '/v1/models',
      }),
      '--unique',
    ];
    // Warm-up: the stream code compiled (by the optimising compiler: V8 needs a few thousand
    // calls, and a fresh process took ~1.8 ms per stream instead of ~0.5) and the pools started
    // before the baseline is taken: twice as many short streams as the phase opens, at its rate.
    for (let i = 0; i < 2; i++)
      await runLoad(
        'load-streams.mjs',
        streamArgs(opts.streams, 2, 10, 0),
        LOAD_SLACK_MS + (opts.streams / opts.openRate) * 1000,
      );
    const busyBeforePct = await waitQuiet();
    const before = t.pid ? rssKB(t.pid) : undefined;
    let allOpen;
    let peak = before;
    const sampler = t.pid
      ? setInterval(() => {
          const v = rssKB(t.pid);
          if (v !== undefined && v > peak) peak = v;
        }, 100)
      : undefined;
    const meter = cpuMeter(t.pid ?? ctx.fake.pid);
    let s;
    const chunkDelayMs = memory ? Math.ceil(MEMORY_RELAY_MS / opts.chunks) : opts.chunkDelayMs;
    let openCollected;
    try {
      s = await runLoad(
        'load-streams.mjs',
        streamArgs(opts.streams, opts.chunks, chunkDelayMs, opts.firstChunkMs),
        opts.firstChunkMs +
          (opts.chunks + 2) * chunkDelayMs +
          (opts.streams / opts.openRate) * 1000 +
          LOAD_SLACK_MS,
        (line) => {
          // The moment every stream is open at once: the memory they hold is all there.
          if (line === 'ALL_OPEN' && t.pid) {
            allOpen = rssKB(t.pid);
            if (memory) openCollected = collectGarbage(t.child).then((ok) => (ok ? rssKB(t.pid) : undefined));
          }
          meter.onLine(line);
        },
      );
    } finally {
      if (sampler) clearInterval(sampler);
    }
    s.cpu = meter.result() ?? null;
    s.busyBeforePct = busyBeforePct;
    if (memory) {
      const allOpenGc = await openCollected;
      const afterGc = (await collectGarbage(t.child)) ? rssKB(t.pid) : undefined;
      const perStreamKB =
        allOpenGc !== undefined && afterGc !== undefined ? round((allOpenGc - afterGc) / opts.streams) : null;
      log(
        `[streams memory] ${pad(label)} RSS after full GCs: ${mb(allOpenGc)} MB with all ${opts.streams} open, ` +
          `${mb(afterGc)} MB after: ${fmt(perStreamKB, 1)} KB per open stream ` +
          `(${s.completed}/${s.streams} complete, ${s.lostChunks} lost chunks, ${s.stalled} stalled)`,
      );
      return {
        allOpenGcKB: allOpenGc ?? null,
        afterGcKB: afterGc ?? null,
        perStreamKB,
        completed: s.completed,
        lostChunks: s.lostChunks,
        stalled: s.stalled,
      };
    }
    if (t.pid) {
      // The baseline: the same process once the streams are over and two full GCs have run.
      // Taken before the phase instead, it held the warm-ups' garbage, which the phase's own GCs
      // then freed: the growth came out anywhere from -56 to +50 KB a stream. Against a collected
      // baseline, the reading at the all-open moment still counts the garbage of that moment, so
      // the figure is an upper bound of what an open stream holds.
      const afterGc = (await collectGarbage(t.child)) ? rssKB(t.pid) : undefined;
      const base = afterGc ?? before;
      s.rss = {
        beforeKB: before,
        afterGcKB: afterGc ?? null,
        allOpenKB: allOpen ?? null,
        peakKB: peak,
        perStreamKB: allOpen === undefined ? null : round((allOpen - base) / opts.streams),
        peakPerStreamKB: round((peak - base) / opts.streams),
      };
    }
    log(
      `[streams ${roundIndex + 1}/${opts.streamRounds}] ${pad(label)} ${s.completed}/${s.streams} complete, ${s.lostChunks} lost chunks, ` +
        `${s.stalled} stalled, first chunk p99 ${fmt(s.ttfcMs.p99, 0)} ms` +
        (s.rss ? `, ${fmt(s.rss.perStreamKB, 1)} KB RSS per open stream` : ''),
    );
    return s;
  } finally {
    await t.stop();
  }
}

function median(values) {
  const s = values.filter((v) => typeof v === 'number' && !Number.isNaN(v)).sort((a, b) => a - b);
  if (s.length === 0) return null;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const sum = (values) => values.reduce((a, b) => a + (b ?? 0), 0);

function summarizeSaturation(rounds) {
  const rps = rounds.map((r) => r.rps);
  return {
    rps: median(rps),
    rpsMin: Math.min(...rps),
    rpsMax: Math.max(...rps),
    ok: sum(rounds.map((r) => r.ok)),
    latencyMs: {
      p50: median(rounds.map((r) => r.latencyMs.p50)),
      p99: median(rounds.map((r) => r.latencyMs.p99)),
    },
    errors: sum(rounds.map((r) => r.errors + r.timeouts)),
    non2xx: sum(rounds.map((r) => r.non2xx)),
    targetCpuPct: median(rounds.map((r) => r.cpu?.targetCpuPct)),
    targetCoreBusyPct: median(rounds.map((r) => r.cpu?.targetCore.busyPct)),
    loadCoreBusyPct: median(rounds.map((r) => r.cpu?.loadCore.busyPct)),
    reqPerCpuS: median(rounds.map((r) => r.reqPerCpuS)),
  };
}

function summarizeRate(rounds) {
  const pick = (k) => median(rounds.map((r) => r.latencyMs[k]));
  return {
    achievedRate: median(rounds.map((r) => r.achievedRate)),
    sent: sum(rounds.map((r) => r.sent)),
    ok: sum(rounds.map((r) => r.ok)),
    latencyMs: {
      p50: pick('p50'),
      p97_5: pick('p97_5'),
      p99: pick('p99'),
      p99Min: Math.min(...rounds.map((r) => r.latencyMs.p99)),
      p99Max: Math.max(...rounds.map((r) => r.latencyMs.p99)),
      max: Math.max(...rounds.map((r) => r.latencyMs.max)),
    },
    errors: sum(rounds.map((r) => r.errors)),
    non2xx: sum(rounds.map((r) => r.non2xx)),
    badBody: sum(rounds.map((r) => r.badBody)),
    targetCpuPct: median(rounds.map((r) => r.cpu?.targetCpuPct)),
  };
}

// ----------------------------------------------------------------------------------------------
// verdicts and report

function verdicts(results) {
  const bare = results.bare;
  const peer = results.portkey;
  const tg = results.tollgate;
  const v = [];
  // Paired: each round's tollgate figure against the other's measured seconds before or after
  // it, then the median over rounds, so that drift of the machine between rounds cancels out.
  const pairedRatio = (other) =>
    median(tg.saturationRounds.map((r, i) => r.rps / other.saturationRounds[i].rps));
  const perRoundRatios = (other) => tg.saturationRounds.map((r, i) => r.rps / other.saturationRounds[i].rps);
  const clean = tg?.saturation ? tg.saturation.errors + tg.saturation.non2xx === 0 : false;
  if (bare?.saturation && tg?.saturation) {
    const perRound = perRoundRatios(bare);
    const ratio = pairedRatio(bare);
    v.push({
      id: 'rps_ratio',
      label: 'saturation RPS, tollgate / bare',
      value: round(ratio, 3),
      perRound: perRound.map((x) => round(x, 3)),
      display: `${pct(ratio)} (rounds ${perRound.map((x) => pct(x)).join(', ')})`,
      goal: `>= ${pct(GOALS.rpsRatio)}, no errors`,
      pass: ratio >= GOALS.rpsRatio && clean,
    });
  }
  if (peer?.saturation && tg?.saturation) {
    const perRound = perRoundRatios(peer);
    const ratio = pairedRatio(peer);
    v.push({
      id: 'peer_ratio',
      label: 'saturation RPS, tollgate / portkey',
      value: round(ratio, 2),
      perRound: perRound.map((x) => round(x, 2)),
      display: `${fmt(ratio)}x (rounds ${perRound.map((x) => `${fmt(x)}x`).join(', ')})`,
      goal: `>= ${GOALS.peerRatio}x, no errors`,
      pass: ratio >= GOALS.peerRatio && clean,
    });
  }
  if (bare?.rate && tg?.rate) {
    const rateClean = tg.rate.errors + tg.rate.non2xx + tg.rate.badBody === 0 && tg.rate.ok === tg.rate.sent;
    for (const [q, goal] of [
      ['p50', GOALS.p50DeltaMs],
      ['p99', GOALS.p99DeltaMs],
    ]) {
      const perRound = tg.rateRounds.map((r, i) => r.latencyMs[q] - bare.rateRounds[i].latencyMs[q]);
      const paired = results.paired;
      const pairedClean =
        !paired ||
        (paired.tollgate.errors + paired.tollgate.non2xx + paired.tollgate.badBody === 0 &&
          paired.tollgate.ok === paired.tollgate.sent);
      // Judged on the paired phase when it ran (same weather for both); else the rounds' median.
      const delta = paired ? paired.tollgate.latencyMs[q] - paired.bare.latencyMs[q] : median(perRound);
      v.push({
        id: `${q}_delta`,
        label: `${q} at ${opts.rate} req/s, tollgate - bare${paired ? ', paired' : ''}`,
        value: round(delta, 3),
        perRound: perRound.map((x) => round(x, 3)),
        display:
          `${signed(delta)} ms` +
          (paired
            ? ` (separate rounds: ${perRound.map((x) => signed(x)).join(', ')})`
            : ` (rounds ${perRound.map((x) => signed(x)).join(', ')})`),
        goal: `<= +${goal} ms, all answered`,
        pass: delta <= goal && rateClean && pairedClean,
      });
    }
  }
  if (tg?.streams) {
    const s = tg.streams;
    const n = s.rounds.length;
    v.push({
      id: 'streams_intact',
      label: `${s.streams} streams${n > 1 ? ` x ${n} rounds` : ''}: lost chunks / stalled / failed`,
      value: { lost: s.lostChunks, stalled: s.stalled, failed: s.failed, completed: s.completed },
      display: `${s.lostChunks} / ${s.stalled} / ${s.failed} (${s.completed} of ${s.streamsTotal} complete)`,
      goal: '0 / 0 / 0',
      pass: s.lostChunks + s.stalled + s.failed + s.unexpectedEvents === 0 && s.completed === s.streamsTotal,
    });
    if (bare?.streams) {
      // Paired by round: each round's tollgate run against the bare proxy's in the same round.
      const perRound = s.rounds.map((r, i) => r.ttfcMs.p99 - bare.streams.rounds[i].ttfcMs.p99);
      const delta = median(perRound);
      v.push({
        id: 'ttfc_p99_delta',
        label: 'streams first-chunk p99, tollgate - bare',
        value: round(delta, 1),
        perRound: perRound.map((x) => round(x, 1)),
        display:
          n > 1
            ? `${signed(delta)} ms (rounds ${perRound.map((x) => signed(x)).join(', ')})`
            : `${signed(delta)} ms (${fmt(s.ttfcMs.p99, 0)} vs ${fmt(bare.streams.ttfcMs.p99, 0)} ms)`,
        goal: `<= +${GOALS.ttfcP99DeltaMs} ms`,
        pass: delta <= GOALS.ttfcP99DeltaMs,
      });
    }
    // Judged on the memory run: both readings after full GCs, so what the open streams hold.
    const per = s.memory?.perStreamKB ?? null;
    const bound = s.rss?.perStreamKB;
    v.push({
      id: 'rss_per_stream',
      label: 'RSS per open stream (after full GCs)',
      value: per,
      display:
        per === null
          ? 'n/a (no reading: the streams were never all open at once, or no GC could be run)'
          : `${fmt(per, 1)} KB` +
            (bound !== undefined ? ` (with the garbage of the moment: ${fmt(bound, 1)} KB)` : ''),
      goal: `<= ${GOALS.rssPerStreamKB} KB`,
      pass: per !== null && per <= GOALS.rssPerStreamKB,
    });
  }
  if (tg?.lag) {
    const l = tg.lag;
    v.push({
      id: 'lag_p99',
      label: `event-loop lag p99 at ${pct(GOALS.lagLoad)} of saturation (${l.rate} req/s)`,
      value: l.lagMs.p99,
      display: `${fmt(l.lagMs.p99)} ms (max ${fmt(l.lagMs.max)} ms)`,
      goal: `< ${GOALS.lagP99Ms} ms, all answered`,
      pass: l.lagMs.p99 !== null && l.lagMs.p99 < GOALS.lagP99Ms && l.errors === 0,
    });
  }
  return v;
}

/**
 * Signs that a figure is not the proxy's own: at saturation the process under test should use
 * ~all of its core, and its core should not be much busier than the process itself.
 */
function contention(results) {
  const out = [];
  const check = (where, c, saturating) => {
    if (!c || c.targetCpuPct === null || c.targetCore.busyPct === null) return;
    if (saturating && c.targetCpuPct < 90) {
      out.push(`${where}: the target used only ${c.targetCpuPct}% of its core, so it was not the bottleneck`);
    }
    if (c.targetCore.busyPct - c.targetCpuPct > 10) {
      out.push(
        `${where}: core ${opts.targetCpu} was ${c.targetCore.busyPct}% busy, the target used ${c.targetCpuPct}%: ` +
          'other processes ran on the target core',
      );
    }
    if (c.targetCore.stealPct > 5)
      out.push(`${where}: ${c.targetCore.stealPct}% steal time on the target core`);
  };
  for (const name of PROXIES) {
    const r = results[name];
    if (!r) continue;
    r.saturationRounds?.forEach((x, i) =>
      check(`${TARGET_LABEL[name]}, saturation round ${i + 1}`, x.cpu, true),
    );
    r.rateRounds?.forEach((x, i) =>
      check(`${TARGET_LABEL[name]}, ${opts.rate} req/s round ${i + 1}`, x.cpu, false),
    );
    r.streams?.rounds.forEach((x, i) => check(`${TARGET_LABEL[name]}, streams round ${i + 1}`, x.cpu, false));
  }
  return out;
}

function round(x, d = 1) {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

function fmt(x, d = 2) {
  return x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d);
}

function signed(x) {
  return `${x >= 0 ? '+' : ''}${fmt(x)}`;
}

function pct(x) {
  return `${(x * 100).toFixed(1)}%`;
}

function mb(kb) {
  return kb === null || kb === undefined ? '-' : (kb / 1024).toFixed(1);
}

function pad(s) {
  return s.padEnd(11);
}

// Everything printed is also kept, to be written next to the results as report.md.
const printed = [];

function log(line) {
  printed.push(line);
  process.stdout.write(`${line}\n`);
}

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => `| ${cells.map((c, i) => String(c).padEnd(widths[i])).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

function report(results, checks, warnings, m) {
  const names = opts.targets.filter((n) => results[n]);
  const row = (title, f) => [title, ...names.map((n) => f(results[n]))];
  const pair = (a, b, d = 2) => `${fmt(a, d)} / ${fmt(b, d)}`;
  const R = `${opts.rate} req/s`;
  const med = opts.rounds > 1 ? ` (median of ${opts.rounds})` : '';
  const smed = opts.streamRounds > 1 ? ` (median of ${opts.streamRounds})` : '';
  const httpRows = () => [
    row(`saturation req/s${med}`, (r) => fmt(r.saturation.rps, 0)),
    row(
      'saturation req/s, min - max',
      (r) => `${fmt(r.saturation.rpsMin, 0)} - ${fmt(r.saturation.rpsMax, 0)}`,
    ),
    row('saturation p50 / p99 ms', (r) => pair(r.saturation.latencyMs.p50, r.saturation.latencyMs.p99)),
    row('saturation errors / non-2xx', (r) => `${r.saturation.errors} / ${r.saturation.non2xx}`),
    row('saturation CPU of target %', (r) => fmt(r.saturation.targetCpuPct, 0)),
    row('saturation busy target / load core %', (r) =>
      pair(r.saturation.targetCoreBusyPct, r.saturation.loadCoreBusyPct, 0),
    ),
    row('saturation req per CPU-second', (r) => fmt(r.saturation.reqPerCpuS, 0)),
    row(`${R} achieved`, (r) => fmt(r.rate.achievedRate, 1)),
    row(`${R} p50 / p97.5 ms`, (r) => pair(r.rate.latencyMs.p50, r.rate.latencyMs.p97_5)),
    row(`${R} p99 ms${med}`, (r) => fmt(r.rate.latencyMs.p99)),
    row(
      `${R} p99 min - max / max ms`,
      (r) =>
        `${fmt(r.rate.latencyMs.p99Min)} - ${fmt(r.rate.latencyMs.p99Max)} / ${fmt(r.rate.latencyMs.max)}`,
    ),
    row(`${R} errors / non-2xx`, (r) => `${r.rate.errors} / ${r.rate.non2xx + r.rate.badBody}`),
    row(`${R} CPU of target %`, (r) => fmt(r.rate.targetCpuPct, 0)),
  ];
  const streamRows = () => [
    row('streams complete', (r) => `${r.streams.completed} / ${r.streams.streamsTotal}`),
    row('streams lost chunks / stalled', (r) => `${r.streams.lostChunks} / ${r.streams.stalled}`),
    row(`streams first chunk p50 / p99 ms${smed}`, (r) =>
      pair(r.streams.ttfcMs.p50, r.streams.ttfcMs.p99, 0),
    ),
    row('streams first chunk p99 per round ms', (r) =>
      r.streams.rounds.map((x) => fmt(x.ttfcMs.p99, 0)).join(', '),
    ),
    row('streams longest gap ms', (r) => fmt(r.streams.maxGapMs, 0)),
    row('streams CPU of target %', (r) => (r.streams.rss ? fmt(r.streams.cpu?.targetCpuPct, 0) : 'n/a')),
    row("RSS before / all open / after, GC'd MB", (r) =>
      r.streams.rss
        ? `${mb(r.streams.rss.beforeKB)} / ${mb(r.streams.rss.allOpenKB)} / ${mb(r.streams.rss.afterGcKB)}`
        : 'n/a',
    ),
    row("RSS per open stream KB (all open - after, GC'd)", (r) =>
      r.streams.rss ? fmt(r.streams.rss.perStreamKB, 1) : 'n/a',
    ),
    row("RSS per open stream KB, memory run (both GC'd)", (r) =>
      r.streams.memory ? fmt(r.streams.memory.perStreamKB, 1) : 'n/a',
    ),
    row('streams all open together', (r) =>
      r.streams.allOpenAtMs === null ? `no (at most ${r.streams.maxOpen})` : `at ${r.streams.allOpenAtMs} ms`,
    ),
  ];
  const rows = [
    ...(opts.phases.includes('http') ? httpRows() : []),
    ...(opts.phases.includes('streams') ? streamRows() : []),
  ];
  log('\n## Figures\n');
  log(table(['', ...names.map((n) => TARGET_LABEL[n])], rows));
  log("\n(For fake direct, CPU is the fake upstream's, on the load core.)");

  log('\n## Ratios\n');
  const sat = (n) => results[n]?.saturation;
  if (sat('fake') && sat('bare'))
    log(`bare proxy / fake direct RPS:   ${pct(sat('bare').rps / sat('fake').rps)}`);
  if (sat('fake') && sat('tollgate'))
    log(`tollgate / fake direct RPS:     ${pct(sat('tollgate').rps / sat('fake').rps)}`);
  if (sat('bare') && sat('tollgate')) {
    log(
      `tollgate / bare RPS:            ${pct(sat('tollgate').rps / sat('bare').rps)} (ratio of the medians)`,
    );
    const a = sat('tollgate').reqPerCpuS;
    const b = sat('bare').reqPerCpuS;
    if (a && b)
      log(`tollgate / bare req per CPU-s:  ${pct(a / b)} (unaffected by CPU time lost to neighbours)`);
  }
  if (sat('portkey') && sat('tollgate')) {
    log(
      `tollgate / portkey RPS:         ${fmt(sat('tollgate').rps / sat('portkey').rps)}x (ratio of the medians)`,
    );
    const a = sat('tollgate').reqPerCpuS;
    const b = sat('portkey').reqPerCpuS;
    if (a && b) log(`tollgate / portkey req per CPU-s: ${fmt(a / b)}x`);
  }
  if (sat('base') && sat('tollgate')) {
    const rounds = results.tollgate.saturationRounds.map(
      (r, i) => r.reqPerCpuS / results.base.saturationRounds[i].reqPerCpuS,
    );
    log(
      `tollgate / base req per CPU-s:  ${pct(sat('tollgate').reqPerCpuS / sat('base').reqPerCpuS)} ` +
        `(rounds ${rounds.map((x) => pct(x)).join(', ')})`,
    );
  }
  if (sat('portkey') && sat('bare'))
    log(`portkey / bare RPS:             ${pct(sat('portkey').rps / sat('bare').rps)}`);
  // The load side limits the bare proxy when the proxy has CPU to spare while the load core has none.
  const bare = sat('bare');
  if (bare && bare.targetCpuPct !== null && bare.targetCpuPct < 90 && bare.loadCoreBusyPct >= 95) {
    log(
      'NOTE: the bare proxy had CPU to spare while the load core was saturated: the load side limits it, ' +
        'and tollgate / bare flatters tollgate.',
    );
  } else if (sat('fake') && bare && bare.rps / sat('fake').rps >= 0.9) {
    log(
      'NOTE: the bare proxy comes within 10% of the fake-direct RPS; the headroom of the load side is thin ' +
        '(its CPU figures above say whether it was the limit).',
    );
  }
  for (const w of warnings) log(`WARNING: ${w}`);

  log(
    '\n## Targets (tollgate, every stage on, against the bare proxy and the peer of this run; ' +
      'median of the per-round comparisons)\n',
  );
  if (checks.length === 0)
    log('(needs bare and tollgate: run without --only, or with --only bare,portkey,tollgate)');
  else {
    const verdictRows = checks.map((c) => [c.label, c.display, c.goal, c.pass ? 'PASS' : 'FAIL']);
    log(table(['target', 'measured', 'goal', 'verdict'], verdictRows));
  }
  log(`\nmachine: ${m.nproc} cores, ${m.cpuModel}, ${m.memGB} GB RAM, node ${m.node}`);
}

function summarizeProfiles(dir, title = 'tollgate CPU profile over phases a and b') {
  if (!existsSync(dir)) return;
  const r = spawnSync(process.execPath, [join(BENCH, 'cpuprofile-top.mjs'), '--dir', dir, '--top', '25'], {
    encoding: 'utf8',
  });
  log(`\n## ${title} (self time)\n\n${r.stdout}${r.stderr}`);
}

/** What bench/state.mjs runs on: this script's options, processes, meters and report helpers. */
function harness(fields) {
  return {
    ...fields,
    opts,
    ROOT,
    BENCH,
    HOST,
    LOAD_SLACK_MS,
    CLK_TCK,
    printed,
    rel: (path) => path.slice(ROOT.length + 1),
    log,
    table,
    flags,
    spawnNode,
    stderrTail,
    stopChild,
    freePort,
    waitHttpOk,
    procStatus,
    procTicks,
    runLoad,
    cpuMeter,
    waitQuiet,
    summarizeSaturation,
    summarizeRate,
    summarizeProfiles,
    median,
    sum,
    round,
    fmt,
    signed,
    pct,
  };
}

// ----------------------------------------------------------------------------------------------

async function main() {
  const m = machine();
  preflight(m);
  const started = new Date();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const outDir = join(BENCH, 'out');
  const runDir = join(outDir, `run-${stamp}`);
  mkdirSync(runDir, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'tollgate-bench-'));

  const command = `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trimEnd();
  if (opts.suite === 'state') {
    const { runStateSuite } = await import('./state.mjs');
    await runStateSuite(harness({ machine: m, started, stamp, command, outDir, runDir, tmp }));
    rmSync(tmp, { recursive: true, force: true });
    return;
  }
  log('# tollgate bench\n');
  log(`date:     ${started.toISOString()}`);
  log(
    `machine:  ${m.nproc} cores, ${m.cpuModel}, ${m.memGB} GB RAM, ${m.kernel}${m.vm ? ' (virtual machine)' : ''}`,
  );
  log(`node:     ${m.node}`);
  log(`command:  ${command}`);
  log(
    opts.pin
      ? `pinning:  process under test on core ${opts.targetCpu}; load generators, fake upstream, orchestrator on core ${opts.loadCpu}`
      : 'pinning:  OFF (--no-pin): figures are not comparable',
  );
  log(`targets:  ${opts.targets.map((t) => TARGET_LABEL[t]).join(', ')}${opts.quick ? '  (--quick)' : ''}`);
  log(
    `phases:   saturation ${opts.connections} connections ${opts.warmup}+${opts.duration} s, ` +
      `${opts.rate} req/s ${opts.duration} s, ${opts.rounds} interleaved round(s); ` +
      `${opts.streams} streams x ${opts.chunks} chunks ${opts.chunkDelayMs} ms apart, opened at ${opts.openRate}/s, ` +
      `${opts.streamRounds} round(s)`,
  );

  const key = `tg-${randomBytes(24).toString('base64url')}`;
  // tollgate's limits, budgets, cache and spend live in this Redis, under a prefix of the run's own.
  const redis = opts.targets.includes('tollgate') ? await connectRedis(opts.redisUrl) : undefined;
  const prefix = `tg:bench:${randomBytes(6).toString('hex')}:`;
  const fake = await startFakeUpstream(spawnNode, opts.loadCpu, ROOT);
  const ctx = {
    fake,
    key,
    runDir,
    tollgateConfig: writeTollgateConfig(
      'bench',
      fake.origin,
      createHash('sha256').update(key).digest('hex'),
      {
        url: opts.redisUrl,
        prefix,
      },
    ),
  };
  log(`fake:     ${fake.origin} (pid ${fake.pid})`);
  if (redis) log(`redis:    ${opts.redisUrl} (Redis ${redis.version}), key prefix ${prefix}`);
  // Redis is a dependency, as the fake upstream is: on the load core with it, so that what it does
  // for tollgate is not taken from the core under test (unpinned, it ran there up to 20% of the time).
  const restoreRedis = redis && opts.pin ? pinProcess(redis.pid, opts.loadCpu) : undefined;
  if (restoreRedis)
    log(`          redis-server (pid ${redis.pid}) pinned to core ${opts.loadCpu} for the run`);
  log('');

  let results;
  try {
    results = opts.phases.includes('http')
      ? await httpPhases(ctx)
      : Object.fromEntries(opts.targets.map((name) => [name, {}]));
    if (opts.phases.includes('streams')) await streamRounds(results, ctx);
  } finally {
    await stopChild(fake.child);
    if (redis) await dropPrefixAndClose(redis, prefix, log);
    restoreRedis?.();
  }

  const checks = verdicts(results);
  const warnings = contention(results);
  report(results, checks, warnings, m);
  const file = join(outDir, `results-${stamp}.json`);
  const doc = {
    date: started.toISOString(),
    machine: m,
    command,
    options: opts,
    goals: GOALS,
    results,
    checks,
    warnings,
  };
  writeFileSync(file, `${JSON.stringify(doc, null, 2)}\n`);
  log(`\nresults:  ${file.slice(ROOT.length + 1)}`);
  log(`logs:     ${runDir.slice(ROOT.length + 1)}/`);
  if (opts.profile) {
    if (opts.phases.includes('http')) summarizeProfiles(join(runDir, 'profiles-http'));
    if (opts.phases.includes('streams'))
      summarizeProfiles(join(runDir, 'profiles-streams'), 'tollgate CPU profile over the streams phase');
  }
  writeFileSync(join(runDir, 'report.md'), `${printed.join('\n')}\n`);
  rmSync(tmp, { recursive: true, force: true });
  // A missed target fails the command, so the bench can gate a CI job.
  process.exitCode = checks.some((c) => !c.pass) ? 1 : 0;
}

main().catch((err) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  children.killAll();
  process.exit(2);
});
