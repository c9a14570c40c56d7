import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { isoTimeMemo, LineBatch, LogLine, type BatchSink } from '../../src/log.js';
import { createLogSink } from '../helpers/log-sink.js';

describe('logger', () => {
  it('redacts auth headers and api keys wherever a logged object carries them', async () => {
    const sink = createLogSink();
    sink.log.info({
      req: { headers: { authorization: 'Bearer tg-secret-1', 'x-api-key': 'tg-secret-2' } },
      headers: { authorization: 'Bearer sk-secret-3' },
      apiKey: 'sk-secret-4',
    });
    await sink.waitFor(() => true);
    const text = sink.text();
    for (const secret of ['tg-secret-1', 'tg-secret-2', 'sk-secret-3', 'sk-secret-4'])
      assert.ok(!text.includes(secret));
    assert.match(text, /\[redacted\]/);
  });
});

describe('isoTimeMemo', () => {
  it("gives pino's isoTime member for the current millisecond, formatted once per millisecond", (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 10, 25, 12, 0, 0, 5) });
    const first = isoTimeMemo();
    assert.equal(first, ',"time":"2026-11-25T12:00:00.005Z"');
    assert.equal(isoTimeMemo(), first);
    t.mock.timers.tick(1);
    assert.equal(isoTimeMemo(), ',"time":"2026-11-25T12:00:00.006Z"');
  });
});

describe('LogLine', () => {
  it('writes byte for byte the line pino writes for the same fields, child bindings included', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: Date.UTC(2026, 11, 7, 12, 0, 0, 5) });
    const sink = createLogSink();
    for (const log of [sink.log, sink.log.child({ worker: 3 })]) {
      const fields = {
        reqId: 'r-1',
        path: '/v1/chat/completions',
        model: 'weird "model"\n\u0001\u2028 ünïcode',
        stream: false,
        status: 200,
        latency_ms: 1.25,
        ratio: Number.NaN,
        cost_usd: null,
        nested: { a: [1, 'b'] },
        big: 12_345_678_901,
      };
      log.info(fields, 'request');
      new LogLine()
        .str('reqId', fields.reqId)
        .str('absent', undefined)
        .str('path', fields.path)
        .str('model', fields.model)
        .bool('stream', fields.stream)
        .num('status', fields.status)
        .num('latency_ms', fields.latency_ms)
        .num('ratio', fields.ratio)
        .any('cost_usd', fields.cost_usd)
        .any('nested', fields.nested)
        .any('big', fields.big)
        .any('gone', undefined)
        .info(log, 'request');
    }
    await sink.waitFor(() => sink.lines.length === 4);
    const raw = sink.text().split('\n');
    assert.equal(raw.length, 4);
    assert.equal(raw[1], raw[0]);
    assert.equal(raw[3], raw[2]);
    assert.match(raw[2]!, /"pid":\d+,"worker":3,/);
  });

  it('writes nothing when the logger is above info', async () => {
    const sink = createLogSink('warn');
    new LogLine().str('a', 'b').info(sink.log, 'request');
    sink.log.warn('marker');
    await sink.waitFor(() => true);
    assert.deepEqual(
      sink.lines.map((l) => l.msg),
      ['marker'],
    );
  });
});

/** A sink that records what it is handed and how it is flushed. */
function recordingSink(): BatchSink & { writes: string[]; flushes: number; syncFlushes: number } {
  return {
    writes: [],
    flushes: 0,
    syncFlushes: 0,
    write(data) {
      this.writes.push(data);
      return true;
    },
    flush(cb) {
      this.flushes++;
      cb?.();
    },
    flushSync() {
      this.syncFlushes++;
    },
  };
}

describe('LineBatch', () => {
  it('hands lines on joined, one string per batch, in order', () => {
    const sink = recordingSink();
    const lines = new LineBatch(sink, 10);
    try {
      lines.write('aaaa\n');
      lines.write('bbb\n');
      assert.deepEqual(sink.writes, [], 'below the batch size nothing is written');
      lines.write('cc\n');
      assert.deepEqual(sink.writes, ['aaaa\nbbb\ncc\n']);
      lines.write('a line longer than the batch\n');
      assert.deepEqual(sink.writes, ['aaaa\nbbb\ncc\n', 'a line longer than the batch\n']);
    } finally {
      lines.close();
    }
  });

  it('flush and flushSync pass the rest on first, then flush the sink', () => {
    const sink = recordingSink();
    const lines = new LineBatch(sink, 1024);
    try {
      lines.write('one\n');
      let called = 0;
      lines.flush(() => called++);
      assert.deepEqual(sink.writes, ['one\n']);
      assert.equal(sink.flushes, 1);
      assert.equal(called, 1);
      lines.write('two\n');
      lines.flushSync();
      assert.deepEqual(sink.writes, ['one\n', 'two\n']);
      assert.equal(sink.syncFlushes, 1);
      lines.flush();
      assert.deepEqual(sink.writes, ['one\n', 'two\n'], 'an empty batch is not written');
    } finally {
      lines.close();
    }
  });

  it('close passes the rest on and stops listening for the exit', () => {
    const before = process.listenerCount('exit');
    const sink = recordingSink();
    const lines = new LineBatch(sink, 1024);
    assert.equal(process.listenerCount('exit'), before + 1);
    lines.write('last\n');
    lines.close();
    assert.deepEqual(sink.writes, ['last\n']);
    assert.equal(process.listenerCount('exit'), before);
  });

  it("the gateway's stdout logger loses no line when the process exits without a flush", async () => {
    // 3,000 lines of ~100 bytes: nine 32 KiB batches written, the rest still batched at exit.
    const script = [
      "import { createLogger } from './src/log.ts';",
      "const log = createLogger('info');",
      "for (let i = 0; i < 3000; i++) log.info({ i, pad: 'x'.repeat(40) }, 'line');",
      'process.exit(0);',
    ].join('\n');
    const root = path.resolve(import.meta.dirname, '../..');
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => (out += s));
    const code = await new Promise((resolve) => child.once('close', resolve));
    assert.equal(code, 0);
    const seen = out
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { i: number }).i);
    assert.deepEqual(
      seen,
      Array.from({ length: 3000 }, (_, i) => i),
    );
  });
});
