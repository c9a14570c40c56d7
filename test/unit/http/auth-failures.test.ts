import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthFailureLimiter } from '../../../src/http/auth-failures.js';

function limiter(maxFailures = 3, maxAddresses?: number) {
  let t = 1_000_000;
  const l = new AuthFailureLimiter({
    maxFailures,
    windowMs: 60_000,
    blockMs: 300_000,
    now: () => t,
    ...(maxAddresses ? { maxAddresses } : {}),
  });
  return { l, advance: (ms: number) => (t += ms) };
}

describe('AuthFailureLimiter', () => {
  it('blocks an address past maxFailures within the window, for blockMs, then lets it try again', () => {
    const { l, advance } = limiter();
    for (let i = 0; i < 3; i++) assert.equal(l.failed('10.0.0.1'), false);
    assert.equal(l.blockedFor('10.0.0.1'), 0);
    assert.equal(l.failed('10.0.0.1'), true, 'the fourth failure blocks');
    assert.equal(l.blockedFor('10.0.0.1'), 300_000);
    assert.equal(l.blockedFor('10.0.0.2'), 0, 'other addresses are not affected');
    advance(299_999);
    assert.equal(l.blockedFor('10.0.0.1'), 1);
    advance(1);
    assert.equal(l.blockedFor('10.0.0.1'), 0);
    assert.equal(l.failed('10.0.0.1'), false, 'a fresh window after the block');
  });

  it('counts failures per window: slow failures never block', () => {
    const { l, advance } = limiter();
    for (let i = 0; i < 20; i++) {
      assert.equal(l.failed('10.0.0.1'), false);
      advance(25_000);
    }
    assert.equal(l.blockedFor('10.0.0.1'), 0);
  });

  it('is off with maxFailures 0, and remembers a bounded number of addresses', () => {
    const off = limiter(0).l;
    for (let i = 0; i < 100; i++) off.failed('10.0.0.1');
    assert.equal(off.blockedFor('10.0.0.1'), 0);
    const { l } = limiter(1, 2);
    l.failed('a');
    l.failed('a');
    assert.ok(l.blockedFor('a') > 0);
    // Two newer addresses push the oldest out: memory stays bounded under a spray of addresses.
    l.failed('b');
    l.failed('c');
    assert.equal(l.blockedFor('a'), 0);
  });
});
