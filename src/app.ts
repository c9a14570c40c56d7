// buildApp(config, deps) -> a Fastify instance with every route and hook, ready to listen.
// It never listens itself, so tests can build one per case and main.ts owns the socket.
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Config } from './config/schema.js';
import { errors } from './errors.js';
import { createAuthHook } from './http/auth.js';
import { toGatewayError } from './http/error-reply.js';
import { logWhenDone, newRequestState } from './http/request-state.js';
import { registerHealthRoutes, type Readiness } from './http/routes/health.js';
import { registerModelRoutes } from './http/routes/model-request.js';
import { registerModelsRoute } from './http/routes/models.js';
import { createPipeline } from './pipeline/index.js';
import { createProviderRegistry, type ProviderRegistry } from './providers/registry.js';
import { createStore, type StoreHandle } from './stores/create-store.js';
import { createTeamRegistry } from './teams/registry.js';

export interface AppDeps {
  log: Logger;
  providers?: ProviderRegistry;
  /** Tests may hand in a store; by default it is built from config.store. */
  store?: StoreHandle;
}

export interface Gateway {
  app: FastifyInstance;
  readiness: Readiness;
  /** Waits (bounded) for the store to connect, so the first requests find the shared state. */
  storeReady(): Promise<boolean>;
  /** Closes the server (letting in-flight requests finish) and then the upstream pools. */
  close(): Promise<void>;
}

/** A request id we accept from the client: short, printable, safe to echo in a header. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

export function buildApp(config: Config, deps: AppDeps): Gateway {
  const log = deps.log;
  const providers = deps.providers ?? createProviderRegistry(config);
  const teams = createTeamRegistry(config);
  const storeHandle = deps.store ?? createStore(config.store, log);
  const { store, keys } = storeHandle;
  const pipeline = createPipeline({ config, providers, store, keys, log });
  const readiness: Readiness = { draining: false };
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
    requestTimeout: 60_000,
    connectionTimeout: 0,
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
    reply.raw.once('close', () => logWhenDone(log, request, reply));
    if (readiness.draining && request.url !== '/readyz' && request.url !== '/healthz') {
      // A request on a keep-alive connection that outlived the listener: send it elsewhere.
      reply.header('connection', 'close');
      done(errors.shuttingDown());
      return;
    }
    done();
  });

  app.setErrorHandler((err, request, reply) => {
    const ge = toGatewayError(err, bodyLimit);
    request.tg.errorCode = ge.code ?? undefined;
    if (ge.status >= 500 && ge.code === 'internal_error')
      log.error({ reqId: request.id, err }, 'internal error');
    void reply.code(ge.status).headers(ge.headers).send(ge.toBody());
  });
  app.setNotFoundHandler((request, reply) => {
    const ge = errors.notFound(request.method, request.url);
    request.tg.errorCode = ge.code ?? undefined;
    void reply.code(404).send(ge.toBody());
  });

  registerHealthRoutes(app, readiness);
  void app.register(async (v1) => {
    v1.addHook('onRequest', createAuthHook(teams));
    registerModelsRoute(v1, config);
    registerModelRoutes(v1, { config, pipeline: pipeline.next, log });
  });

  return {
    app,
    readiness,
    storeReady: () => storeHandle.ready(config.store.redis?.connectTimeoutMs ?? 0),
    async close() {
      readiness.draining = true;
      await app.close();
      pipeline.close();
      await providers.close();
      await store.close();
    },
  };
}
