// Runtime team keys and revocations, kept in the shared store so every replica learns them. The
// Store has no generic records, so they ride on its integer counter hashes as a grow-only set:
// one hash per team, each record one field whose name carries the whole record and whose value
// is 1. Records are only ever added (a key is retired by adding its revocation), so concurrent
// writers never conflict, a repeated write changes nothing that matters, and readers can merge
// what they load into what they hold.
import type { Keys } from '../stores/keys.js';
import type { Store } from '../stores/store.js';

export interface RuntimeKeyRecord {
  team: string;
  id: string;
  /** sha256 hex of the key; the key itself is never stored. */
  sha256: string;
  /** Epoch ms. */
  createdAt: number;
}

/** Retires the key `id` of `team`, a runtime key or one from the config. */
export interface RevocationRecord {
  team: string;
  id: string;
  /** Epoch ms. */
  revokedAt: number;
}

export interface TeamKeyRecords {
  keys: RuntimeKeyRecord[];
  revocations: RevocationRecord[];
}

export interface KeyRecordStore {
  /** Every record of each team, in the order asked. Rejects when the store cannot answer. */
  load(teams: readonly string[]): Promise<TeamKeyRecords[]>;
  /**
   * Adds a record. Resolves true once it is in the shared store, false when the store only
   * queued it (an outage: it is written when the store is back). Rejects when it was not kept.
   */
  addKey(record: RuntimeKeyRecord): Promise<boolean>;
  addRevocation(record: RevocationRecord): Promise<boolean>;
}

/**
 * The store keys records need: the team's record hash (`tg:v1:keys:{t:<team>}`), and a lease set
 * of the same team for the settle call that adds to it (same hash tag, so one cluster slot).
 */
export type KeyRecordKeys = Pick<Keys, 'teamBudgetLeases'> & { teamKeyRecords(team: string): string };

/** Record hashes are meant to outlive the deployment; the store wants a TTL, so a century. */
export const KEY_RECORD_TTL_MS = 100 * 365 * 86_400_000;

const SHA256 = /^[0-9a-f]{64}$/;
const INTEGER = /^\d{1,16}$/;

// Field names. Team key ids match ^[A-Za-z0-9_-]{1,64}$ (config schema and the admin API), so
// `|` never occurs inside a part.
export function keyField(r: Pick<RuntimeKeyRecord, 'id' | 'sha256' | 'createdAt'>): string {
  return `key|${r.id}|${r.sha256}|${r.createdAt}`;
}

export function revocationField(r: Pick<RevocationRecord, 'id' | 'revokedAt'>): string {
  return `revoked|${r.id}|${r.revokedAt}`;
}

/** One team's hash back into records; fields it does not recognise are skipped. */
export function parseRecords(team: string, hash: Record<string, number>): TeamKeyRecords {
  const out: TeamKeyRecords = { keys: [], revocations: [] };
  for (const [f, n] of Object.entries(hash)) {
    if (!(n > 0)) continue;
    const parts = f.split('|');
    if (parts[0] === 'key' && parts.length === 4) {
      const [, id, sha256, at] = parts as [string, string, string, string];
      if (id && SHA256.test(sha256) && INTEGER.test(at))
        out.keys.push({ team, id, sha256, createdAt: Number(at) });
    } else if (parts[0] === 'revoked' && parts.length === 3) {
      const [, id, at] = parts as [string, string, string];
      if (id && INTEGER.test(at)) out.revocations.push({ team, id, revokedAt: Number(at) });
    }
  }
  return out;
}

export function createStoreKeyRecords(
  store: Pick<Store, 'settle' | 'readCounters'>,
  keys: KeyRecordKeys,
): KeyRecordStore {
  // settle with no lease id only adds; its lease set is the team's, so every key is in one slot.
  const add = async (team: string, field: string): Promise<boolean> => {
    const written = await store.settle(
      keys.teamBudgetLeases(team),
      [],
      [{ key: keys.teamKeyRecords(team), field, by: 1 }],
      KEY_RECORD_TTL_MS,
    );
    return written.length === 1;
  };
  return {
    async load(teams) {
      if (teams.length === 0) return [];
      const hashes = await store.readCounters(teams.map((t) => keys.teamKeyRecords(t)));
      return teams.map((t, i) => parseRecords(t, hashes[i] ?? {}));
    },
    addKey: (r) => add(r.team, keyField(r)),
    addRevocation: (r) => add(r.team, revocationField(r)),
  };
}
