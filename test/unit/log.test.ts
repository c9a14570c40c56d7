import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isoTimeMemo, LogLine } from '../../src/log.js';
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
