// GatewayError and the catalog of named constructors. Every error a client can see is made
// here, so codes stay stable (the README lists them) and http/error-reply.ts is the only
// place that turns one into OpenAI's `{error:{message,type,param,code}}` body.

export interface GatewayErrorInit {
  status: number;
  code: string | null;
  type: string;
  message: string;
  param?: string | null;
  retryable?: boolean;
  retryAfterMs?: number;
  /** Extra response headers (Retry-After, x-should-retry, ...). Values are never user input. */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class GatewayError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly type: string;
  readonly param: string | null;
  readonly retryable: boolean;
  readonly retryAfterMs: number | undefined;
  readonly headers: Record<string, string>;

  constructor(init: GatewayErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'GatewayError';
    this.status = init.status;
    this.code = init.code;
    this.type = init.type;
    this.param = init.param ?? null;
    this.retryable = init.retryable ?? false;
    this.retryAfterMs = init.retryAfterMs;
    this.headers = init.headers ?? {};
  }

  toBody(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** An error that came from (or on the way to) an upstream provider. */
export class UpstreamError extends GatewayError {
  /** The upstream's own status, when it answered at all. */
  readonly upstreamStatus: number | undefined;
  constructor(init: GatewayErrorInit & { upstreamStatus?: number }) {
    super(init);
    this.name = 'UpstreamError';
    this.upstreamStatus = init.upstreamStatus;
  }
}

const INVALID = 'invalid_request_error';

export const errors = {
  invalidApiKey: (): GatewayError =>
    new GatewayError({
      status: 401,
      type: INVALID,
      code: 'invalid_api_key',
      message:
        'Incorrect API key provided. Pass your tollgate key as `Authorization: Bearer <key>` or `x-api-key: <key>`.',
    }),
  missingApiKey: (): GatewayError =>
    new GatewayError({
      status: 401,
      type: INVALID,
      code: 'invalid_api_key',
      message:
        "You didn't provide an API key. Pass your tollgate key as `Authorization: Bearer <key>` or `x-api-key: <key>`.",
    }),
  invalidRequest: (message: string, param: string | null = null): GatewayError =>
    new GatewayError({ status: 400, type: INVALID, code: 'invalid_request', message, param }),
  /** A valid OpenAI field the chosen provider cannot honour: refused, never dropped or clamped. */
  unsupportedParameter: (param: string, detail: string): GatewayError =>
    new GatewayError({
      status: 400,
      type: INVALID,
      code: 'unsupported_parameter',
      param,
      message: `Unsupported parameter: '${param.slice(0, 200)}' ${detail}`,
    }),
  invalidJson: (detail: string): GatewayError =>
    new GatewayError({
      status: 400,
      type: INVALID,
      code: 'invalid_json',
      message: `We could not parse the JSON body of your request (${detail}). Send a valid JSON object.`,
    }),
  unsupportedMediaType: (got: string | undefined): GatewayError =>
    new GatewayError({
      status: 415,
      type: INVALID,
      code: 'unsupported_media_type',
      message: `Unsupported Content-Type ${got ? `'${got.slice(0, 80)}'` : '(none)'}: send 'Content-Type: application/json'.`,
    }),
  bodyTooLarge: (limitBytes: number): GatewayError =>
    new GatewayError({
      status: 413,
      type: INVALID,
      code: 'request_too_large',
      message: `The request body is larger than this gateway's limit of ${limitBytes} bytes.`,
    }),
  notFound: (method: string, url: string): GatewayError =>
    new GatewayError({
      status: 404,
      type: INVALID,
      code: 'unknown_url',
      message: `Unknown request URL: ${method} ${url.slice(0, 200)}. Please check the URL for typos.`,
    }),
  // Refused by Node's HTTP parser or its timeouts before any route ran (http/client-error.ts).
  malformedHttp: (): GatewayError =>
    new GatewayError({
      status: 400,
      type: INVALID,
      code: 'invalid_request',
      message:
        'The request is not valid HTTP/1.1 (request line, header or body framing); it was not processed.',
    }),
  headersTooLarge: (): GatewayError =>
    new GatewayError({
      status: 431,
      type: INVALID,
      code: 'request_headers_too_large',
      message: 'The request headers are larger than this gateway accepts; it was not processed.',
    }),
  requestTimeout: (): GatewayError =>
    new GatewayError({
      status: 408,
      type: INVALID,
      code: 'request_timeout',
      message: 'The request did not arrive in time (server.headersTimeoutMs / server.requestTimeoutMs).',
    }),
  modelNotFound: (model: string): GatewayError =>
    new GatewayError({
      status: 404,
      type: INVALID,
      code: 'model_not_found',
      param: 'model',
      message: `The model \`${model.slice(0, 200)}\` does not exist or you do not have access to it.`,
    }),
  upstreamAuthFailed: (provider: string, upstreamStatus: number): UpstreamError =>
    new UpstreamError({
      status: 502,
      type: 'server_error',
      code: 'upstream_auth_failed',
      upstreamStatus,
      message: `The gateway's credentials for provider '${provider}' were rejected (upstream status ${upstreamStatus}). This is not a problem with your key; the gateway operator has been alerted.`,
    }),
  upstreamUnavailable: (provider: string, detail: string, cause?: unknown): UpstreamError =>
    new UpstreamError({
      status: 502,
      type: 'server_error',
      code: 'upstream_unavailable',
      retryable: true,
      cause,
      message: `The upstream provider '${provider}' could not be reached (${detail}). Please try again.`,
    }),
  upstreamTimeout: (provider: string, phase: string, cause?: unknown): UpstreamError =>
    new UpstreamError({
      status: 504,
      type: 'server_error',
      code: 'upstream_timeout',
      retryable: true,
      cause,
      message: `The upstream provider '${provider}' timed out (${phase}). Please try again.`,
    }),
  upstreamBadResponse: (provider: string, detail: string): UpstreamError =>
    new UpstreamError({
      status: 502,
      type: 'server_error',
      code: 'upstream_bad_response',
      retryable: true,
      message: `The upstream provider '${provider}' sent a response the gateway could not read (${detail}).`,
    }),
  /** Over an RPM/TPM/concurrency limit: OpenAI's 429, whose `type` names the limited dimension. */
  rateLimited: (o: {
    dimension: 'requests' | 'tokens';
    message: string;
    retryAfterMs: number;
    headers: Record<string, string>;
  }): GatewayError =>
    new GatewayError({
      status: 429,
      type: o.dimension,
      code: 'rate_limit_exceeded',
      retryable: true,
      retryAfterMs: o.retryAfterMs,
      message: o.message,
      headers: {
        ...o.headers,
        // Whole seconds, rounded up, as OpenAI sends it; the exact wait in retry-after-ms.
        'retry-after': String(Math.max(1, Math.ceil(o.retryAfterMs / 1000))),
        'retry-after-ms': String(Math.max(0, Math.ceil(o.retryAfterMs))),
      },
    }),
  /** An address that failed authentication too often (http/auth-failures.ts). */
  tooManyAuthFailures: (retryAfterMs: number): GatewayError =>
    new GatewayError({
      status: 429,
      type: 'requests',
      code: 'too_many_auth_failures',
      retryAfterMs,
      message:
        'Too many failed authentications from this address. Check the key you send, and try again in ' +
        `${Math.max(1, Math.ceil(retryAfterMs / 1000))} seconds.`,
      headers: { 'retry-after': String(Math.max(1, Math.ceil(retryAfterMs / 1000))) },
    }),
  /** A request bigger than a limit's whole capacity: waiting cannot help, so the SDK must not retry. */
  requestTooLarge: (o: { message: string; headers: Record<string, string> }): GatewayError =>
    new GatewayError({
      status: 429,
      type: 'tokens',
      code: 'rate_limit_exceeded',
      message: o.message,
      headers: { ...o.headers, 'x-should-retry': 'false' },
    }),
  /**
   * A hard budget is used up: OpenAI's own 429 for an account out of credit. The SDKs retry a
   * 429 unless told not to, and waiting seconds cannot help, so x-should-retry: false.
   */
  budgetExceeded: (message: string): GatewayError =>
    new GatewayError({
      status: 429,
      type: 'insufficient_quota',
      code: 'insufficient_quota',
      message,
      headers: { 'x-should-retry': 'false' },
    }),
  /** max_tokens above the team tier's output cap, when the cap rejects instead of clamping. */
  outputCapExceeded: (param: string, asked: number, cap: number, tier: string): GatewayError =>
    new GatewayError({
      status: 400,
      type: INVALID,
      code: 'invalid_request',
      param,
      message: `${param} is ${asked}, above the ${cap} output tokens allowed for this team's tier '${tier.slice(0, 64)}'.`,
    }),
  /** The request cannot fit the context window of any deployment of the model. */
  contextLengthExceeded: (model: string, estimatedTokens: number): GatewayError =>
    new GatewayError({
      status: 400,
      type: 'invalid_request_error',
      code: 'context_length_exceeded',
      param: 'messages',
      message: `This model's maximum context length is too small for this request: it needs about ${estimatedTokens} tokens (prompt and requested output) on model ${model.slice(0, 200)}. Please reduce the length of the messages or max_tokens.`,
    }),
  shuttingDown: (): GatewayError =>
    new GatewayError({
      status: 503,
      type: 'server_error',
      code: 'shutting_down',
      retryable: true,
      message: 'The gateway is shutting down. Please retry; another instance will answer.',
    }),
  storeUnavailable: (
    cause?: unknown,
    consequence = 'rate limits cannot be enforced and the request was refused',
  ): GatewayError =>
    new GatewayError({
      status: 503,
      type: 'server_error',
      code: 'store_unavailable',
      retryable: true,
      cause,
      message: `The gateway's shared state store (Redis) is unavailable, so ${consequence}. Please try again shortly.`,
    }),
  // The admin API's (http/routes/admin.ts).

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

  internal: (cause?: unknown): GatewayError =>
    new GatewayError({
      status: 500,
      type: 'server_error',
      code: 'internal_error',
      cause,
      message: 'The gateway had an internal error while processing your request. Please try again.',
    }),
};
