// Process and machine helpers shared by the bench's orchestrators (run.mjs, soak.mjs): ports,
// readiness, child processes, the fake upstream, /proc readings. Linux only, as the bench is.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { clearTimeout, setTimeout } from 'node:timers';
import { setTimeout as sleep } from 'node:timers/promises';
import { request, WebSocket } from 'undici';

export const HOST = '127.0.0.1';

/** A port free on HOST right now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.once('error', fail);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

/** Polls url until it answers 200, at most timeoutMs; fails at once if `child` exits. */
export async function waitHttpOk(url, timeoutMs, name, child) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before it was ready`);
    try {
      const res = await request(url, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error(`${name}: ${url} did not answer 200 within ${timeoutMs} ms`);
}

/** The last `max` characters a child wrote to stderr, for error messages. */
export function stderrTail(child, max = 4000) {
  let tail = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => {
    tail = (tail + s).slice(-max);
  });
  return () => tail;
}

/** SIGTERM, then SIGKILL after graceMs; resolves when the child has exited. */
export function stopChild(child, graceMs = 5000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      done();
    });
    child.kill('SIGTERM');
  });
}

/**
 * Starts the fake upstream (dist/fake-upstream/main.js under `root`) with `spawnNode(cpu, args,
 * options)` and resolves with its origin once it listens.
 */
export async function startFake(spawnNode, cpu, root) {
  const port = await freePort();
  const args = ['--port', port, '--host', HOST, '--latency-ms', 0, '--chunks', 5, '--chunk-delay-ms', 0];
  const child = spawnNode(cpu, [join(root, 'dist/fake-upstream/main.js'), ...args.map(String)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail = stderrTail(child);
  const origin = await new Promise((ok, fail) => {
    let buf = '';
    const timer = setTimeout(() => fail(new Error(`fake upstream not ready in 15 s\n${tail()}`)), 15_000);
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s) => {
      buf += s;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\/v1/.exec(buf);
      if (m) {
        clearTimeout(timer);
        ok(m[1]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`fake upstream exited (${code})\n${tail()}`));
    });
  });
  return { child, origin, pid: child.pid };
}

/**
 * Runs full garbage collections in a running Node child (started with --inspect-port=HOST:0) and
 * resolves true once they are done, false when it could not: SIGUSR1 starts the child's inspector,
 * whose address it prints on stderr, and HeapProfiler.collectGarbage collects. The child's own
 * code is not involved, so the bench can take a memory reading without garbage in it from any
 * Node target (the bare proxy and the peer included).
 */
export async function collectGarbage(child, timeoutMs = 10_000) {
  // Once started, the inspector stays up and a second SIGUSR1 prints nothing: keep its address.
  child.inspectorUrl ??= await new Promise((resolve) => {
    let seen = '';
    const onData = (s) => {
      seen += s;
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(seen);
      if (m) done(m[1]);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    function done(v) {
      clearTimeout(timer);
      child.stderr.off('data', onData);
      resolve(v);
    }
    child.stderr.on('data', onData);
    child.kill('SIGUSR1');
  });
  const url = child.inspectorUrl;
  if (!url) return false;
  const ws = new WebSocket(url);
  try {
    await new Promise((ok, fail) => {
      ws.addEventListener('open', ok, { once: true });
      ws.addEventListener('error', () => fail(new Error(`inspector at ${url} refused the connection`)), {
        once: true,
      });
    });
    // Twice: the first collection can leave objects that only a second one frees (weak references).
    for (let id = 1; id <= 2; id++) {
      const answered = new Promise((ok) => {
        const onMessage = (e) => {
          if (JSON.parse(e.data).id !== id) return;
          ws.removeEventListener('message', onMessage);
          ok();
        };
        ws.addEventListener('message', onMessage);
      });
      ws.send(JSON.stringify({ id, method: 'HeapProfiler.collectGarbage' }));
      await Promise.race([answered, sleep(timeoutMs).then(() => Promise.reject(new Error('no answer')))]);
    }
    return true;
  } catch {
    return false;
  } finally {
    ws.close();
  }
}

/** Lines in a file (a log), or null when there is none. */
export function countLines(path) {
  if (!path || !existsSync(path)) return null;
  const buf = readFileSync(path);
  let n = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

/** What the report says about the machine. */
export function machine() {
  const read = (f) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
  const cpuinfo = read('/proc/cpuinfo');
  const memKB = Number(/^MemTotal:\s+(\d+)/m.exec(read('/proc/meminfo'))?.[1] ?? 0);
  const nproc = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout?.trim());
  return {
    nproc: nproc || cpus().length,
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown',
    memGB: Math.round((memKB / 1024 / 1024) * 10) / 10,
    node: process.version,
    kernel: spawnSync('uname', ['-sr'], { encoding: 'utf8' }).stdout?.trim(),
    vm: /^flags\s*:.*\bhypervisor\b/m.test(cpuinfo),
  };
}

/** Busy and total jiffies per core (and steal), from /proc/stat; {} without it. */
export function coreTicks() {
  const out = {};
  try {
    for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
      const m = /^cpu(\d+)\s+(.+)$/.exec(line);
      if (!m) continue;
      const v = m[2].trim().split(/\s+/).map(Number);
      const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
      out[m[1]] = { busy: total - v[3] - v[4], total, steal: v[7] ?? 0 };
    }
  } catch {
    // no /proc/stat: no contention figures
  }
  return out;
}

/**
 * Child processes that die with the orchestrator, however it ends (exit, SIGINT, SIGTERM):
 * `spawnNode` starts node (under `taskset -c CPU` when `pin`; taskset execs node, so the pid is
 * node's own) and tracks it; `killAll` kills every tracked child, then runs `cleanup`.
 */
export function childProcesses(what, cleanup = () => {}) {
  const children = new Set();
  const killAll = () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    cleanup();
  };
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: stopping ${what} and its processes\n`);
      killAll();
      process.exit(130);
    });
  }
  const spawnNode = (pin, cpu, args, options) => {
    const child = pin
      ? spawn('taskset', ['-c', String(cpu), process.execPath, ...args], options)
      : spawn(process.execPath, args, options);
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };
  return { spawnNode, killAll };
}
