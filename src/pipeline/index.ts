// The request path, outermost stage first. Composed once at start-up, never per request.
// Later stages slot in here in this order: accounting, budget, cache, limits, route,
// attempts, provider (see DESIGN.md).
import type { Config } from '../config/schema.js';
import type { ProviderRegistry } from '../providers/registry.js';
import { createProviderStage } from './stages/provider.js';
import { createRouteStage } from './stages/route.js';
import type { Next, Stage } from './types.js';

export interface PipelineDeps {
  config: Config;
  providers: ProviderRegistry;
}

export function createPipeline({ config, providers }: PipelineDeps): Next {
  return compose([createRouteStage(config)], createProviderStage(providers));
}

/** Folds stages into one Next: stages[0] runs first and calls into stages[1], ... then `last`. */
export function compose(stages: Stage[], last: Next): Next {
  return stages.reduceRight<Next>((next, stage) => (ctx) => stage(ctx, next), last);
}
