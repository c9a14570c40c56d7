// Builds one Provider per configured provider at start-up (each with its own connection pool).
// This is the only place that maps a provider `type` to its implementation.
import type { Config } from '../config/schema.js';
import { createAnthropicProvider } from './anthropic/provider.js';
import { createOpenAIProvider } from './openai/provider.js';
import type { Provider } from './types.js';

export interface ProviderRegistry {
  get(name: string): Provider | undefined;
  close(): Promise<void>;
}

export function createProviderRegistry(config: Pick<Config, 'providers'>): ProviderRegistry {
  const providers = new Map<string, Provider>();
  for (const p of Object.values(config.providers)) {
    switch (p.type) {
      case 'openai':
      case 'azure':
        providers.set(p.name, createOpenAIProvider(p));
        break;
      case 'anthropic':
        providers.set(p.name, createAnthropicProvider(p));
        break;
      default: {
        // A new provider type must be wired here: the compiler says so.
        const unknown: never = p.type;
        throw new Error(`unknown provider type ${String(unknown)}`);
      }
    }
  }
  return {
    get: (name) => providers.get(name),
    close: async () => {
      await Promise.all([...providers.values()].map((p) => p.close()));
    },
  };
}
