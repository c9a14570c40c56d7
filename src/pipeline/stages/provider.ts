// Provider: the innermost step, one upstream call to ctx.deployment (chosen by the attempts
// stage). Upstream failures propagate as typed UpstreamErrors; retries and fallbacks across
// candidates belong to the attempts stage.
import { errors } from '../../errors.js';
import type { ProviderRegistry } from '../../providers/registry.js';
import type { Next } from '../types.js';

export function createProviderStage(providers: ProviderRegistry): Next {
  return async function providerStage(ctx) {
    const target = ctx.deployment;
    if (!target) throw errors.internal(new Error('provider stage reached with no deployment chosen'));
    const provider = providers.get(target.provider);
    if (!provider) throw errors.internal(new Error(`no provider named ${target.provider}`));
    return provider.call(ctx, target);
  };
}
