// UpstreamClient: the per-call timeouts a deployment may set, including its own connect timeout,
// which undici only takes per pool.
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ProviderConfig } from '../../../src/config/schema.js';
import { Canceller } from '../../../src/pipeline/abort.js';
import { UpstreamClient } from '../../../src/providers/upstream-client.js';

describe('UpstreamClient', () => {
  let server: Server;
  let config: ProviderConfig;
  before(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('{"ok":true}'));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    config = {
      name: 'p',
      type: 'openai',
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
      apiKey: 'sk-test',
      headers: {},
      timeouts: { connectMs: 1000, firstByteMs: 2000, idleMs: 2000, totalMs: 5000 },
      connections: null,
      maxResponseBytes: 1 << 20,
      apiVersion: undefined,
    };
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("takes a deployment's own timeouts, with the total bounded by the request's deadline", () => {
    const client = new UpstreamClient(config);
    assert.deepEqual(client.timeoutsFor({}, undefined), { totalMs: 5000 });
    const own = { timeouts: { connectMs: 50, firstByteMs: 300, idleMs: 400, totalMs: 9000 } };
    assert.deepEqual(client.timeoutsFor(own, undefined), {
      connectMs: 50,
      firstByteMs: 300,
      idleMs: 400,
      totalMs: 9000,
    });
    const t = client.timeoutsFor(own, Date.now() + 1000);
    assert.ok(t.totalMs !== undefined && t.totalMs <= 1000 && t.totalMs > 900, String(t.totalMs));
  });

  it('sends a call with its own connect timeout through a pool made for that timeout', async () => {
    const client = new UpstreamClient(config);
    const call = async (connectMs?: number) => {
      const res = await client.request({
        path: '/chat/completions',
        headers: { 'content-type': 'application/json' },
        body: '{}',
        signal: new Canceller(),
        ...(connectMs !== undefined ? { connectMs } : {}),
      });
      const text = await res.body.text();
      res.done();
      return text;
    };
    assert.equal(await call(), '{"ok":true}');
    assert.equal(await call(1000), '{"ok":true}', "the provider's own value: its pool");
    assert.equal(client.poolCount, 1);
    assert.equal(await call(250), '{"ok":true}');
    assert.equal(await call(250), '{"ok":true}');
    assert.equal(client.poolCount, 2, 'one more pool for 250 ms, reused');
    await client.close();
  });
});
