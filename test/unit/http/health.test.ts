import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildApp } from '../../../src/app.js';
import { parseConfig } from '../../../src/config/load.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { sharedTokenCounter } from '../../helpers/start-gateway.js';

describe('health routes', () => {
  it('/readyz turns 503 once draining starts while /healthz stays 200', async () => {
    const gw = buildApp(parseConfig('{}', 't', {}), {
      log: createLogSink().log,
      tokens: await sharedTokenCounter(),
    });
    assert.equal((await gw.app.inject({ url: '/readyz' })).statusCode, 200);
    gw.readiness.draining = true;
    const ready = await gw.app.inject({ url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    assert.deepEqual(ready.json(), { status: 'draining' });
    assert.equal((await gw.app.inject({ url: '/healthz' })).statusCode, 200);
    await gw.close();
  });

  it('answers requests that arrive while draining with 503 shutting_down in OpenAI shape', async () => {
    const gw = buildApp(parseConfig('{}', 't', {}), {
      log: createLogSink().log,
      tokens: await sharedTokenCounter(),
    });
    gw.readiness.draining = true;
    const res = await gw.app.inject({ url: '/v1/models' });
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers.connection, 'close');
    assert.equal(res.json().error.code, 'shutting_down');
    await gw.close();
  });
});
