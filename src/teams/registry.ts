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

const RECENT_KEYS = 10_000;

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
  // Recently seen keys skip the hash: a bounded map, cleared when full (keys are few per team).
  const recent = new Map<string, Principal | undefined>();
  return {
    anonymous: false,
    authenticate(presentedKey) {
      if (!presentedKey) return undefined;
      if (recent.has(presentedKey)) return recent.get(presentedKey);
      const principal = byHash.get(hashKey(presentedKey));
      // Unknown keys are not remembered: a flood of random keys must not evict the real ones.
      if (principal) {
        if (recent.size >= RECENT_KEYS) recent.clear();
        recent.set(presentedKey, principal);
      }
      return principal;
    },
    teams: () => teams,
  };
}
