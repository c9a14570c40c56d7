// An Anthropic error (`{type:'error', error:{type, message}}`, https://docs.anthropic.com/en/api/errors)
// -> UpstreamError in OpenAI's shape and status, so OpenAI SDKs raise the exception they would
// for OpenAI itself:
//   400 invalid_request_error -> 400 (code context_length_exceeded, param messages, for an
//       over-long prompt: clients key off that code), 404 not_found_error -> 404 (code
//       model_not_found for an unknown model), 413 request_too_large -> 413,
//   401/403 -> 502 upstream_auth_failed: the gateway's own key was refused, not the client's,
//   429 rate_limit_error -> 429 rate_limit_exceeded, type `requests` or `tokens` as OpenAI's,
//   500 api_error -> 500, 529 overloaded_error -> 503 (OpenAI's overload status), both retryable.
// retry-after, retry-after-ms and x-should-retry pass through; messages are scrubbed.
import type { IncomingHttpHeaders } from 'node:http';
import { errors, UpstreamError } from '../../errors.js';
import { passedRetryHeaders, retryAfterMs, scrub } from '../openai/map-error.js';

const RETRYABLE = new Set([408, 409, 429]);

/** The HTTP status Anthropic pairs with each error type (for `error` events inside a stream). */
const STATUS_BY_TYPE: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

export function statusForErrorType(type: unknown): number {
  return (
    (typeof type === 'string' && Object.hasOwn(STATUS_BY_TYPE, type) ? STATUS_BY_TYPE[type] : undefined) ??
    500
  );
}

export function mapAnthropicError(
  providerName: string,
  apiKey: string | undefined,
  status: number,
  headers: IncomingHttpHeaders,
  bodyText: string,
): UpstreamError {
  if (status === 401 || status === 403) return errors.upstreamAuthFailed(providerName, status);
  const passed = passedRetryHeaders(headers);
  const err = errorObject(bodyText);
  const upstreamMessage =
    typeof err?.message === 'string' && err.message.length > 0 ? err.message : undefined;
  const message = upstreamMessage
    ? scrub(upstreamMessage, apiKey)
    : `The upstream provider '${providerName}' answered with status ${status}.`;

  let outStatus = status >= 400 && status <= 599 ? status : 502;
  let type = outStatus >= 500 ? 'server_error' : 'invalid_request_error';
  let code: string | null = null;
  let param: string | null = null;
  if (status === 529 || err?.type === 'overloaded_error') {
    outStatus = 503;
    type = 'server_error';
  } else if (status === 429) {
    type = rateLimitDimension(headers, message);
    code = 'rate_limit_exceeded';
  } else if (status === 413) {
    code = 'request_too_large';
  } else if (status === 404 && /^model:/i.test(message)) {
    code = 'model_not_found';
    param = 'model';
  } else if (status === 400 && /prompt is too long|context (window|length)/i.test(message)) {
    code = 'context_length_exceeded';
    param = 'messages';
  }
  return new UpstreamError({
    status: outStatus,
    upstreamStatus: status,
    type,
    code,
    param,
    message,
    retryable: outStatus >= 500 || RETRYABLE.has(status),
    retryAfterMs: retryAfterMs(passed),
    headers: passed,
  });
}

/** OpenAI's 429 `type` names the exhausted limit; Anthropic says it in headers or the message. */
function rateLimitDimension(headers: IncomingHttpHeaders, message: string): 'requests' | 'tokens' {
  if (headers['anthropic-ratelimit-requests-remaining'] === '0') return 'requests';
  for (const kind of ['tokens', 'input-tokens', 'output-tokens']) {
    if (headers[`anthropic-ratelimit-${kind}-remaining`] === '0') return 'tokens';
  }
  return /token/i.test(message) ? 'tokens' : 'requests';
}

function errorObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    const e = v !== null && typeof v === 'object' ? (v as { error?: unknown }).error : undefined;
    return e !== null && typeof e === 'object' ? (e as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
