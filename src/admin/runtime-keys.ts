// A TeamRegistry that also knows the keys created at runtime through the admin API and refuses
// revoked keys (runtime or config). Authentication stays synchronous: it reads an in-process
// view, a Map by sha256 like the config registry's, rebuilt whenever a record arrives. Records
// come from the shared store (key-records.ts) every `refreshMs`, and at once from the admin call
// this replica served; other replicas learn of a change within refreshMs plus one store round trip.
// The view only grows (records are never removed), so a reload merges and cannot undo a change
// made here while it was in flight. When the store is away, the last known view keeps serving.
import type { Logger } from 'pino';
import { DEFAULT_KEY_REFRESH_MS } from '../config/defaults.js';
import type { TeamConfig } from '../config/schema.js';
import { StoreUnavailableError } from '../stores/store.js';
import { hashKey, mintKey } from '../teams/keys.js';
import { createTeamRegistry, type Principal, type Team, type TeamRegistry } from '../teams/registry.js';
import type { KeyRecordStore, RuntimeKeyRecord, TeamKeyRecords } from './key-records.js';

/** The id a caller may choose for a key: the config schema's pattern. */
export const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;

export interface DynamicTeamRegistryOptions {
  /** How often the view is reloaded from the store. */
  refreshMs?: number;
  log?: Pick<Logger, 'info' | 'warn'>;
  now?: () => number;
}

/** What the admin API shows of a key: never its hash, never the key. */
export interface KeyInfo {
  id: string;
  source: 'config' | 'runtime';
  /** Epoch ms; runtime keys only. */
  createdAt: number | undefined;
  /** Epoch ms of the earliest revocation; undefined while the key is valid. */
  revokedAt: number | undefined;
}

export type CreateKeyResult =
  | { kind: 'created'; id: string; key: string; createdAt: number; stored: boolean }
  | { kind: 'team_not_found' }
  | { kind: 'id_taken' };

export type RevokeKeyResult =
  | { kind: 'revoked'; id: string; revokedAt: number; stored: boolean; already: boolean }
  | { kind: 'team_not_found' }
  | { kind: 'key_not_found' };

export interface DynamicTeamRegistry extends TeamRegistry {
  /** The configured team of that name. */
  team(name: string): Team | undefined;
  /** The team's keys, config keys first, then runtime keys by creation. */
  listKeys(team: string): KeyInfo[];
  /**
   * Mints a key for `team` (with the chosen id, or one derived from its hash). Reads the team's
   * records first, so an id is checked against what every replica wrote; that read rejects with
   * StoreUnavailableError when the store is away, and then nothing is written.
   */
  createKey(team: string, id?: string): Promise<CreateKeyResult>;
  /**
   * Revokes at once on this replica, then writes the revocation for the others (`stored` false:
   * it is queued or lost; retry). Already revoked: answers the first revocation, writes nothing.
   */
  revokeKey(team: string, id: string): Promise<RevokeKeyResult>;
  /** Reloads every team's records from the store; rejects when the store cannot answer. */
  refresh(): Promise<void>;
  /** Starts the periodic reload (a timer that does not keep the process alive). */
  start(): void;
  close(): void;
}

type RegistryConfig = {
  teams: readonly (Pick<TeamConfig, 'name' | 'models'> & {
    keys: readonly { id: string; sha256: string }[];
  })[];
};

const revokedKey = (team: string, id: string): string => `${team}\n${id}`;

