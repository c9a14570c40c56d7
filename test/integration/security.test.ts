// Security settings through real HTTP: addresses that keep failing authentication are blocked
// for a while, and browsers on other origins get no CORS permission unless it is configured.
// (Keys stored as hashes, provider keys never in bodies or logs, and team isolation of cache,
// models and the admin API are in http-edges, cache-limits and admin.)
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const team = makeTeam('sec');

describe('security settings', () => {
  let fake: FakeUpstream;
  before(async () => {
    fake = await startFakeUpstream();
  });
  after(async () => {
    await fake.close();
  });

  const chat = (url: string, key: string, headers: Record<string, string> = {}) =>
    fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });

  describe('repeated failed authentication', () => {
    let gw: StartedGateway;
    before(async () => {
      gw = await startGateway(
        baseConfig(fake.url, [team], {
          server: { authFailures: { maxFailures: 3, windowSeconds: 60, blockSeconds: 1 } },
        }),
      );
    });
    after(async () => {
      await gw.close();
    });

    it('blocks the address after too many 401s, even for a valid key, then lets it back', async () => {
      for (let i = 0; i < 4; i++) {
        const res = await chat(gw.url, `tg-wrong-${i}`);
        assert.equal(res.status, 401, `attempt ${i + 1}`);
      }
      // Past the limit: refused whatever it sends, so a scanner cannot tell a hit from a miss.
      const blocked = await chat(gw.url, team.key);
      assert.equal(blocked.status, 429);
      const retryAfter = Number(blocked.headers.get('retry-after'));
      assert.ok(retryAfter >= 1 && retryAfter <= 1, `retry-after ${retryAfter}`);
      const body = (await blocked.json()) as { error: { code: string; type: string } };
      assert.equal(body.error.code, 'too_many_auth_failures');
      // Health checks are never blocked (a load balancer on the same address must see the truth).
      assert.equal((await fetch(`${gw.url}/healthz`)).status, 200);
      const line = await gw.logs.waitFor(
        (l) => l.msg === 'address blocked after repeated failed authentication',
      );
      assert.equal(line.ip, '127.0.0.1');
      assert.ok(!gw.logs.text().includes('tg-wrong-'), 'the refused keys are not logged');
      await new Promise((r) => setTimeout(r, 1100));
      assert.equal((await chat(gw.url, team.key)).status, 200, 'unblocked after blockSeconds');
    });
  });

  describe('CORS', () => {
    const preflight = (url: string, origin: string) =>
      fetch(`${url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization, content-type',
        },
      });

    it('is off by default: no browser origin gets permission', async () => {
      const gw = await startGateway(baseConfig(fake.url, [team]));
      try {
        const pre = await preflight(gw.url, 'https://app.example.com');
        assert.equal(pre.headers.get('access-control-allow-origin'), null);
        const res = await chat(gw.url, team.key, { origin: 'https://app.example.com' });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('access-control-allow-origin'), null);
      } finally {
        await gw.close();
      }
    });

    it('allows exactly the configured origins, exposing the rate-limit and request-id headers', async () => {
      const gw = await startGateway(
        baseConfig(fake.url, [team], { server: { cors: { origins: ['https://app.example.com'] } } }),
      );
      try {
        const pre = await preflight(gw.url, 'https://app.example.com');
        assert.ok(pre.status === 204 || pre.status === 200, `preflight ${pre.status}`);
        assert.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
        assert.match(pre.headers.get('access-control-allow-headers') ?? '', /authorization/i);
        assert.equal(pre.headers.get('access-control-max-age'), '600');
        const other = await preflight(gw.url, 'https://evil.example.net');
        assert.equal(other.headers.get('access-control-allow-origin'), null);
        const res = await chat(gw.url, team.key, { origin: 'https://app.example.com' });
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('access-control-allow-origin'), 'https://app.example.com');
        assert.match(res.headers.get('access-control-expose-headers') ?? '', /x-request-id/);
        assert.match(
          res.headers.get('access-control-expose-headers') ?? '',
          /x-ratelimit-remaining-requests/,
        );
      } finally {
        await gw.close();
      }
    });

    it('refuses credentials for every origin, and an origin that is not one', () => {
      const config = (cors: unknown) =>
        parseConfig(JSON.stringify({ ...baseConfig(fake.url, [team]), server: { cors } }), 'test', {});
      assert.throws(() => config({ origins: ['*'], credentials: true }), /server\.cors: credentials/);
      assert.throws(() => config({ origins: ['app.example.com/path'] }), /server\.cors/);
      assert.doesNotThrow(() => config({ origins: ['*'] }));
    });
  });
});
