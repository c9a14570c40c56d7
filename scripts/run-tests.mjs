#!/usr/bin/env node
// Runs the test suite with Node's built-in runner. Node 20's `--test` takes no globs, so
// this finds the files itself. It also makes sure a Redis is reachable for the tests:
// REDIS_URL if given, else 127.0.0.1:6379 if it answers, else a redis-server it starts on
// a free port (and stops afterwards).
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

const roots = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-'));

function findTests(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...findTests(full));
    else if (name.endsWith('.test.ts')) out.push(full);
  }
  return out;
}

function canConnect(port, host) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host });
    s.setTimeout(500);
    s.once('connect', () => {
      s.end();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
  });
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

async function ensureRedis() {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL, stop: () => {} };
  if (await canConnect(6379, '127.0.0.1')) return { url: 'redis://127.0.0.1:6379', stop: () => {} };
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: 'ignore',
    },
  );
  child.on('error', (err) => {
    console.error(`Could not start redis-server (${err.message}). Install Redis or set REDIS_URL.`);
    process.exit(1);
  });
  for (let i = 0; i < 50 && !(await canConnect(port, '127.0.0.1')); i++)
    await new Promise((r) => setTimeout(r, 100));
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

const files = (roots.length ? roots : ['test'])
  .flatMap((r) => (r.endsWith('.ts') ? [r] : findTests(r)))
  .sort();
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
const redis = await ensureRedis();
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', ...extra, ...files],
  {
    stdio: 'inherit',
    env: { ...process.env, REDIS_URL: redis.url, LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent' },
  },
);
child.on('exit', (code, signal) => {
  redis.stop();
  process.exit(code ?? (signal ? 1 : 0));
});
