import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyOutputCap } from '../../../src/accounting/output-cap.js';
import { GatewayError } from '../../../src/errors.js';

const raw = (b: object) => Buffer.from(JSON.stringify(b));
const clamp = { maxOutputTokens: 200, onExceed: 'clamp' as const };

describe('output caps by tier', () => {
  it('leaves a request alone without a cap', () => {
    const body = { model: 'm', max_tokens: 5000 };
    const out = applyOutputCap('pro', { maxOutputTokens: undefined, onExceed: 'clamp' }, body, raw(body));
    assert.equal(out.body, body);
    assert.equal(out.header, undefined);
  });

  it('clamps max_tokens and max_completion_tokens above the cap, and says so', () => {
    const body = { model: 'm', max_tokens: 1000, max_completion_tokens: 150 };
    const out = applyOutputCap('free', clamp, body, raw(body));
    assert.deepEqual(out.body, { model: 'm', max_tokens: 200, max_completion_tokens: 150 });
    assert.deepEqual(JSON.parse(out.rawBody.toString()), out.body);
    assert.equal(out.header, '200; clamped from 1000');
    assert.equal(body.max_tokens, 1000, 'the original body is not mutated');
  });

  it('sets the cap when the request asks for nothing', () => {
    const body = { model: 'm' };
    const out = applyOutputCap('free', clamp, body, raw(body));
    assert.deepEqual(out.body, { model: 'm', max_completion_tokens: 200 });
    assert.equal(out.header, '200; applied');
  });

  it('keeps the bytes of a request within the cap', () => {
    const body = { model: 'm', max_tokens: 200 };
    const bytes = raw(body);
    const out = applyOutputCap('free', clamp, body, bytes);
    assert.equal(out.rawBody, bytes);
    assert.equal(out.header, '200; within');
  });

  it('refuses instead when the tier says reject, naming the field', () => {
    const body = { model: 'm', max_completion_tokens: 201 };
    assert.throws(
      () => applyOutputCap('free', { maxOutputTokens: 200, onExceed: 'reject' }, body, raw(body)),
      (err: unknown) =>
        err instanceof GatewayError &&
        err.status === 400 &&
        err.param === 'max_completion_tokens' &&
        /free/.test(err.message),
    );
  });
});
