// The admin API under /admin, behind an admin key (config admin.keySha256, TOLLGATE_ADMIN_KEY):
// spend by day, teams with their limits and budgets, and team keys created and revoked at
// runtime. Admin keys are looked up by sha256 in a Set, like team keys, so nothing compares
// bytes of a stored secret; a team key is refused with 403. With no admin key configured the
// routes are not registered at all: every /admin path is the usual 404, as if it did not exist.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { KEY_ID, type DynamicTeamRegistry } from '../../admin/runtime-keys.js';
import { readSpend, resolveRange, type FilterDimension } from '../../admin/spend-report.js';
import { keyView, readTeamStatus, type TeamStatusInput } from '../../admin/team-status.js';
import type { Config } from '../../config/schema.js';
import { errors } from '../../errors.js';
import type { Keys } from '../../stores/keys.js';
import { StoreUnavailableError, type Store } from '../../stores/store.js';
import { hashKey, keyIdFromHash } from '../../teams/keys.js';
import { presentedKey } from '../auth.js';

export interface AdminRouteDeps {
  config: Pick<Config, 'teams' | 'admin'>;
  store: Pick<Store, 'readCounters'>;
  keys: Pick<Keys, 'teamSpend'>;
  teams: DynamicTeamRegistry;
  log: Pick<Logger, 'info'>;
  now?: () => number;
}

const SPEND_PARAMS = new Set(['team', 'key', 'model', 'feature', 'from', 'to']);
const FILTERS: FilterDimension[] = ['key', 'model', 'feature'];

export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  const adminHashes = new Set(deps.config.admin.keySha256);
  if (adminHashes.size === 0) return;
  const { store, keys, teams, log } = deps;
  const now = deps.now ?? Date.now;
  const configByName = new Map(deps.config.teams.map((t) => [t.name, t]));

  function authenticateAdmin(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: (err?: Error) => void,
  ): void {
    const key = presentedKey(request);
    if (key === undefined) return done(errors.missingAdminKey());
    const sha256 = hashKey(key);
    if (adminHashes.has(sha256)) {
      request.tg.logFields.admin = keyIdFromHash(sha256);
      return done();
    }
    if (!teams.anonymous && teams.authenticate(key)) return done(errors.teamKeyNotAdmin());
    done(errors.invalidAdminKey());
  }

  const knownTeam = (name: string): string => {
    if (!teams.teams().some((t) => t.name === name)) throw errors.teamNotFound(name);
    return name;
  };

  const statusInput = (name: string): TeamStatusInput => ({
    name,
    config: configByName.get(name),
    keys: teams.listKeys(name),
  });

  void app.register(async (admin) => {
    admin.addHook('onRequest', authenticateAdmin);

    admin.get('/admin/spend', async (request) => {
      const q = singleValues(request.query, SPEND_PARAMS);
      const team = q.team === undefined ? undefined : knownTeam(q.team);
      const [dimension, second] = FILTERS.filter((d) => q[d] !== undefined);
      if (second !== undefined)
        throw errors.invalidRequest(
          `Filter by one of key, model or feature at a time: counters are kept per dimension, not per combination.`,
          second,
        );
      const range = resolveRange(q.from, q.to, now());
      return await storeCall(() =>
        readSpend(
          store,
          keys,
          {
            teams: team === undefined ? teams.teams().map((t) => t.name) : [team],
            team,
            from: range.from,
            to: range.to,
            filter: dimension === undefined ? undefined : { dimension, name: q[dimension]! },
          },
          range.days,
        ),
      );
    });

    admin.get('/admin/teams', async () => {
      const inputs = teams.teams().map((t) => statusInput(t.name));
      const data = await storeCall(() => readTeamStatus(store, keys, inputs, now()));
      return { object: 'list', data };
    });

    admin.get<{ Params: { team: string } }>('/admin/teams/:team', async (request) => {
      const name = knownTeam(request.params.team);
      const [status] = await storeCall(() => readTeamStatus(store, keys, [statusInput(name)], now()));
      return status;
    });

    admin.get<{ Params: { team: string } }>('/admin/teams/:team/keys', async (request) => {
      const name = knownTeam(request.params.team);
      return { object: 'list', team: name, data: teams.listKeys(name).map(keyView) };
    });

    admin.post<{ Params: { team: string } }>('/admin/teams/:team/keys', async (request, reply) => {
      const name = knownTeam(request.params.team);
      const id = requestedKeyId(request.body);
      const result = await storeCall(() => teams.createKey(name, id));
      if (result.kind === 'team_not_found') throw errors.teamNotFound(name);
      if (result.kind === 'id_taken') throw errors.keyIdTaken(name, id ?? '');
      log.info(
        { team: name, keyId: result.id, admin: request.tg.logFields.admin, stored: result.stored },
        'admin: team key created',
      );
      // The key is in this body and nowhere else: no cache may keep it.
      void reply.code(201).header('cache-control', 'no-store');
      return {
        object: 'key',
        team: name,
        id: result.id,
        key: result.key,
        source: 'runtime',
        created_at: new Date(result.createdAt).toISOString(),
        revoked: false,
        stored: result.stored,
      };
    });

    admin.delete<{ Params: { team: string; id: string } }>('/admin/teams/:team/keys/:id', async (request) => {
      const name = knownTeam(request.params.team);
      const id = request.params.id;
      const result = await storeCall(() => teams.revokeKey(name, id));
      if (result.kind === 'team_not_found') throw errors.teamNotFound(name);
      if (result.kind === 'key_not_found') throw errors.keyNotFound(name, id);
      if (!result.already)
        log.info(
          { team: name, keyId: id, admin: request.tg.logFields.admin, stored: result.stored },
          'admin: team key revoked',
        );
      return {
        object: 'key',
        team: name,
        id,
        revoked: true,
        revoked_at: new Date(result.revokedAt).toISOString(),
        stored: result.stored,
      };
    });
  });
}

/** The store being away is a 503 here, as on the request path. */
async function storeCall<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof StoreUnavailableError)
      throw errors.storeUnavailable(err, 'the admin request could not be answered');
    throw err;
  }
}

/** The query as one string per name; an unknown or repeated name is a 400 naming it. */
function singleValues(query: unknown, allowed: ReadonlySet<string>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (!allowed.has(name))
      throw errors.invalidRequest(
        `Unknown parameter '${name.slice(0, 64)}'; expected ${[...allowed].join(', ')}.`,
        name.slice(0, 64),
      );
    if (typeof value !== 'string' || value === '')
      throw errors.invalidRequest(`Invalid '${name}': give it once, with a value.`, name);
    out[name] = value;
  }
  return out;
}

/** POST body: nothing, or `{ "id": "..." }` with the config's key id pattern. */
function requestedKeyId(body: unknown): string | undefined {
  if (body === undefined || body === null) return undefined;
  if (typeof body !== 'object' || Array.isArray(body))
    throw errors.invalidRequest('The request body must be a JSON object.', null);
  for (const name of Object.keys(body))
    if (name !== 'id')
      throw errors.invalidRequest(
        `Unknown parameter '${name.slice(0, 64)}'; expected id.`,
        name.slice(0, 64),
      );
  const id = (body as { id?: unknown }).id;
  if (id === undefined) return undefined;
  if (typeof id !== 'string' || !KEY_ID.test(id))
    throw errors.invalidRequest("Invalid 'id': 1 to 64 characters, letters, digits, '_' or '-'.", 'id');
  return id;
}
