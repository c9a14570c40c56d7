// Maps a presented key to its team. Lookups go by the key's sha256 digest in a Map, so the
// plaintext is never stored and no byte-by-byte comparison leaks timing about stored keys.
import type { TeamConfig } from '../config/schema.js';
import { hashKey } from './keys.js';

export interface Team {
  readonly name: string;
  /** Model names the team may use; `allModels` means every configured model. */
  readonly models: ReadonlySet<string>;
  readonly allModels: boolean;
}

export interface Principal {
  team: Team;
  keyId: string;
}

export interface TeamRegistry {
  /** True when no teams are configured: the gateway runs open, on loopback only. */
  readonly anonymous: boolean;
  authenticate(presentedKey: string | undefined): Principal | undefined;
  teams(): Team[];
}

export const ANONYMOUS_TEAM_NAME = 'local';

function toTeam(t: Pick<TeamConfig, 'name' | 'models'>): Team {
  return Object.freeze({
    name: t.name,
    models: new Set(t.models.filter((m) => m !== '*')),
    allModels: t.models.includes('*'),
  });
}

export function teamMayUse(team: Team, model: string): boolean {
  return team.allModels || team.models.has(model);
}

export function createTeamRegistry(config: {
  teams: readonly (Pick<TeamConfig, 'name' | 'models'> & {
    keys: readonly { id: string; sha256: string }[];
  })[];
}): TeamRegistry {
  const byHash = new Map<string, Principal>();
  const teams = config.teams.map((t) => {
    const team = toTeam(t);
    for (const k of t.keys) byHash.set(k.sha256, { team, keyId: k.id });
    return team;
  });
  if (teams.length === 0) {
    const local: Principal = {
      team: Object.freeze({ name: ANONYMOUS_TEAM_NAME, models: new Set<string>(), allModels: true }),
      keyId: 'anonymous',
    };
    return { anonymous: true, authenticate: () => local, teams: () => [local.team] };
  }
  return {
    anonymous: false,
    // Always by hash, never by the key itself: no plaintext key is kept, even in memory, and a
    // lookup compares only digests of what was presented (which tell a guesser nothing about a
    // stored key), so its timing leaks nothing. The sha256 costs about a microsecond.
    authenticate(presentedKey) {
      if (!presentedKey) return undefined;
      return byHash.get(hashKey(presentedKey));
    },
    teams: () => teams,
  };
}
