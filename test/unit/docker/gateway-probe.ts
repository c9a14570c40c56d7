// What the gateway really answers on the paths the packaging files probe: the app built by
// buildApp (every route and hook), asked with inject before and after draining starts. A probe
// path that is not a route, or one that does not turn 503 on SIGTERM, shows up here.
import { buildApp } from '../../../src/app.js';
import { parseConfig } from '../../../src/config/load.js';
import type { Config } from '../../../src/config/schema.js';
import { createStore } from '../../../src/stores/create-store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { sharedTokenCounter } from '../../helpers/start-gateway.js';

export interface ProbeAnswers {
  /** Status per path while serving. */
  serving: Record<string, number>;
  /** Status per path once draining has begun (what SIGTERM sets first). */
  draining: Record<string, number>;
}

/**
 * Status codes of GET `paths`, with `config` (default: an empty config) but always on the memory
 * store: the routes do not depend on the store, and a unit test reaches no Redis.
 */
export async function probeGateway(paths: string[], config?: Config): Promise<ProbeAnswers> {
  const cfg = config ?? parseConfig('{}', 'probe', {});
  const log = createLogSink().log;
  const store = createStore({ type: 'memory', redis: undefined, memoryCacheMaxBytes: 1 << 20 }, log);
  const gw = buildApp(cfg, { log, tokens: await sharedTokenCounter(), store });
  try {
    const ask = async () =>
      Object.fromEntries(
        await Promise.all(
          paths.map(async (url) => [url, (await gw.app.inject({ method: 'GET', url })).statusCode] as const),
        ),
      );
    const serving = await ask();
    gw.readiness.draining = true;
    const draining = await ask();
    return { serving, draining };
  } finally {
    await gw.close();
  }
}
