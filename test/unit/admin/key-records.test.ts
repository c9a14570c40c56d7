// Runtime key records over the Store's counter hashes: the field encoding, and the same
// round trip on MemoryStore and on a real Redis (the settle script is what writes them), with
// the record hash and its lease set in one cluster slot.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import {
  createStoreKeyRecords,
  keyField,
  parseRecords,
  revocationField,
} from '../../../src/admin/key-records.js';
import { createRedisClient } from '../../../src/stores/connect.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { RedisStore } from '../../../src/stores/redis-store.js';
import type { Store } from '../../../src/stores/store.js';
import { mintKey } from '../../../src/teams/keys.js';
import {
  deleteKeysWithPrefix,
  randomKeyPrefix,
  redisUrl,
  waitUntilReady,
} from '../../stores/store.contract.js';
import { recordKeys } from './helpers.js';

describe('key record fields', () => {
  it('round-trips keys and revocations, and skips fields it does not know', () => {
    const k = mintKey();
    const hash: Record<string, number> = {
      [keyField({ id: 'k_one', sha256: k.sha256, createdAt: 1_700_000_000_000 })]: 1,
      [revocationField({ id: 'cfg-key', revokedAt: 1_700_000_500_000 })]: 2,
      'key|bad|not-a-hash|1': 1,
      'revoked|x|soon': 1,
      cost: 5,
      [keyField({ id: 'k_zero', sha256: k.sha256, createdAt: 1 })]: 0,
    };
    assert.deepEqual(parseRecords('search', hash), {
      keys: [{ team: 'search', id: 'k_one', sha256: k.sha256, createdAt: 1_700_000_000_000 }],
      revocations: [{ team: 'search', id: 'cfg-key', revokedAt: 1_700_000_500_000 }],
    });
  });
});

function roundTrip(
  name: string,
  open: () => Promise<{ store: Store; prefix: string; close(): Promise<void> }>,
) {
  describe(`key records on ${name}`, () => {
    let subject: Awaited<ReturnType<typeof open>>;
    before(async () => {
      subject = await open();
    });
    after(() => subject.close());

    it('stores keys and revocations per team and loads them back in the order asked', async () => {
      const records = createStoreKeyRecords(subject.store, recordKeys(subject.prefix));
      const k = mintKey();
      assert.equal(await records.addKey({ team: 'a', id: k.id, sha256: k.sha256, createdAt: 1_000 }), true);
      assert.equal(await records.addRevocation({ team: 'b', id: 'old', revokedAt: 2_000 }), true);
      // A repeated write (a retried call) changes nothing a reader sees.
      assert.equal(await records.addRevocation({ team: 'b', id: 'old', revokedAt: 2_000 }), true);
      const [b, a, none] = await records.load(['b', 'a', 'nobody']);
      assert.deepEqual(a, {
        keys: [{ team: 'a', id: k.id, sha256: k.sha256, createdAt: 1_000 }],
        revocations: [],
      });
      assert.deepEqual(b, { keys: [], revocations: [{ team: 'b', id: 'old', revokedAt: 2_000 }] });
      assert.deepEqual(none, { keys: [], revocations: [] });
      assert.deepEqual(await records.load([]), []);
    });
  });
}

roundTrip('MemoryStore', async () => {
  const store = new MemoryStore();
  return { store, prefix: 'tg:', close: () => store.close() };
});

roundTrip('Redis', async () => {
  const client = createRedisClient({ url: redisUrl(), commandTimeoutMs: 2_000, connectTimeoutMs: 2_000 });
  await waitUntilReady(client);
  const store = new RedisStore(client);
  const prefix = randomKeyPrefix();
  return {
    store,
    prefix,
    async close() {
      await deleteKeysWithPrefix(client as Redis, prefix);
      await store.close();
    },
  };
});

describe('key record store keys', () => {
  it("put a team's record hash beside its lease set, under the team's hash tag", () => {
    const keys = recordKeys('tg:');
    const tag = (k: string) => /\{[^}]+\}/.exec(k)?.[0];
    assert.equal(tag(keys.teamKeyRecords('search')), '{t:search}');
    assert.equal(tag(keys.teamKeyRecords('search')), tag(keys.teamBudgetLeases('search')));
  });
});
