// Provider: the innermost step, one upstream call to the first candidate. Reads
// ctx.candidates, sets ctx.deployment and counts the attempt. Upstream failures propagate as
// typed UpstreamErrors; retries and fallbacks across candidates belong to the attempts stage.
import { errors } from '../../errors.js';
import type { ProviderRegistry } from '../../providers/registry.js';
import type { Next } from '../types.js';

export function createProviderStage(providers: ProviderRegistry): Next {
  return async function providerStage(ctx) {
    const target = ctx.candidates[0];
    if (!target) throw errors.internal(new Error('provider stage reached with no candidate'));
    const provider = providers.get(target.provider);
    if (!provider) throw errors.internal(new Error(`no provider named ${target.provider}`));
    ctx.deployment = target;
    ctx.attempts += 1;
    return provider.call(ctx, target);
  };
}
