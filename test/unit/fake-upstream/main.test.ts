// The standalone entry point: starts from command-line flags, announces its URL on one line, serves,
// and exits 0 on SIGTERM (how the demo and the benchmark drive it).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { readJson } from './helpers.js';
import type { ChatCompletion } from './helpers.js';

const MAIN = fileURLToPath(new URL('../../../src/fake-upstream/main.ts', import.meta.url));

void it('runs standalone until SIGTERM, then exits 0', async (t) => {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', MAIN, '--port', '0', '--host', '127.0.0.1', '--chunks', '3', '--latency-ms', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    out += d;
  });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(out);
    });
    child.once('exit', () => reject(new Error(`exited early: ${out}`)));
  });
  const m = /^fake upstream listening on (http:\/\/127\.0\.0\.1:(\d+)\/v1)\n$/.exec(line);
  assert.ok(m, line);

  const res = await fetch(`${m[1]}/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal((await readJson<ChatCompletion>(res)).choices[0]?.message.content, 'Hello from the');

  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
});
