import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
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
