// Route: the model the client asked for -> ordered candidate deployments (ctx.candidates).
// Reads ctx.team, ctx.model and ctx.headers. Routing rules may send the request to another
// model or alias (by team, tier, requested model, the x-tollgate-route header or a task
// header); the target's strategy orders its deployments, and the target's fallback models
// follow. A model the team may not use, or that nothing serves, is a 404 model_not_found,
// exactly as OpenAI answers, so a team cannot probe what others use. No store: it cannot fail.
import type { Config, DeploymentConfig, RouteRuleConfig, StrategyName } from '../../config/schema.js';
import { errors } from '../../errors.js';
import { teamMayUse } from '../../teams/registry.js';
import { orderCandidates, type RoutingStats } from '../routing/strategies.js';
import type { Deployment, PipelineContext, Stage } from '../types.js';

export const ROUTE_HEADER = 'x-tollgate-route';

interface Route {
  deployments: Deployment[];
  strategy: StrategyName;
  fallbacks: string[];
  contextFallbacks: string[];
}

export function createRouteStage(
  config: Pick<Config, 'models' | 'aliases' | 'routing' | 'teams'>,
  stats: RoutingStats,
  random: () => number = Math.random,
): Stage {
  // Resolved once at start-up; only the wildcard route builds deployments per request.
  const routes = new Map<string, Route>();
  for (const m of Object.values(config.models)) {
    if (m.name.endsWith('*')) continue;
    routes.set(m.name, {
      deployments: m.deployments.map((d) => toDeployment(d, d.model ?? m.name)),
      strategy: m.strategy,
      fallbacks: m.fallbacks,
      contextFallbacks: m.contextFallbacks,
    });
  }
  for (const a of Object.values(config.aliases)) {
    routes.set(a.name, {
      deployments: a.models.flatMap((m) => routes.get(m)?.deployments ?? []),
      strategy: a.strategy,
      fallbacks: [],
      contextFallbacks: [],
    });
  }
  // Prefix routes, longest prefix first; '*' (the empty prefix) last.
  const wildcards = Object.values(config.models)
    .filter((m) => m.name.endsWith('*'))
    .map((m) => ({ prefix: m.name.slice(0, -1), model: m }))
    .sort((x, y) => y.prefix.length - x.prefix.length);
  const tiers = new Map(config.teams.map((t) => [t.name, t.tier]));
  const rules = config.routing.rules;

  return async function routeStage(ctx, next) {
    if (!teamMayUse(ctx.team, ctx.model)) throw errors.modelNotFound(ctx.model);
    const target =
      rules.length > 0 ? (ruleTarget(rules, ctx, tiers.get(ctx.team.name)) ?? ctx.model) : ctx.model;
    const wildcard = routes.has(target)
      ? undefined
      : wildcards.find((w) => target.startsWith(w.prefix))?.model;
    const route =
      routes.get(target) ??
      (wildcard && {
        deployments: wildcard.deployments.map((d) => toDeployment(d, d.model ?? target)),
        strategy: wildcard.strategy,
        fallbacks: wildcard.fallbacks,
        contextFallbacks: wildcard.contextFallbacks,
      });
    if (!route) throw errors.modelNotFound(ctx.model);
    if (target !== ctx.model) ctx.logFields.route = target;
    let candidates = orderCandidates(route.deployments, route.strategy, stats, random);
    const append = (names: string[], contextOnly: boolean): void => {
      for (const f of names) {
        const fb = routes.get(f);
        if (!fb) continue;
        const seen = new Set(candidates.map((d) => d.id));
        const more = orderCandidates(fb.deployments, fb.strategy, stats, random).filter(
          (d) => !seen.has(d.id),
        );
        candidates = candidates.concat(contextOnly ? more.map((d) => ({ ...d, contextOnly: true })) : more);
      }
    };
    append(route.fallbacks, false);
    append(route.contextFallbacks, true);
    ctx.candidates = candidates;
    return next(ctx);
  };
}

/** The first rule whose every condition holds names the target. */
function ruleTarget(
  rules: RouteRuleConfig[],
  ctx: PipelineContext,
  tier: string | undefined,
): string | undefined {
  for (const { when, use } of rules) {
    if (when.teams && !when.teams.includes(ctx.team.name)) continue;
    if (when.tiers && (tier === undefined || !when.tiers.includes(tier))) continue;
    if (when.models && !when.models.includes(ctx.model)) continue;
    if (when.route !== undefined && header(ctx, ROUTE_HEADER) !== when.route) continue;
    if (when.headers && !Object.entries(when.headers).every(([k, v]) => header(ctx, k) === v)) continue;
    return use;
  }
  return undefined;
}

function header(ctx: PipelineContext, name: string): string | undefined {
  const v = ctx.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function toDeployment(d: DeploymentConfig, model: string): Deployment {
  const dep: Deployment = { id: `${d.provider}/${model}`, provider: d.provider, model, weight: d.weight };
  if (d.rpm !== undefined || d.tpm !== undefined) dep.quota = { rpm: d.rpm, tpm: d.tpm };
  if (d.prices)
    dep.prices = { inputPerMillion: d.prices.inputPerMillion, outputPerMillion: d.prices.outputPerMillion };
  if (d.contextWindow !== undefined) dep.contextWindow = d.contextWindow;
  if (d.maxOutputTokens !== undefined) dep.maxOutputTokens = d.maxOutputTokens;
  if (d.timeouts) dep.timeouts = d.timeouts;
  return dep;
}
