// A redis-server of the test's own, on its own port, so a test can stop and restart it (outage
// tests) without touching the shared Redis the rest of the suite uses.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The pid of the redis-server answering on `port`, or undefined when none answers. A restarted
 * server must be checked to be ours: while the port was free, another test process (files run
 * in parallel) may have started a redis-server of its own on it.
 */
function serverPid(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let reply = '';
    const done = (pid: number | undefined) => {
      s.destroy();
      resolve(pid);
    };
    s.setTimeout(1000, () => done(undefined));
    s.once('connect', () => s.write('INFO server\r\n'));
    s.on('data', (d) => {
      reply += d.toString('latin1');
      const m = /process_id:(\d+)/.exec(reply);
      if (m) done(Number(m[1]));
    });
    s.once('error', () => done(undefined));
  });
}

const servers = new Set<ChildProcess>();
// Belt and braces for a run that dies before `after`: never leave a redis-server behind.
process.once('exit', () => {
  for (const child of servers) child.kill('SIGKILL');
});

/**
 * Starts redis-server on `port` (loopback, nothing persisted) and resolves once it accepts
 * connections. `args` are further options (`--cluster-enabled yes`, ...); `cwd` is where it
 * writes its files.
 */
export async function startRedisServer(
  port: number,
  options: { args?: string[]; cwd?: string } = {},
): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      ...(options.args ?? []),
    ],
    { stdio: 'ignore', ...(options.cwd !== undefined ? { cwd: options.cwd } : {}) },
  );
  let spawnError: Error | undefined;
  child.once('error', (err) => (spawnError = err));
  servers.add(child);
  child.once('exit', () => servers.delete(child));
  for (let i = 0; i < 100; i++) {
    const pid = await serverPid(port);
    if (pid === child.pid) return child;
    if (child.exitCode !== null || spawnError) break;
    await sleep(20);
  }
  child.kill('SIGKILL');
  const other = await serverPid(port);
  throw new Error(
    `redis-server did not start on port ${port}` +
      (spawnError ? ` (${spawnError.message})` : '') +
      (other !== undefined ? ` (another redis-server, pid ${other}, holds the port)` : ''),
  );
}

export async function stopRedisServer(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

/** Stops every redis-server started here that is still running. */
export async function stopAllRedisServers(): Promise<void> {
  await Promise.all([...servers].map(stopRedisServer));
}
