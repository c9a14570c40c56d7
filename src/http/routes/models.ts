// GET /v1/models: only the models the calling team may use, in OpenAI's list shape, so a team
// cannot discover what other teams are configured for. A wildcard route is not listable.
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config/schema.js';
import { teamMayUse } from '../../teams/registry.js';

export function registerModelsRoute(app: FastifyInstance, config: Config): void {
  const created = Math.floor(Date.now() / 1000);
  const all = Object.values(config.models)
    .filter((m) => !m.name.endsWith('*'))
    .map((m) => ({
      id: m.name,
      object: 'model' as const,
      created,
      owned_by: m.deployments[0]?.provider ?? 'tollgate',
    }));

  app.get('/v1/models', async (request) => {
    const team = request.tg.principal!.team;
    return { object: 'list', data: all.filter((m) => teamMayUse(team, m.id)) };
  });
}
