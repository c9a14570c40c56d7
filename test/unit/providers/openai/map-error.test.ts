import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mapUpstreamError, retryAfterMs, scrub } from '../../../../src/providers/openai/map-error.js';

describe('mapUpstreamError', () => {
  it('keeps status, type, code, param and the retry headers of an OpenAI error', () => {
    const e = mapUpstreamError(
      'openai',
      'sk-secret',
      429,
      { 'retry-after': '46', 'retry-after-ms': '45190', 'x-ratelimit-remaining-tokens': '0' },
      JSON.stringify({
        error: { message: 'Rate limit reached', type: 'tokens', param: null, code: 'rate_limit_exceeded' },
      }),
    );
    assert.equal(e.status, 429);
    assert.equal(e.type, 'tokens');
    assert.equal(e.code, 'rate_limit_exceeded');
    assert.equal(e.retryable, true);
    assert.equal(e.retryAfterMs, 45190);
    assert.deepEqual(e.headers, { 'retry-after': '46', 'retry-after-ms': '45190' });
  });

  it('turns 401 and 403 into 502 upstream_auth_failed', () => {
    for (const status of [401, 403]) {
      const e = mapUpstreamError(
        'openai',
        'sk-secret',
        status,
        {},
        '{"error":{"message":"Incorrect API key sk-secret"}}',
      );
      assert.equal(e.status, 502);
      assert.equal(e.code, 'upstream_auth_failed');
      assert.ok(!e.message.includes('sk-secret'));
    }
  });

  it('does not retry 400s and does retry 408, 409 and 5xx', () => {
    assert.equal(mapUpstreamError('p', undefined, 400, {}, '').retryable, false);
    for (const s of [408, 409, 500, 502, 503, 529])
      assert.equal(mapUpstreamError('p', undefined, s, {}, '').retryable, true);
  });

  it('copes with non-JSON bodies and drops header values that could inject', () => {
    const e = mapUpstreamError(
      'p',
      undefined,
      502,
      { 'retry-after': '1\r\nset-cookie: x' },
      '<html>bad gateway</html>',
    );
    assert.equal(e.status, 502);
    assert.equal(e.type, 'server_error');
    assert.match(e.message, /answered with status 502/);
    assert.deepEqual(e.headers, {});
  });
});

describe('retryAfterMs', () => {
  it('prefers retry-after-ms, then seconds, then an HTTP date', () => {
    assert.equal(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' }), 250);
    assert.equal(retryAfterMs({ 'retry-after': '2' }), 2000);
    const d = retryAfterMs({ 'retry-after': new Date(Date.now() + 5000).toUTCString() })!;
    assert.ok(d > 3000 && d <= 5000);
    assert.equal(retryAfterMs({}), undefined);
  });
});

describe('scrub', () => {
  it('removes the provider key, key-shaped tokens, bearer tokens and URL credentials', () => {
    const out = scrub(
      'key my-provider-key-123 and sk-proj-abcdEFGH1234 via https://u:p@host/x with Bearer abc.def',
      'my-provider-key-123',
    );
    assert.ok(!out.includes('my-provider-key-123'));
    assert.ok(!out.includes('sk-proj'));
    assert.ok(!out.includes('u:p@'));
    assert.ok(!out.includes('abc.def'));
  });
});
