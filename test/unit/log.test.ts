import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isoTimeMemo } from '../../src/log.js';
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
