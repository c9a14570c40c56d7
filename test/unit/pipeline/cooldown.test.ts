import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Cooldowns } from '../../../src/pipeline/routing/cooldown.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { createLogSink } from '../../helpers/log-sink.js';

describe('cooldowns', () => {
  const policy = { failures: 2, windowMs: 60_000, cooldownMs: 5_000 };

  it('starts after N failures within the window, and is seen by another replica on the same store', async () => {
    const store = new MemoryStore();
    const keys = createKeys(`tg:test:${Math.random()}:`);
    const here = new Cooldowns(store, keys, policy, createLogSink().log);
    const there = new Cooldowns(store, keys, policy, createLogSink().log);
    here.recordFailure('a/m');
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(here.remainingMs('a/m'), 0, 'one failure is not enough');
    here.recordFailure('a/m');
    await new Promise((r) => setTimeout(r, 5));
    assert.ok(here.remainingMs('a/m') > 4_000);
    // The other replica learns it on its next refresh (every second in the background).
    assert.equal(there.remainingMs('a/m'), 0);
    await there.refresh();
    assert.ok(there.remainingMs('a/m') > 4_000);
    here.close();
    there.close();
  });

  it('ends by itself, so the deployment is probed again', async () => {
    let now = 1_000_000;
    const cd = new Cooldowns(new MemoryStore(), createKeys(), policy, createLogSink().log, () => now);
    cd.start('b/m', 5_000, 'test');
    assert.equal(cd.remainingMs('b/m'), 5_000);
    now += 5_001;
    assert.equal(cd.remainingMs('b/m'), 0);
    cd.close();
  });
});
