// The dynamic team registry: config keys and runtime keys authenticate synchronously from an
// in-process view; a change made here applies at once, one made by another replica after the
// next reload; revocations refuse config keys too; and the store being away never breaks auth.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createStoreKeyRecords,
  type KeyRecordStore,
  type TeamKeyRecords,
} from '../../../src/admin/key-records.js';
import { createDynamicTeamRegistry } from '../../../src/admin/runtime-keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { StoreUnavailableError } from '../../../src/stores/store.js';
import { mintKey } from '../../../src/teams/keys.js';
import { recordKeys } from './helpers.js';

const cfgKey = mintKey();
const opsKey = mintKey();
const config = {
  teams: [
    { name: 'search', keys: [{ id: 'cfg', sha256: cfgKey.sha256 }], models: ['gpt-4o-mini'] },
    { name: 'ops', keys: [{ id: opsKey.id, sha256: opsKey.sha256 }], models: ['*'] },
  ],
};

function replicas(n: number, options: { refreshMs?: number; now?: () => number } = {}) {
  const store = new MemoryStore();
  const records = createStoreKeyRecords(store, recordKeys());
  return Array.from({ length: n }, () => createDynamicTeamRegistry(config, records, options));
}

/** A record store whose calls fail as an unreachable store's do, when `down` is set. */
function flakyRecords(inner: KeyRecordStore) {
  const state = { down: false };
  const guard = <T>(call: () => Promise<T>): Promise<T> =>
    state.down ? Promise.reject(new StoreUnavailableError('Redis is not ready')) : call();
  const records: KeyRecordStore = {
    load: (teams) => guard(() => inner.load(teams)),
    addKey: (r) => guard(() => inner.addKey(r)),
    addRevocation: (r) => guard(() => inner.addRevocation(r)),
  };
  return { records, state };
}