export function createDynamicTeamRegistry(
  config: RegistryConfig,
  records: KeyRecordStore,
  options: DynamicTeamRegistryOptions = {},
): DynamicTeamRegistry {
  const base = createTeamRegistry(config);
  const now = options.now ?? Date.now;
  const refreshMs = options.refreshMs ?? DEFAULT_KEY_REFRESH_MS;
  const log = options.log;
  const teamsByName = new Map(base.teams().map((t) => [t.name, t]));
  const configKeys = new Map(config.teams.map((t) => [t.name, t.keys]));
  const teamNames = base.anonymous ? [] : config.teams.map((t) => t.name);

  /** Runtime keys by sha256. */
  const runtime = new Map<string, RuntimeKeyRecord>();
  /** `team\nid` -> earliest revocation. */
  const revoked = new Map<string, number>();
  let byHash = new Map<string, Principal>();

  function rebuild(): void {
    const next = new Map<string, Principal>();
    for (const t of config.teams) {
      const team = teamsByName.get(t.name)!;
      for (const k of t.keys)
        if (!revoked.has(revokedKey(t.name, k.id))) next.set(k.sha256, { team, keyId: k.id });
    }
    for (const r of runtime.values()) {
      const team = teamsByName.get(r.team);
      if (team && !revoked.has(revokedKey(r.team, r.id)) && !next.has(r.sha256))
        next.set(r.sha256, { team, keyId: r.id });
    }
    byHash = next;
  }

  /** Adds what is new; true when the view changed. */
  function merge(loaded: readonly TeamKeyRecords[]): boolean {
    let changed = false;
    for (const { keys, revocations } of loaded) {
      for (const k of keys) {
        if (!teamsByName.has(k.team)) continue;
        const held = runtime.get(k.sha256);
        if (!held || k.createdAt < held.createdAt) {
          runtime.set(k.sha256, k);
          changed = true;
        }
      }
      for (const r of revocations) {
        const at = revoked.get(revokedKey(r.team, r.id));
        if (at === undefined || r.revokedAt < at) {
          revoked.set(revokedKey(r.team, r.id), r.revokedAt);
          changed = true;
        }
      }
    }
    if (changed) rebuild();
    return changed;
  }

  function idsOf(team: string): Set<string> {
    const ids = new Set((configKeys.get(team) ?? []).map((k) => k.id));
    for (const r of runtime.values()) if (r.team === team) ids.add(r.id);
    for (const key of revoked.keys()) if (key.startsWith(`${team}\n`)) ids.add(key.slice(team.length + 1));
    return ids;
  }

  let timer: NodeJS.Timeout | undefined;
  let refreshing = false;
  let failing = false;

  async function tick(): Promise<void> {
    if (refreshing) return;
    refreshing = true;
    try {
      await registry.refresh();
      if (failing) log?.info('runtime keys: reloaded from the store again');
      failing = false;
    } catch (err) {
      // Logged once per outage: the last known keys keep serving meanwhile.
      if (!failing)
        log?.warn({ err }, 'runtime keys: cannot reload from the store; serving the last known keys');
      failing = true;
    } finally {
      refreshing = false;
    }
  }

  const registry: DynamicTeamRegistry = {
    anonymous: base.anonymous,
    authenticate(presentedKey) {
      if (base.anonymous) return base.authenticate(presentedKey);
      if (!presentedKey) return undefined;
      // By hash only, as the config registry (teams/registry.ts): no plaintext key kept.
      return byHash.get(hashKey(presentedKey));
    },
    teams: () => base.teams(),
    team: (name) => (base.anonymous ? undefined : teamsByName.get(name)),

    listKeys(team) {
      const revokedAt = (id: string): number | undefined => revoked.get(revokedKey(team, id));
      const fromConfig: KeyInfo[] = (configKeys.get(team) ?? []).map((k) => ({
        id: k.id,
        source: 'config',
        createdAt: undefined,
        revokedAt: revokedAt(k.id),
      }));
      const fromRuntime: KeyInfo[] = [...runtime.values()]
        .filter((r) => r.team === team)
        .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
        .map((r) => ({ id: r.id, source: 'runtime', createdAt: r.createdAt, revokedAt: revokedAt(r.id) }));
      return [...fromConfig, ...fromRuntime];
    },

    async createKey(team, id) {
      if (!registry.team(team)) return { kind: 'team_not_found' };
      merge(await records.load([team]));
      const taken = idsOf(team);
      if (id !== undefined && taken.has(id)) return { kind: 'id_taken' };
      let minted = mintKey();
      while (id === undefined && taken.has(minted.id)) minted = mintKey();
      const record: RuntimeKeyRecord = { team, id: id ?? minted.id, sha256: minted.sha256, createdAt: now() };
      const stored = await records.addKey(record);
      merge([{ keys: [record], revocations: [] }]);
      return { kind: 'created', id: record.id, key: minted.key, createdAt: record.createdAt, stored };
    },

    async revokeKey(team, id) {
      if (!registry.team(team)) return { kind: 'team_not_found' };
      try {
        merge(await records.load([team]));
      } catch (err) {
        // A revocation must not wait for the store: go on with what this replica knows.
        if (!(err instanceof StoreUnavailableError)) throw err;
      }
      const known =
        (configKeys.get(team) ?? []).some((k) => k.id === id) ||
        [...runtime.values()].some((r) => r.team === team && r.id === id);
      if (!known) return { kind: 'key_not_found' };
      const earlier = revoked.get(revokedKey(team, id));
      if (earlier !== undefined)
        return { kind: 'revoked', id, revokedAt: earlier, stored: true, already: true };
      const revocation = { team, id, revokedAt: now() };
      merge([{ keys: [], revocations: [revocation] }]);
      let stored = false;
      try {
        stored = await records.addRevocation(revocation);
      } catch (err) {
        log?.warn(
          { err, team, keyId: id },
          'runtime keys: revocation not written to the store; revoked here only',
        );
      }
      return { kind: 'revoked', id, revokedAt: revocation.revokedAt, stored, already: false };
    },

    async refresh() {
      merge(await records.load(teamNames));
    },

    start() {
      if (timer !== undefined || teamNames.length === 0) return;
      timer = setInterval(() => void tick(), refreshMs);
      timer.unref();
    },

    close() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
  rebuild();
  return registry;
}
