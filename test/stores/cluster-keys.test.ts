// Redis Cluster runs a script only when all its keys live in one hash slot. keys.ts ensures
// that with hash tags; this computes slots exactly as Redis does (CRC16/XMODEM of the tag,
// modulo 16384) and checks that every key set one script call touches shares a slot, without a
// cluster. redis-cluster.test.ts checks the same on a real three-master cluster.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKeys } from '../../src/stores/keys.js';

/** CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster uses. */
function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** Redis's keyHashSlot: hash the text between the first `{` and the next `}`, if not empty. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open !== -1) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key)) % 16384;
}

describe('cluster hash slots of store keys', () => {
  it('computes slots as Redis does', () => {
    // The CRC16/XMODEM check value, and slots from the Redis Cluster specification and CLUSTER KEYSLOT.
    assert.equal(crc16(Buffer.from('123456789')), 0x31c3);
    assert.equal(keySlot('foo'), 12182);
    assert.equal(keySlot('bar'), 5061);
    assert.equal(keySlot('{user1000}.following'), keySlot('{user1000}.followers'));
    // Checked against CLUSTER KEYSLOT on Redis 7.0. An empty first tag does not count: the whole
    // key is hashed, even when a later tag follows.
    assert.equal(keySlot('tg:v1:bucket:{t:acme}:rpm'), 9557);
    assert.equal(keySlot('a{}b'), 13694);
    assert.equal(keySlot('{}{x}'), 3257);
  });

  it("puts all of a team's buckets and its slot set in one slot", () => {
    const keys = createKeys();
    for (const team of ['acme', 'team-with-dashes', 'Ünïcode team', 'x']) {
      const set = [
        keys.teamBucket(team, 'rpm'),
        keys.teamBucket(team, 'tpm'),
        keys.teamBucket(team, 'key:k_123:rpm'),
        keys.teamBucket(team, 'key:k_123:tpm'),
        keys.teamBucket(team, 'model:gpt-4o-mini:rpm'),
        keys.teamBucket(team, 'model:gpt-4o-mini:tpm'),
        keys.teamBucket(team, 'model:claude-3-5-sonnet:tpm'),
        keys.teamConcurrency(team),
      ];
      const slots = new Set(set.map(keySlot));
      assert.equal(slots.size, 1, `${team}: ${set.join(', ')}`);
    }
  });

  it("puts a deployment's rpm and tpm buckets in one slot, whatever its id holds", () => {
    const keys = createKeys('tg:prod:');
    for (const id of ['openai/gpt-4o', 'azure/{east}/gpt-4o', 'anthropic:claude-3-5-sonnet@eu']) {
      const a = keys.deploymentBucket(id, 'rpm');
      const b = keys.deploymentBucket(id, 'tpm');
      assert.equal(keySlot(a), keySlot(b), `${a} / ${b}`);
    }
  });

  it('spreads teams over slots rather than piling them on one', () => {
    const keys = createKeys();
    const slots = new Set(Array.from({ length: 50 }, (_, i) => keySlot(keys.teamBucket(`team-${i}`, 'rpm'))));
    assert.ok(slots.size > 40, `50 teams in ${slots.size} slots`);
  });
});