describe('dynamic team registry', () => {
  it('authenticates config keys as the config registry does', () => {
    const [reg] = replicas(1);
    assert.equal(reg!.anonymous, false);
    assert.equal(reg!.authenticate(cfgKey.key)?.team.name, 'search');
    assert.equal(reg!.authenticate(cfgKey.key)?.keyId, 'cfg');
    assert.equal(reg!.authenticate(opsKey.key)?.team.name, 'ops');
    assert.equal(reg!.authenticate('tg-unknown'), undefined);
    assert.equal(reg!.authenticate(cfgKey.sha256), undefined, 'the hash is not a key');
    assert.equal(reg!.authenticate(undefined), undefined);
    assert.deepEqual(
      reg!.teams().map((t) => t.name),
      ['search', 'ops'],
    );
  });

  it('accepts a created key at once on the replica that made it, and on another after a reload', async () => {
    const [a, b] = replicas(2);
    const created = await a!.createKey('search');
    assert.equal(created.kind, 'created');
    if (created.kind !== 'created') return;
    assert.match(created.key, /^tg-/);
    assert.match(created.id, /^k_[0-9a-f]{10}$/);
    assert.equal(created.stored, true);
    // 1. This replica: immediately.
    assert.equal(a!.authenticate(created.key)?.keyId, created.id);
    assert.equal(a!.authenticate(created.key)?.team.name, 'search');
    // 2. The other: not before its reload, then yes.
    assert.equal(b!.authenticate(created.key), undefined);
    await b!.refresh();
    assert.equal(b!.authenticate(created.key)?.keyId, created.id);
  });

  it('refuses a revoked key at once here (despite the recent-keys memo), and on another replica after a reload', async () => {
    const [a, b] = replicas(2);
    const created = await a!.createKey('ops', 'ci-runner');
    assert.equal(created.kind, 'created');
    if (created.kind !== 'created') return;
    await b!.refresh();
    assert.ok(a!.authenticate(created.key));
    assert.ok(b!.authenticate(created.key));
    const revoked = await a!.revokeKey('ops', 'ci-runner');
    assert.equal(revoked.kind, 'revoked');
    assert.equal(a!.authenticate(created.key), undefined);
    assert.ok(b!.authenticate(created.key), 'b has not reloaded yet');
    await b!.refresh();
    assert.equal(b!.authenticate(created.key), undefined);
  });

  it('revokes config keys by id, and answers a second revocation with the first', async () => {
    let t = 1_000;
    const [a, b] = replicas(2, { now: () => t });
    assert.ok(a!.authenticate(cfgKey.key));
    const first = await a!.revokeKey('search', 'cfg');
    assert.deepEqual(first, { kind: 'revoked', id: 'cfg', revokedAt: 1_000, stored: true, already: false });
    assert.equal(a!.authenticate(cfgKey.key), undefined);
    t = 2_000;
    const again = await b!.revokeKey('search', 'cfg');
    assert.deepEqual(again, { kind: 'revoked', id: 'cfg', revokedAt: 1_000, stored: true, already: true });
    assert.equal(b!.authenticate(cfgKey.key), undefined, 'b read the revocation before answering');
    assert.ok(b!.authenticate(opsKey.key), "another team's key is untouched");
  });

  it('lists config keys then runtime keys, by id only, with their revocation', async () => {
    let t = 5_000;
    const [a] = replicas(1, { now: () => t++ });
    await a!.createKey('search', 'second');
    await a!.createKey('search', 'first-made-later');
    await a!.revokeKey('search', 'second');
    const list = a!.listKeys('search');
    assert.deepEqual(
      list.map((k) => [k.id, k.source, k.createdAt, k.revokedAt]),
      [
        ['cfg', 'config', undefined, undefined],
        ['second', 'runtime', 5_000, 5_002],
        ['first-made-later', 'runtime', 5_001, undefined],
      ],
    );
    assert.ok(!JSON.stringify(list).includes(cfgKey.sha256));
  });

  it('refuses an id the team has or had, config, runtime or revoked, and unknown teams', async () => {
    const [a, b] = replicas(2);
    assert.deepEqual(await a!.createKey('search', 'cfg'), { kind: 'id_taken' });
    await a!.createKey('search', 'mine');
    await a!.revokeKey('search', 'mine');
    // b never reloaded: createKey reads the team's records first.
    assert.deepEqual(await b!.createKey('search', 'mine'), { kind: 'id_taken' });
    const elsewhere = await b!.createKey('ops', 'mine');
    assert.equal(elsewhere.kind, 'created', 'ids are per team');
    assert.deepEqual(await a!.createKey('nobody'), { kind: 'team_not_found' });
    assert.deepEqual(await a!.revokeKey('nobody', 'x'), { kind: 'team_not_found' });
    assert.deepEqual(await a!.revokeKey('search', 'never-was'), { kind: 'key_not_found' });
  });

  it('reloads on its own every refreshMs once started', async () => {
    const [a, b] = replicas(2, { refreshMs: 20 });
    b!.start();
    try {
      const created = await a!.createKey('search');
      if (created.kind !== 'created') throw new Error(created.kind);
      for (let i = 0; i < 50 && !b!.authenticate(created.key); i++) await sleep(10);
      assert.ok(b!.authenticate(created.key));
    } finally {
      b!.close();
    }
  });

  it('keeps serving the last known keys while the store is away; a revocation still applies here', async () => {
    const store = new MemoryStore();
    const { records, state } = flakyRecords(createStoreKeyRecords(store, recordKeys()));
    const reg = createDynamicTeamRegistry(config, records);
    const created = await reg.createKey('search', 'before-outage');
    if (created.kind !== 'created') throw new Error(created.kind);
    state.down = true;
    await assert.rejects(reg.refresh(), StoreUnavailableError);
    await assert.rejects(reg.createKey('search'), StoreUnavailableError, 'nothing is minted blind');
    assert.ok(reg.authenticate(created.key));
    assert.ok(reg.authenticate(cfgKey.key));
    const revoked = await reg.revokeKey('search', 'cfg');
    assert.equal(revoked.kind, 'revoked');
    if (revoked.kind === 'revoked') assert.equal(revoked.stored, false, 'the caller learns it is local only');
    assert.equal(reg.authenticate(cfgKey.key), undefined);
  });

  it('does not lose a change made here while a slower reload was in flight', async () => {
    const store = new MemoryStore();
    const inner = createStoreKeyRecords(store, recordKeys());
    let release!: () => void;
    let stale: TeamKeyRecords[] | undefined;
    const records: KeyRecordStore = {
      ...inner,
      async load(teams) {
        // The first load reads now and answers late, after the revocation below.
        if (stale === undefined) {
          stale = await inner.load(teams);
          await new Promise<void>((r) => (release = r));
          return stale;
        }
        return inner.load(teams);
      },
    };
    const reg = createDynamicTeamRegistry(config, records);
    const reload = reg.refresh();
    await sleep(5);
    await reg.revokeKey('search', 'cfg');
    release();
    await reload;
    assert.equal(reg.authenticate(cfgKey.key), undefined);
  });

  it('with no teams configured, stays the open anonymous registry and manages no keys', async () => {
    const reg = createDynamicTeamRegistry(
      { teams: [] },
      createStoreKeyRecords(new MemoryStore(), recordKeys()),
    );
    assert.equal(reg.anonymous, true);
    assert.equal(reg.authenticate(undefined)?.team.name, 'local');
    assert.deepEqual(await reg.createKey('local'), { kind: 'team_not_found' });
    await reg.refresh();
  });
});
