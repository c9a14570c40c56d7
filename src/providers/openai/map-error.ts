// An upstream's non-2xx answer -> UpstreamError. Status, code and the Retry-After family are
// kept so the client's SDK reacts as it would to OpenAI itself; the message is scrubbed of
// anything secret. An upstream 401/403 means the gateway's own provider key is wrong, which is
// no fault of the client: that becomes a 502 upstream_auth_failed.
import type { IncomingHttpHeaders } from 'node:http';
import { errors, UpstreamError } from '../../errors.js';

/** Response headers a client may see from an upstream error: they steer the SDK's retry. */
const PASSED_HEADERS = ['retry-after', 'retry-after-ms', 'x-should-retry'] as const;

const RETRYABLE = new Set([408, 409, 429]);

export function mapUpstreamError(
  providerName: string,
  apiKey: string | undefined,
  status: number,
  headers: IncomingHttpHeaders,
  bodyText: string,
): UpstreamError {
  if (status === 401 || status === 403) return errors.upstreamAuthFailed(providerName, status);
  const passed = passedRetryHeaders(headers);
  let message = `The upstream provider '${providerName}' answered with status ${status}.`;
  let type = status >= 500 ? 'server_error' : 'invalid_request_error';
  let code: string | null = null;
  let param: string | null = null;
  const parsed = tryParse(bodyText);
  const err = parsed?.error;
  if (err && typeof err === 'object') {
    const e = err as Record<string, unknown>;
    if (typeof e.message === 'string' && e.message.length > 0) message = scrub(e.message, apiKey);
    if (typeof e.type === 'string') type = e.type;
    if (typeof e.code === 'string' || typeof e.code === 'number') code = String(e.code);
    if (typeof e.param === 'string') param = e.param;
  } else if (typeof err === 'string') {
    message = scrub(err, apiKey);
  }
  return new UpstreamError({
    status: status >= 400 && status <= 599 ? status : 502,
    upstreamStatus: status,
    type,
    code,
    param,
    message,
    retryable: status >= 500 || RETRYABLE.has(status),
    retryAfterMs: retryAfterMs(passed),
    headers: passed,
  });
}

/** The retry-steering headers a client may see from an upstream error, when their values are safe. */
export function passedRetryHeaders(headers: IncomingHttpHeaders): Record<string, string> {
  const passed: Record<string, string> = {};
  for (const h of PASSED_HEADERS) {
    const v = headers[h];
    const value = Array.isArray(v) ? v[0] : v;
    if (value !== undefined && /^[\w .:,-]{1,64}$/.test(value)) passed[h] = value;
  }
  return passed;
}

function tryParse(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** How long the upstream asked us to wait: retry-after-ms first, then retry-after (seconds or HTTP date). */
export function retryAfterMs(headers: Record<string, string | undefined>): number | undefined {
  const ms = headers['retry-after-ms'];
  if (ms !== undefined && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const s = headers['retry-after'];
  if (s === undefined) return undefined;
  if (/^\d+(\.\d+)?$/.test(s.trim())) return Number(s) * 1000;
  const date = Date.parse(s);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Removes provider keys, credentials in URLs and key-shaped tokens from an upstream message. */
export function scrub(message: string, apiKey: string | undefined): string {
  let out = message.slice(0, 2000);
  if (apiKey && apiKey.length >= 4) out = out.split(apiKey).join('[redacted]');
  out = out.replace(/\b(https?:\/\/)[^\s/@:]+(:[^\s/@]*)?@/gi, '$1[redacted]@');
  out = out.replace(/\b(sk|pk|rk|sess|key)-[A-Za-z0-9_*.-]{6,}/g, '[redacted]');
  out = out.replace(/\bBearer\s+\S+/gi, 'Bearer [redacted]');
  return out;
}
