// A Redis Cluster of the test's own: three masters, no replicas, on free loopback ports, each
// node in a temporary directory of its own (its nodes.conf), joined by
// `redis-cli --cluster create`. Starting takes one to two seconds, most of it redis-cli waiting
// for the nodes to agree. stop() kills the nodes and removes the directories; process exit does
// the same for a run that dies before its `after`.
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, stopRedisServer } from './redis-server.js';

export interface ClusterNode {
  host: string;
  port: number;
}

export interface StartedRedisCluster {
  /** The masters, each holding a third of the slots. */
  nodes: ClusterNode[];
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
/** Redis talks to its peers on port + 10000 (the cluster bus), which must be free too. */
const BUS_PORT_OFFSET = 10_000;
/** Milliseconds a node may be unreachable before it is failed; small, but not so small that a loaded CI machine fails a healthy node. */
const NODE_TIMEOUT_MS = 2_000;

const dirs = new Set<string>();
process.once('exit', () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

export async function startRedisCluster(masters = 3): Promise<StartedRedisCluster> {
  const children: ChildProcess[] = [];
  const own: string[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(stopRedisServer));
    for (const dir of own) {
      rmSync(dir, { recursive: true, force: true });
      dirs.delete(dir);
    }
  };
  try {
    const nodes: ClusterNode[] = [];
    for (let i = 0; i < masters; i++) nodes.push({ host: HOST, port: await freeClusterPort(nodes) });
    // allSettled: on a failure, every node that did start is in `children` before stop() runs.
    const started = await Promise.allSettled(
      nodes.map(async ({ port }) => {
        const dir = mkdtempSync(path.join(tmpdir(), `tollgate-redis-cluster-${port}-`));
        own.push(dir);
        dirs.add(dir);
        const child = await startRedisServer(port, {
          cwd: dir,
          args: [
            '--dir',
            dir,
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            'nodes.conf',
            '--cluster-node-timeout',
            String(NODE_TIMEOUT_MS),
          ],
        });
        children.push(child);
      }),
    );
    for (const r of started) if (r.status === 'rejected') throw r.reason;
    await run('redis-cli', [
      '--cluster',
      'create',
      ...nodes.map((n) => `${n.host}:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await Promise.all(nodes.map((n) => waitForClusterOk(n, masters)));
    return { nodes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A free port whose bus port (+10000) is free too, and that no node of this cluster uses. */
async function freeClusterPort(taken: ClusterNode[]): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await freePort();
    const bus = port + BUS_PORT_OFFSET;
    const clash = taken.some((n) => [n.port, n.port + BUS_PORT_OFFSET].some((p) => p === port || p === bus));
    if (bus <= 65_535 && !clash && (await isFree(bus))) return port;
  }
  throw new Error('no free port pair (port and port + 10000) for a Redis Cluster node');
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, HOST, () => srv.close(() => resolve(true)));
  });
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve();
    });
  });
}

/** Resolves once `node` reports cluster_state:ok and knows all `masters` nodes. */
async function waitForClusterOk(node: ClusterNode, masters: number, timeoutMs = 10_000): Promise<void> {
  const client = new Redis({ host: node.host, port: node.port, lazyConnect: true, maxRetriesPerRequest: 0 });
  client.on('error', () => {});
  const deadline = Date.now() + timeoutMs;
  let info = '';
  try {
    await client.connect();
    for (;;) {
      info = String(await client.call('CLUSTER', 'INFO'));
      if (info.includes('cluster_state:ok') && info.includes(`cluster_known_nodes:${masters}\r`)) return;
      if (Date.now() > deadline) break;
      await sleep(25);
    }
  } finally {
    client.disconnect();
  }
  throw new Error(`cluster node ${node.port} not ok after ${timeoutMs} ms:\n${info}`);
}
