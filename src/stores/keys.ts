// Every store key is built here. Format: <prefix>v1:<kind>:... with a Redis Cluster hash tag
// `{...}` where one script touches several keys, so they land in one slot. Team names and model
// names cannot contain braces (config validation), so a tag is never broken by user data.
import { hash } from 'node:crypto';

export const DEFAULT_KEY_PREFIX = 'tg:';

export interface Keys {
  readonly prefix: string;
  /** A bucket of a team's scope: team, team+key, team+model share the team's slot. */
  teamBucket(team: string, name: string): string;
  /** A deployment's own upstream quota. */
  deploymentBucket(deploymentId: string, name: string): string;
  /** The set of a team's in-flight requests. */
  teamConcurrency(team: string): string;
  /** Marks a deployment in cooldown (its value: the end, epoch ms). */
  deploymentCooldown(deploymentId: string): string;
  /**
   * A cache entry. No hash tag on purpose: entries are single-key, and tagging them by team
   * would pile one team's whole cache into one cluster slot.
   */
  cacheEntry(scope: string, digest: string): string;
  /** A team's counters (spend, tokens, requests) for one period: `d:2026-11-25`, `m:2026-11`, ... */
  teamSpend(team: string, period: string): string;
  /** The lease set of a team's budget reservations (with its `:amounts` hash). */
  teamBudgetLeases(team: string): string;
  /** A team's runtime key records and revocations (admin/key-records.ts). */
  teamKeyRecords(team: string): string;
}

export function createKeys(prefix: string = DEFAULT_KEY_PREFIX): Keys {
  const p = `${prefix}v1:`;
  return {
    prefix,
    teamBucket: (team, name) => `${p}bucket:{t:${team}}:${name}`,
    // Deployment ids hold provider and model names; a digest keeps the tag short and brace-free.
    deploymentBucket: (id, name) => `${p}bucket:{d:${shortDigest(id)}}:${name}`,
    teamConcurrency: (team) => `${p}inflight:{t:${team}}`,
    deploymentCooldown: (id) => `${p}cooldown:{d:${shortDigest(id)}}`,
    cacheEntry: (scope, digest) => `${p}cache:${scope}:${digest}`,
    teamSpend: (team, period) => `${p}spend:{t:${team}}:${period}`,
    teamBudgetLeases: (team) => `${p}budget-leases:{t:${team}}`,
    teamKeyRecords: (team) => `${p}keys:{t:${team}}`,
  };
}

function shortDigest(s: string): string {
  return hash('sha256', s, 'hex').slice(0, 16);
}
