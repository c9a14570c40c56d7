import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Pool } from 'undici';
import { Canceller, onAbort } from '../../../src/pipeline/abort.js';

describe('Canceller', () => {
  it('aborts once, with the first reason, and tells each listener once', () => {
    const c = new Canceller();
    let calls = 0;
    const stop = onAbort(c, () => calls++);
    let other = 0;
    onAbort(c, () => other++);
    stop();
    c.abort('first');
    c.abort('second');
    assert.equal(c.aborted, true);
    assert.equal(c.reason, 'first');
    assert.equal(calls, 0, 'a listener that stopped watching is not called');
    assert.equal(other, 1);
  });

  it('is a signal undici honours: aborting it ends a pending request with its reason', async (t) => {
    const server = createServer(() => {
      /* never answers */
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as { port: number };
    const pool = new Pool(`http://127.0.0.1:${port}`);
    t.after(async () => {
      await pool.destroy();
      server.closeAllConnections();
      server.close();
    });
    const c = new Canceller();
    const pending = pool.request({ method: 'GET', path: '/', signal: c });
    setTimeout(() => c.abort(new Error('client left')), 20);
    await assert.rejects(pending, /client left/);
    assert.equal(c.listenerCount('abort'), 0, 'undici removed its listener');
  });
});
