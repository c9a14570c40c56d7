// Route: the model the client asked for -> ordered candidate deployments (ctx.candidates).
// Reads ctx.team and ctx.model. A model the team may not use, or that no route serves, is a
// 404 model_not_found, exactly as OpenAI answers, so a team cannot probe what others use.
// Needs no store; it cannot fail on a dependency.
import type { Config, DeploymentConfig } from '../../config/schema.js';
import { errors } from '../../errors.js';
import { teamMayUse } from '../../teams/registry.js';
import type { Deployment, Stage } from '../types.js';

export function createRouteStage(config: Pick<Config, 'models'>): Stage {
  // Resolved once at start-up; only the wildcard route builds candidates per request.
  const named = new Map<string, Deployment[]>();
  for (const m of Object.values(config.models)) {
    if (m.name === '*') continue;
    named.set(
      m.name,
      m.deployments.map((d) => {
        const model = d.model ?? m.name;
        return withQuota({ id: `${d.provider}/${model}`, provider: d.provider, model }, d);
      }),
    );
  }
  const wildcard = config.models['*']?.deployments;

  return async function routeStage(ctx, next) {
    if (!teamMayUse(ctx.team, ctx.model)) throw errors.modelNotFound(ctx.model);
    const candidates =
      named.get(ctx.model) ??
      wildcard?.map((d) => {
        const model = d.model ?? ctx.model;
        return withQuota({ id: `${d.provider}/${model}`, provider: d.provider, model }, d);
      });
    if (!candidates) throw errors.modelNotFound(ctx.model);
    ctx.candidates = candidates;
    return next(ctx);
  };
}

function withQuota(dep: Deployment, d: DeploymentConfig): Deployment {
  if (d.rpm === undefined && d.tpm === undefined) return dep;
  return { ...dep, quota: { rpm: d.rpm, tpm: d.tpm } };
}
