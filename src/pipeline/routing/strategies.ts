// How a model's (or alias's) candidate deployments are ordered for one request. The first one
// is tried first; the rest are the fallbacks, in the order the same strategy prefers them.
// Every strategy is a pure function of the candidates, live stats and a random source, so
// tests can seed it. Ties keep the configured order.
import type { Deployment } from '../types.js';

export const STRATEGIES = [
  'priority',
  'weighted',
  'least-in-flight',
  'lowest-latency',
  'most-quota',
  'cheapest',
] as const;
export type Strategy = (typeof STRATEGIES)[number];

/** What the router knows about a deployment right now (local to this process). */
export interface RoutingStats {
  inFlight(deploymentId: string): number;
  /** Moving average of time to first token, undefined before the first sample. */
  ttftMs(deploymentId: string): number | undefined;
  /** Share of the deployment's quota left (0..1) at the last look; undefined without a quota. */
  quotaLeft(deploymentId: string): number | undefined;
}

export function orderCandidates(
  candidates: readonly Deployment[],
  strategy: Strategy,
  stats: RoutingStats,
  random: () => number = Math.random,
): Deployment[] {
  if (candidates.length <= 1) return [...candidates];
  switch (strategy) {
    case 'priority':
      return [...candidates];
    case 'weighted':
      return weightedOrder(candidates, random);
    case 'least-in-flight':
      return sortBy(candidates, (d) => stats.inFlight(d.id));
    case 'lowest-latency':
      // Unmeasured deployments go first, so each gets a sample.
      return sortBy(candidates, (d) => stats.ttftMs(d.id) ?? -1);
    case 'most-quota':
      // No quota configured counts as plenty.
      return sortBy(candidates, (d) => -(stats.quotaLeft(d.id) ?? 1));
    case 'cheapest':
      // Unpriced deployments last: a price we do not know is not a low price.
      return sortBy(candidates, (d) => blendedPrice(d) ?? Number.POSITIVE_INFINITY);
  }
}

/** Input and output price per million tokens, weighted 3:1 as typical chat traffic is. */
export function blendedPrice(d: Deployment): number | undefined {
  const p = d.prices;
  if (!p || p.inputPerMillion === undefined || p.outputPerMillion === undefined) return undefined;
  return (3 * p.inputPerMillion + p.outputPerMillion) / 4;
}

function sortBy(candidates: readonly Deployment[], score: (d: Deployment) => number): Deployment[] {
  return candidates
    .map((d, i) => ({ d, i, s: score(d) }))
    .sort((a, b) => a.s - b.s || a.i - b.i)
    .map((x) => x.d);
}

/** Sampling without replacement, each draw proportional to weight (weight 0: only as a last resort). */
function weightedOrder(candidates: readonly Deployment[], random: () => number): Deployment[] {
  const pool = candidates.map((d) => ({ d, w: Math.max(0, d.weight ?? 1) }));
  const out: Deployment[] = [];
  while (pool.length > 0) {
    const total = pool.reduce((sum, x) => sum + x.w, 0);
    let pick = 0;
    if (total > 0) {
      let r = random() * total;
      pick = pool.findIndex((x) => (r -= x.w) < 0);
      if (pick === -1) pick = pool.length - 1;
    }
    out.push(pool[pick]!.d);
    pool.splice(pick, 1);
  }
  return out;
}
