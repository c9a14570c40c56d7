import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hashKey, keyIdFromHash, mintKey } from '../../../src/teams/keys.js';
import { createTeamRegistry, teamMayUse } from '../../../src/teams/registry.js';

describe('team keys', () => {
  it('mints distinct high-entropy keys whose id derives from the hash', () => {
    const a = mintKey();
    const b = mintKey();
    assert.notEqual(a.key, b.key);
    assert.match(a.key, /^tg-[A-Za-z0-9_-]{32}$/);
    assert.equal(a.sha256, hashKey(a.key));
    assert.equal(a.id, keyIdFromHash(a.sha256));
    assert.ok(!a.key.includes(a.id.slice(2)));
  });
});

describe('team registry', () => {
  const k1 = mintKey();
  const k2 = mintKey();
  const registry = createTeamRegistry({
    teams: [
      { name: 'search', keys: [{ id: k1.id, sha256: k1.sha256 }], models: ['gpt-4o-mini'] },
      { name: 'ops', keys: [{ id: k2.id, sha256: k2.sha256 }], models: ['*'] },
    ],
  });

  it('finds the team of a key by its hash', () => {
    assert.equal(registry.authenticate(k1.key)?.team.name, 'search');
    assert.equal(registry.authenticate(k1.key)?.keyId, k1.id);
    assert.equal(registry.authenticate(k2.key)?.team.name, 'ops');
    assert.equal(registry.authenticate('tg-unknown'), undefined);
    assert.equal(registry.authenticate(undefined), undefined);
    assert.equal(registry.anonymous, false);
  });

  it('does not accept the stored hash itself as a key', () => {
    assert.equal(registry.authenticate(k1.sha256), undefined);
  });

  it('checks allowed models, with * allowing all', () => {
    const search = registry.authenticate(k1.key)!.team;
    const ops = registry.authenticate(k2.key)!.team;
    assert.equal(teamMayUse(search, 'gpt-4o-mini'), true);
    assert.equal(teamMayUse(search, 'gpt-4o'), false);
    assert.equal(teamMayUse(ops, 'anything'), true);
  });

  it('with no teams, accepts any request as the anonymous local team', () => {
    const open = createTeamRegistry({ teams: [] });
    assert.equal(open.anonymous, true);
    assert.equal(open.authenticate(undefined)?.team.name, 'local');
  });
});
