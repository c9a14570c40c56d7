// Process entry for `tollgate serve`: environment (.env), config, logger, listen, and a
// graceful shutdown on SIGTERM/SIGINT: /readyz turns 503, no new connections are accepted,
// in-flight requests and streams finish up to server.shutdownTimeoutMs, then exit 0.
import dotenv from 'dotenv';
import { buildApp, tokenCountingOf } from './app.js';
import { TokenCounter } from './accounting/tokens.js';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './log.js';
import { createTeamRegistry } from './teams/registry.js';

export interface ServeOptions {
  configPath?: string;
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export async function serve(options: ServeOptions = {}): Promise<void> {
  dotenv.config({ quiet: true });
  let config: Config;
  try {
    config = loadConfig(options.configPath === undefined ? {} : { path: options.configPath });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tollgate: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const log = createLogger(config.server.logLevel);

  if (createTeamRegistry(config).anonymous) {
    if (!isLoopback(config.server.host)) {
      process.stderr.write(
        `tollgate: refusing to listen on ${config.server.host} with no teams configured: that would be an open relay ` +
          `for the gateway's provider keys. Add teams with keys (npx tollgate keys create --team NAME) or bind to 127.0.0.1.\n`,
      );
      process.exit(1);
    }
    log.warn(
      'NO TEAMS CONFIGURED: every request is accepted without a key as team "local". Serving on loopback only. ' +
        'Add teams with keys (npx tollgate keys create --team NAME) before exposing the gateway.',
    );
  }
  if (Object.keys(config.providers).length === 0) {
    log.warn(
      'no providers configured: set OPENAI_API_KEY (or write config/tollgate.yaml); every model request will 404',
    );
  }

  // Encodings load at start-up, not on a request, and before the store connects: loading blocks
  // the event loop for about a second, which would time out a connection being set up.
  const tokens = tokenCountingOf(await TokenCounter.create({ log }));
  const gateway = buildApp(config, { log, tokens });
  if (!(await gateway.storeReady())) {
    log.warn(
      { policy: config.store.redis?.onUnavailable },
      'Redis not reachable at start: starting under the outage policy',
    );
  }
  const address = await gateway.app.listen({ host: config.server.host, port: config.server.port });
  log.info(
    { address, config: config.source, providers: Object.keys(config.providers), store: config.store.type },
    'tollgate listening',
  );

  let stopping = false;
  const shutdown = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info(
      { signal, deadlineMs: config.server.shutdownTimeoutMs },
      'shutting down: draining in-flight requests',
    );
    const deadline = setTimeout(() => {
      log.warn('shutdown deadline reached: closing the connections that are still open');
      gateway.app.server.closeAllConnections();
    }, config.server.shutdownTimeoutMs);
    deadline.unref();
    gateway
      .close()
      .catch((err: unknown) => log.error({ err }, 'error while closing'))
      .finally(() => {
        clearTimeout(deadline);
        log.info('stopped');
        log.flush(() => process.exit(0));
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
