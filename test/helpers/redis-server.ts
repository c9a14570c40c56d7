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

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
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
    if (await canConnect(port)) return child;
    if (child.exitCode !== null || spawnError) break;
    await sleep(20);
  }
  throw new Error(
    `redis-server did not start on port ${port}` + (spawnError ? ` (${spawnError.message})` : ''),
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
