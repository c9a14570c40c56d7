// The onRequest hook for /v1 routes: the presented key -> Principal, before the body is even
// read. `Authorization: Bearer <key>` (what the OpenAI SDKs send) and `x-api-key: <key>` (what
// Anthropic-style clients send) both work. With no teams configured every request is the
// anonymous local team (the server then listens on loopback only; see main.ts).
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errors } from '../errors.js';
import type { TeamRegistry } from '../teams/registry.js';

export function presentedKey(request: FastifyRequest): string | undefined {
  const auth = request.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  const x = request.headers['x-api-key'];
  return typeof x === 'string' && x.length > 0 ? x.trim() : undefined;
}

export function createAuthHook(teams: TeamRegistry) {
  // Callback style, as app.ts's hook: no promise per request.
  return function authenticate(
    request: FastifyRequest,
    _reply: FastifyReply,
    done: (err?: Error) => void,
  ): void {
    const key = presentedKey(request);
    if (!teams.anonymous && key === undefined) return done(errors.missingApiKey());
    const principal = teams.authenticate(key);
    if (!principal) return done(errors.invalidApiKey());
    request.tg.principal = principal;
    done();
  };
}
