// buildApp(config, deps) -> a Fastify instance with every route and hook, ready to listen.
// It never listens itself, so tests can build one per case and main.ts owns the socket.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { errors } from './errors.js';
import cors from '@fastify/cors';
import { createAuthHook } from './http/auth.js';
import { AuthFailureLimiter } from './http/auth-failures.js';
import { answerClientError } from './http/client-error.js';
import { toGatewayError } from './http/error-reply.js';
import { finishWhenDone, newRequestState, requestFinisher } from './http/request-state.js';
import { registerMetricsRoute, type RenderedMetrics } from './http/routes/metrics.js';
import { Metrics } from './metrics/metrics.js';
import { createPricing } from './accounting/cost.js';
import { TokenCounter, type ChatBody } from './accounting/tokens.js';
import { createAlerter } from './accounting/webhook.js';
import { openLedger } from './accounting/ledger.js';
import { startAnomalyWatch } from './accounting/anomaly.js';
import type { TokenCounting } from './pipeline/stages/accounting.js';
import { ResilientStore } from './stores/resilient-store.js';
import { createStoreKeyRecords } from './admin/key-records.js';
import { createDynamicTeamRegistry } from './admin/runtime-keys.js';
import { registerAdminRoutes } from './http/routes/admin.js';
import { registerHealthRoutes, type Readiness } from './http/routes/health.js';
import { registerModelRoutes } from './http/routes/model-request.js';
import { registerModelsRoute } from './http/routes/models.js';
import { createPipeline } from './pipeline/index.js';
import { createProviderRegistry, type ProviderRegistry } from './providers/registry.js';
import { createStore, type StoreHandle } from './stores/create-store.js';

export interface AppDeps {
  log: Logger;
  providers?: ProviderRegistry;
  /** Tests may hand in a store; by default it is built from config.store. */
  store?: StoreHandle;
  /**
   * Exact token counting, made before the app (TokenCounter.create + tokenCountingOf): loading the
   * encodings blocks the event loop for about a second, which must not happen while the store
   * connects or requests are served. close() is called on shutdown when present.
   */
  tokens: TokenCounting & { close?(): Promise<void> };
  /**
   * What GET /metrics serves; by default this process's registry. A cluster worker passes one that
   * asks the primary for every worker's metrics, aggregated (cluster/metrics-ipc.ts).
   */
  renderMetrics?: () => Promise<RenderedMetrics>;
}

export interface Gateway {
  app: FastifyInstance;
  readiness: Readiness;
  /** Waits (bounded) for the store to connect, so the first requests find the shared state. */
  storeReady(): Promise<boolean>;
  metrics: Metrics;
  /** Closes the server (letting in-flight requests finish) and then the upstream pools. */
  close(): Promise<void>;
}

