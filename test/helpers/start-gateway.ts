// Starts a real gateway on 127.0.0.1:0 for integration tests, from a config object that goes
// through the same YAML parsing and validation as a real config file.
import { stringify } from 'yaml';
import { TokenCounter } from '../../src/accounting/tokens.js';
import { buildApp, tokenCountingOf, type AppDeps, type Gateway } from '../../src/app.js';
import type { TokenCounting } from '../../src/pipeline/stages/accounting.js';
import { parseConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { mintKey } from '../../src/teams/keys.js';
import { createLogSink, type LogSink } from './log-sink.js';

export interface StartedGateway {
  url: string;
  baseURL: string;
  gateway: Gateway;
  config: Config;
  logs: LogSink;
  close(): Promise<void>;
}

let counter: Promise<TokenCounting> | undefined;

/** One TokenCounter per test process, never closed (its idle workers do not hold the process). */
export function sharedTokenCounter(): Promise<TokenCounting> {
  counter ??= TokenCounter.create().then((c) => {
    const t = tokenCountingOf(c);
    return { countChat: (m, b) => t.countChat(m, b), countText: (m, text) => t.countText(m, text) };
  });
  return counter;
}

export async function startGateway(
  configObject: Record<string, unknown>,
  env: NodeJS.ProcessEnv = {},
  deps: Pick<AppDeps, 'store'> = {},
): Promise<StartedGateway> {
  const config = parseConfig(stringify(configObject), 'test', env);
  const logs = createLogSink();
  // As `tollgate serve` does, the encodings load before the store connects; one counter serves
  // every gateway of a test process (loading costs about a second of blocked event loop).
  const gateway = buildApp(config, { ...deps, log: logs.log, tokens: await sharedTokenCounter() });
  await gateway.storeReady();
  const address = await gateway.app.listen({ host: '127.0.0.1', port: 0 });
  return { url: address, baseURL: `${address}/v1`, gateway, config, logs, close: () => gateway.close() };
}

export interface TestTeam {
  name: string;
  key: string;
  keyId: string;
  entry: { name: string; keys: { id: string; sha256: string }[]; models: string[] };
}

export function makeTeam(name: string, models: string[] = ['*']): TestTeam {
  const k = mintKey();
  return { name, key: k.key, keyId: k.id, entry: { name, keys: [{ id: k.id, sha256: k.sha256 }], models } };
}

/** The usual test config: one OpenAI-type provider at `upstreamUrl` and a few models. */
export function baseConfig(
  upstreamUrl: string,
  teams: TestTeam[],
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    timeouts: { connectMs: 1000, firstByteMs: 5000, idleMs: 5000, totalMs: 20000 },
    providers: {
      fake: { type: 'openai', baseUrl: upstreamUrl, apiKey: 'sk-test-provider-secret-0123456789' },
    },
    models: {
      'gpt-4o-mini': { deployments: [{ provider: 'fake' }] },
      'gpt-4o': { deployments: [{ provider: 'fake', model: 'gpt-4o-2024-08-06' }] },
      'text-embedding-3-small': { deployments: [{ provider: 'fake' }] },
    },
    teams: teams.map((t) => t.entry),
    ...extra,
  };
}
