// The admin API's errors, in the shape of errors.ts's catalog (GatewayError, stable codes), so
// http/error-reply.ts writes them like every other error. Kept beside the admin code until they
// join the catalog in errors.ts; their codes are listed in the admin section of the README.
import { GatewayError } from '../errors.js';

const INVALID = 'invalid_request_error';

export const adminErrors = {
  missingAdminKey: (): GatewayError =>
    new GatewayError({
      status: 401,
      type: INVALID,
      code: 'invalid_api_key',
      message:
        "You didn't provide an admin key. Pass the gateway's admin key as `Authorization: Bearer <key>`.",
    }),
  invalidAdminKey: (): GatewayError =>
    new GatewayError({
      status: 401,
      type: INVALID,
      code: 'invalid_api_key',
      message: "Incorrect admin key provided. Pass the gateway's admin key as `Authorization: Bearer <key>`.",
    }),
  /** A valid team key on an admin route: known, but not allowed here. */
  teamKeyNotAdmin: (): GatewayError =>
    new GatewayError({
      status: 403,
      type: INVALID,
      code: 'permission_denied',
      message: 'Team keys cannot use the admin API. Pass an admin key as `Authorization: Bearer <key>`.',
    }),
  teamNotFound: (team: string): GatewayError =>
    new GatewayError({
      status: 404,
      type: INVALID,
      code: 'team_not_found',
      param: 'team',
      message: `No team named '${team.slice(0, 64)}' is configured.`,
    }),
  keyNotFound: (team: string, id: string): GatewayError =>
    new GatewayError({
      status: 404,
      type: INVALID,
      code: 'key_not_found',
      param: 'id',
      message: `Team '${team.slice(0, 64)}' has no key with id '${id.slice(0, 64)}'.`,
    }),
  keyIdTaken: (team: string, id: string): GatewayError =>
    new GatewayError({
      status: 409,
      type: INVALID,
      code: 'key_id_taken',
      param: 'id',
      message: `Team '${team.slice(0, 64)}' already has (or had) a key with id '${id.slice(0, 64)}'; ids of revoked keys are not reused. Choose another id or leave it out.`,
    }),
  storeUnavailable: (cause?: unknown): GatewayError =>
    new GatewayError({
      status: 503,
      type: 'server_error',
      code: 'store_unavailable',
      retryable: true,
      cause,
      message:
        "The gateway's shared state store (Redis) is unavailable, so the admin request could not be answered. Please try again shortly.",
    }),
};