/** A request id we accept from the client: short, printable, safe to echo in a header. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function buildApp(config: Config, deps: AppDeps): Gateway {
  const log = deps.log;
  const providers = deps.providers ?? createProviderRegistry(config);
  const storeHandle = deps.store ?? createStore(config.store, log);
  const { store, keys } = storeHandle;
  const teams = createDynamicTeamRegistry(config, createStoreKeyRecords(store, keys), {
    log,
    refreshMs: config.admin.keyRefreshMs,
  });
  teams.start();
  const resilient = store instanceof ResilientStore ? store : undefined;
  const metrics = new Metrics({
    keyLabels: config.accounting.metricsKeyLabels,
    known: {
      teams: config.teams.map((t) => t.name),
      models: Object.keys(config.models).filter((m) => !m.endsWith('*')),
      keyIds: config.teams.flatMap((t) => t.keys.map((k) => k.id)),
    },
    pendingSpend: () => resilient?.pendingCount ?? 0,
    droppedSpend: () => resilient?.droppedIncrements ?? 0,
  });
  const pricing = createPricing(config);
  for (const w of pricing.warnings) log.warn(w);
  const tokens = deps.tokens;
  const alerter = createAlerter(config.accounting.webhook, log);
  const ledger = config.accounting.ledgerPath ? openLedger(config.accounting.ledgerPath) : undefined;
  const retentionMs = config.accounting.retentionDays * 86_400_000;
  const anomaly = config.accounting.anomaly
    ? startAnomalyWatch(
        { store, keys, log, alerter, teams: () => config.teams.map((t) => t.name) },
        config.accounting.anomaly,
        retentionMs,
      )
    : undefined;
  const pipeline = createPipeline({
    config,
    providers,
    store,
    keys,
    log,
    pricing,
    tokens,
    alerter,
    ledger,
    onCost: (c) => metrics.observeCost(c),
    events: {
      upstreamError: (id, code) => metrics.upstreamError(id, code),
      retry: (id) => metrics.retry(id),
      fallback: (from, to) => metrics.fallback(from, to),
    },
  });
  if (pipeline.admissionsAhead) metrics.watchAdmissionsAhead(pipeline.admissionsAhead);
  const finish = requestFinisher(log, metrics);
  const tiers = new Map(
    config.teams.flatMap((t) => {
      const tier = t.tier === undefined ? undefined : config.tiers[t.tier];
      return tier ? [[t.name, { name: t.tier!, tier }] as const] : [];
    }),
  );
  const readiness: Readiness = { unready: false, draining: false };
  const bodyLimit = config.server.bodyLimitBytes;

  const fastifyLog: FastifyBaseLogger = log;
  const app = Fastify({
    loggerInstance: fastifyLog,
    // Fastify's own per-request lines are replaced by our single line (http/request-state.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // No per-request child logger: our line carries reqId itself, and a child costs on every request.
    childLoggerFactory: (logger) => logger,
    bodyLimit,
    trustProxy: config.server.trustProxy,
    // Longer than the usual 60 s idle timeout of load balancers, so they close first.
    keepAliveTimeout: 72_000,
    requestTimeout: config.server.requestTimeoutMs,
    connectionTimeout: 0,
    http: {
      // Slow clients (slowloris) are dropped with a 408 once their headers, or the whole request,
      // take longer than these. Node compares both at construction, so requestTimeout is here too.
      headersTimeout: config.server.headersTimeoutMs,
      requestTimeout: config.server.requestTimeoutMs,
      // Node looks for expired requests only this often (30 s by default, which would let a 10 s
      // headers timeout last 40 s); each look walks the connections still receiving a request.
      connectionsCheckingInterval: 1_000,
    },
    // What Node's parser refuses (malformed, smuggling-shaped, headers too large, too slow) is
    // answered in OpenAI's shape, and never written into a response already under way.
    clientErrorHandler: answerClientError,
    // Draining is answered by our own hook below, in OpenAI's error shape.
    return503OnClosing: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    ajv: {
      // Validate only: never coerce, default or strip a field of a body we forward as received.
      customOptions: { coerceTypes: false, useDefaults: false, removeAdditional: false, allErrors: false },
    },
  });

  const authFailures = new AuthFailureLimiter({
    maxFailures: config.server.authFailures.maxFailures,
    windowMs: config.server.authFailures.windowSeconds * 1000,
    blockMs: config.server.authFailures.blockSeconds * 1000,
  });

  app.decorateRequest('tg', null as never);
  app.decorateRequest('rawBody', undefined);

  // Keep the exact bytes (forwarded upstream unchanged) and parse them once.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (request, body, done) => {
    const raw = body as Buffer;
    request.rawBody = raw;
    if (raw.length === 0) return done(errors.invalidJson('the body is empty'), undefined);
    try {
      done(null, JSON.parse(raw.toString('utf8')));
    } catch (err) {
      done(errors.invalidJson((err as Error).message.slice(0, 120)), undefined);
    }
  });
  app.addContentTypeParser('*', (request, _payload, done) => {
    done(errors.unsupportedMediaType(request.headers['content-type']), undefined);
  });

  // Hooks in callback style: an async hook costs a promise and a microtask turn per request.
  app.addHook('onRequest', (request, reply, done) => {
    request.tg = newRequestState();
    reply.header('x-request-id', request.id);
    reply.raw.once('close', () => finishWhenDone(finish, request, reply));
    const health = request.url === '/readyz' || request.url === '/healthz';
    if (readiness.draining && !health) {
      // A request on a keep-alive connection that outlived the listener: send it elsewhere.
      reply.header('connection', 'close');
      done(errors.shuttingDown());
      return;
    }
    // An address blocked for failing authentication gets nothing but the health checks.
    const blockedMs = health ? 0 : authFailures.blockedFor(request.ip);
    if (blockedMs > 0) {
      done(errors.tooManyAuthFailures(blockedMs));
      return;
    }
    done();
  });

  app.setErrorHandler((err, request, reply) => {
    const ge = toGatewayError(err, bodyLimit);
    request.tg.errorCode = ge.code ?? undefined;
    request.tg.errorType = ge.type;
    // Every refused key (team, admin, metrics token) answers 401 through here.
    if (ge.status === 401 && authFailures.failed(request.ip)) {
      log.warn(
        { ip: request.ip, blockSeconds: config.server.authFailures.blockSeconds },
        'address blocked after repeated failed authentication',
      );
    }
    if (ge.status >= 500 && ge.code === 'internal_error')
      log.error({ reqId: request.id, err }, 'internal error');
    void reply.code(ge.status).headers(ge.headers).send(ge.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const ge = errors.notFound(request.method, request.url);
    request.tg.errorCode = ge.code ?? undefined;
    void reply.code(404).send(ge.toBody());
  });

  // Off unless configured: a browser page on another origin cannot call the gateway (and so
  // cannot use a key pasted into it) unless the platform team allows that origin.
  const corsConfig = config.server.cors;
  if (corsConfig) {
    void app.register(cors, {
      origin: corsConfig.origins.includes('*') ? '*' : corsConfig.origins,
      credentials: corsConfig.credentials,
      maxAge: corsConfig.maxAgeSeconds,
      methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      // What a browser client may read besides the simple headers: limits, ids, cache status.
      exposedHeaders: [
        'x-request-id',
        'retry-after',
        'retry-after-ms',
        'x-ratelimit-limit-requests',
        'x-ratelimit-limit-tokens',
        'x-ratelimit-remaining-requests',
        'x-ratelimit-remaining-tokens',
        'x-ratelimit-reset-requests',
        'x-ratelimit-reset-tokens',
        'x-tollgate-cache',
        'x-tollgate-attempts',
      ],
    });
  }

  registerHealthRoutes(app, readiness);
  registerMetricsRoute(app, deps.renderMetrics ? { render: deps.renderMetrics } : metrics, {
    token: process.env.TOLLGATE_METRICS_TOKEN || undefined,
  });
  registerAdminRoutes(app, { config, store, keys, teams, log });
  void app.register(async (v1) => {
    v1.addHook('onRequest', createAuthHook(teams));
    registerModelsRoute(v1, config);
    registerModelRoutes(v1, {
      config,
      pipeline: pipeline.next,
      log,
      finish,
      metrics,
      tierOf: (team) => tiers.get(team),
    });
  });

  return {
    app,
    readiness,
    storeReady: async () => {
      const ok = await storeHandle.ready(config.store.redis?.connectTimeoutMs ?? 0);
      // Runtime keys and revocations before the first request; the periodic reload retries a failure.
      if (ok)
        await teams.refresh().catch((err: unknown) => log.warn({ err }, 'runtime keys: first load failed'));
      return ok;
    },
    metrics,
    async close() {
      teams.close();
      readiness.draining = true;
      // app.close() waits for every connection to end. A keep-alive connection whose last
      // response (a stream, say) finishes during the drain goes idle and would be held until the
      // client closed it or the shutdown deadline: idle connections are closed as they appear.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 200);
      try {
        await app.close();
      } finally {
        clearInterval(sweep);
      }
      await pipeline.close();
      anomaly?.stop();
      await alerter.drain();
      ledger?.close();
      metrics.stop();
      await providers.close();
      await tokens.close?.();
      await store.close();
    },
  };
}

/** A TokenCounter as the pipeline's TokenCounting (its chat body type is the looser request body). */
export function tokenCountingOf(counter: TokenCounter): TokenCounting & { close(): Promise<void> } {
  return {
    countChat: (model, body) => counter.countChat(model, body as unknown as ChatBody),
    countText: (model, text) => counter.countText(model, text),
    close: () => counter.close(),
  };
}
