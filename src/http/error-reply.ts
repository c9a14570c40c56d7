// The only place that turns an error into OpenAI's body {error:{message,type,param,code}}.
// Fastify's own errors (validation, body limit, bad JSON, media type) are mapped to our
// catalog; anything unknown becomes a generic 500 whose cause is logged, never shown.
import type { FastifyError } from 'fastify';
import { errors, GatewayError } from '../errors.js';

interface AjvLikeError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

export function toGatewayError(err: unknown, bodyLimitBytes: number): GatewayError {
  if (err instanceof GatewayError) return err;
  const fe = err as Partial<FastifyError> & { validation?: AjvLikeError[] };
  if (Array.isArray(fe.validation) && fe.validation.length > 0) return validationError(fe.validation[0]!);
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return errors.bodyTooLarge(bodyLimitBytes);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return errors.unsupportedMediaType(undefined);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return errors.invalidJson('the body is empty');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return errors.invalidJson(fe.message ?? 'invalid JSON');
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return new GatewayError({
      status: fe.statusCode,
      type: 'invalid_request_error',
      code: 'invalid_request',
      message: 'The request could not be processed: it is malformed.',
    });
  }
  return errors.internal(err);
}

/** `/messages/0/role` -> `messages[0].role`, OpenAI's way of naming a parameter. */
export function jsonPointerToParam(pointer: string): string {
  let out = '';
  for (const seg of pointer.split('/').slice(1)) {
    const s = seg.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^\d+$/.test(s) ? `[${s}]` : out ? `.${s}` : s;
  }
  return out;
}

function validationError(e: AjvLikeError): GatewayError {
  const at = jsonPointerToParam(e.instancePath);
  const join = (child: string): string => (at ? `${at}.${child}` : child);
  switch (e.keyword) {
    case 'required': {
      const param = join(String(e.params.missingProperty));
      return errors.invalidRequest(`Missing required parameter: '${param}'.`, param);
    }
    case 'type': {
      if (!at) return errors.invalidRequest('The request body must be a JSON object.', null);
      const expected = String(e.params.type).replace(/,/g, ' or ');
      return errors.invalidRequest(`Invalid type for '${at}': expected ${expected}.`, at);
    }
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'minItems':
    case 'maxItems':
    case 'minLength':
      return errors.invalidRequest(`Invalid '${at}': ${e.message ?? 'out of range'}.`, at);
    case 'enum':
      return errors.invalidRequest(
        `Invalid value for '${at}': expected one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}.`,
        at,
      );
    default:
      return errors.invalidRequest(
        `Invalid value for '${at || 'body'}': ${e.message ?? 'invalid'}.`,
        at || null,
      );
  }
}
