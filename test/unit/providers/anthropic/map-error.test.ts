import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { mapAnthropicError, statusForErrorType } from '../../../../src/providers/anthropic/map-error.js';

const body = (name: string): string =>
  readFileSync(new URL(`../../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');
const errorBody = (type: string, message: string): string =>
  JSON.stringify({ type: 'error', error: { type, message } });

describe('mapAnthropicError', () => {
  it('turns 529 overloaded_error into a retryable 503 and keeps retry-after', () => {
    const e = mapAnthropicError(
      'anthropic',
      'sk-ant-k',
      529,
      { 'retry-after': '3' },
      body('error-overloaded.json'),
    );
    assert.equal(e.status, 503);
    assert.equal(e.upstreamStatus, 529);
    assert.equal(e.type, 'server_error');
    assert.equal(e.code, null);
    assert.equal(e.message, 'Overloaded');
    assert.equal(e.retryable, true);
    assert.equal(e.retryAfterMs, 3000);
    assert.deepEqual(e.headers, { 'retry-after': '3' });
  });

  it('turns 429 rate_limit_error into rate_limit_exceeded with the limited dimension and the wait', () => {
    const headers = {
      'retry-after': '20',
      'x-should-retry': 'true',
      'anthropic-ratelimit-input-tokens-remaining': '0',
    };
    const e = mapAnthropicError('anthropic', undefined, 429, headers, body('error-rate-limit.json'));
    assert.equal(e.status, 429);
    assert.equal(e.type, 'tokens');
    assert.equal(e.code, 'rate_limit_exceeded');
    assert.equal(e.retryable, true);
    assert.equal(e.retryAfterMs, 20_000);
    assert.deepEqual(e.headers, { 'retry-after': '20', 'x-should-retry': 'true' });
    const r = mapAnthropicError(
      'anthropic',
      undefined,
      429,
      { 'anthropic-ratelimit-requests-remaining': '0', 'retry-after-ms': '1500' },
      errorBody('rate_limit_error', 'Too many requests'),
    );
    assert.equal(r.type, 'requests');
    assert.equal(r.retryAfterMs, 1500);
  });

  it('turns 401 and 403 into 502 upstream_auth_failed: the gateway key, not the client', () => {
    for (const status of [401, 403]) {
      const e = mapAnthropicError(
        'anthropic',
        'sk-ant-secret',
        status,
        {},
        body('error-authentication.json'),
      );
      assert.equal(e.status, 502);
      assert.equal(e.code, 'upstream_auth_failed');
      assert.equal(e.retryable, false);
    }
  });

  it('keeps 400s as invalid_request_error and names an over-long prompt context_length_exceeded', () => {
    const e = mapAnthropicError('anthropic', undefined, 400, {}, body('error-prompt-too-long.json'));
    assert.equal(e.status, 400);
    assert.equal(e.type, 'invalid_request_error');
    assert.equal(e.code, 'context_length_exceeded');
    assert.equal(e.param, 'messages');
    assert.equal(e.retryable, false);
    const other = mapAnthropicError(
      'a',
      undefined,
      400,
      {},
      errorBody('invalid_request_error', 'messages: bad'),
    );
    assert.equal(other.code, null);
    assert.equal(other.message, 'messages: bad');
  });

  it('maps 404 model errors to model_not_found, 413 to request_too_large, 500 to a retryable 500', () => {
    const nf = mapAnthropicError('a', undefined, 404, {}, errorBody('not_found_error', 'model: claude-9'));
    assert.deepEqual(
      [nf.status, nf.code, nf.param, nf.type],
      [404, 'model_not_found', 'model', 'invalid_request_error'],
    );
    const big = mapAnthropicError(
      'a',
      undefined,
      413,
      {},
      errorBody('request_too_large', 'Request exceeds the maximum size'),
    );
    assert.deepEqual([big.status, big.code, big.retryable], [413, 'request_too_large', false]);
    const api = mapAnthropicError('a', undefined, 500, {}, errorBody('api_error', 'Internal server error'));
    assert.deepEqual([api.status, api.type, api.retryable], [500, 'server_error', true]);
  });

  it('scrubs keys from messages and copes with non-JSON bodies and unsafe header values', () => {
    const e = mapAnthropicError(
      'anthropic',
      'sk-ant-api03-secretsecret',
      400,
      {},
      errorBody('invalid_request_error', 'bad key sk-ant-api03-secretsecret here'),
    );
    assert.ok(!e.message.includes('secretsecret'));
    const html = mapAnthropicError('anthropic', undefined, 502, { 'retry-after': '1\r\nx: y' }, '<html>');
    assert.equal(html.status, 502);
    assert.match(html.message, /answered with status 502/);
    assert.deepEqual(html.headers, {});
  });

  it('knows the status of each error type, for error events inside a stream', () => {
    assert.equal(statusForErrorType('overloaded_error'), 529);
    assert.equal(statusForErrorType('rate_limit_error'), 429);
    assert.equal(statusForErrorType('invalid_request_error'), 400);
    assert.equal(statusForErrorType('something_new'), 500);
    assert.equal(statusForErrorType(undefined), 500);
    assert.equal(statusForErrorType('constructor'), 500);
  });
});
