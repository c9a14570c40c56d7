// Process entry for `tollgate serve`: environment (.env), config, logger, listen, and a
// graceful shutdown on SIGTERM/SIGINT: /readyz turns 503, no new connections are accepted,
// in-flight requests and streams finish up to server.shutdownTimeoutMs, then exit 0.
//
// With `--workers N` (or server.workers / TOLLGATE_WORKERS) this process becomes a node:cluster
// primary instead (cluster/primary.ts): it forks N workers, each of which runs this same entry
// and serves as a single process does, on the shared port. The primary loads no gateway code
// (the imports below that it does not need are dynamic), so it stays small.
import cluster from 'node:cluster';
import dotenv from 'dotenv';
import { ConfigError, loadConfig } from './config/load.js';
import type { Config } from './config/schema.js';
import { createLogger } from './log.js';
import { createTeamRegistry } from './teams/registry.js';

export interface ServeOptions {
  configPath?: string;
  /** Worker processes (the --workers flag, already parsed); wins over server.workers. */
  workers?: number;
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
  const anonymous = createTeamRegistry(config).anonymous;
  if (anonymous && !isLoopback(config.server.host)) {
    process.stderr.write(
      `tollgate: refusing to listen on ${config.server.host} with no teams configured: that would be an open relay ` +
        `for the gateway's provider keys. Add teams with keys (npx tollgate keys create --team NAME) or bind to 127.0.0.1.\n`,
    );
    process.exit(1);
  }

  const workers = options.workers ?? config.server.workers;
  if (workers !== undefined && cluster.isPrimary) {
    if (workers > 1 && config.store.type === 'memory') {
      process.stderr.write(
        `tollgate: refusing to start ${workers} workers with the memory store: rate limits, budgets, the cache and ` +
          `cooldowns would be kept per worker, not per gateway (every worker would admit a team's whole limit). ` +
          `Configure a Redis store (store.type: redis, or REDIS_URL), or run one process (no --workers).\n`,
      );
      process.exit(1);
    }
    const { runPrimary } = await import('./cluster/primary.js');
    runPrimary({
      workers,
      logLevel: config.server.logLevel,
      shutdownTimeoutMs: config.server.shutdownTimeoutMs,
    });
    return;
  }
  await serveGateway(config, anonymous);
}

/** One gateway process: a single process, or one cluster worker. */
async function serveGateway(config: Config, anonymous: boolean): Promise<void> {
  // In a cluster every worker writes the same lines: `worker` says which one (cluster.worker.id,
  // new for each fork, so a replacement is told from the worker it replaces; pid says it too).
  const worker = cluster.isWorker ? cluster.worker : undefined;
  const base = createLogger(config.server.logLevel);
  const log = worker ? base.child({ worker: worker.id }) : base;
  const clusterMetrics = worker ? await import('./cluster/metrics-ipc.js') : undefined;
  // Answer the primary's metrics requests from the start, with nothing until the app exists: it
  // waits for every worker, and this one has a second of encodings to load first.
  clusterMetrics?.shareMetricsWithPrimary([]);
  const [{ buildApp, tokenCountingOf }, { TokenCounter }] = await Promise.all([
    import('./app.js'),
    import('./accounting/tokens.js'),
  ]);

  if (anonymous) {
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
  // A cluster worker starts its counting thread on the first large count: that thread holds a
  // copy of the encodings (about 85 MB), paid once per worker, and most never need it.
  const tokens = tokenCountingOf(await TokenCounter.create({ log, lazyWorkers: worker !== undefined }));
  const gateway = buildApp(config, {
    log,
    tokens,
    // A worker's /metrics answers for the whole gateway: it asks the primary, which gathers every
    // worker's registry (this one's included, through shareMetricsWithPrimary below).
    ...(clusterMetrics ? { renderMetrics: () => clusterMetrics.requestClusterMetrics() } : {}),
  });
  clusterMetrics?.shareMetricsWithPrimary([gateway.metrics.registry]);
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
    const delayMs = config.server.shutdownDelayMs;
    // /readyz says 503 at once; requests keep being served for delayMs, so a load balancer that
    // polls it takes the gateway out before its listener closes (and nothing it sends is refused).
    gateway.readiness.unready = true;
    log.info(
      { signal, delayMs, deadlineMs: config.server.shutdownTimeoutMs },
      delayMs > 0
        ? 'shutting down: unready, then draining in-flight requests'
        : 'shutting down: draining in-flight requests',
    );
    if (delayMs > 0) setTimeout(drain, delayMs);
    else drain();
  };
  const drain = (): void => {
    const deadline = setTimeout(() => {
      log.warn('shutdown deadline reached: closing the connections that are still open');
      gateway.app.server.closeAllConnections();
    }, config.server.shutdownTimeoutMs);
    deadline.unref();
    // Whatever holds the close up past the deadline (a store or worker thread that does not
    // answer), the process still ends: a supervisor waiting on it must not wait forever.
    const hardStop = setTimeout(() => {
      process.stderr.write('tollgate: shutdown did not finish 5 s after its deadline; exiting\n');
      process.exit(1);
    }, config.server.shutdownTimeoutMs + 5_000);
    hardStop.unref();
    gateway
      .close()
      .catch((err: unknown) => log.error({ err }, 'error while closing'))
      .finally(() => {
        clearTimeout(deadline);
        log.info('stopped');
        // The flush callback may never come when stdout's reader is gone: exit anyway.
        setTimeout(() => process.exit(0), 1_000).unref();
        log.flush(() => process.exit(0));
      });
  };
  // A second SIGINT (Ctrl-C twice) kills at once, by default action. A cluster worker ignores a
  // second SIGTERM instead: the primary forwards the one it got, and a supervisor that signals the
  // whole process group (systemd's default KillMode) sends one too; that must not cut the drain.
  if (worker) process.on('SIGTERM', () => shutdown('SIGTERM'));
  else process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
