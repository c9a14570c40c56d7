// GET /healthz: the process is alive. GET /readyz: it should receive traffic; it turns 503 as
// soon as shutdown begins, so a load balancer stops sending before connections are closed.
import type { FastifyInstance } from 'fastify';

export interface Readiness {
  draining: boolean;
}

export function registerHealthRoutes(app: FastifyInstance, readiness: Readiness): void {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    if (readiness.draining) return reply.code(503).send({ status: 'draining' });
    return { status: 'ready' };
  });
}
