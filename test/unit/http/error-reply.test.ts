import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { errors } from '../../../src/errors.js';
import { jsonPointerToParam, toGatewayError } from '../../../src/http/error-reply.js';

describe('error reply mapping', () => {
  it('names parameters the way OpenAI does', () => {
    assert.equal(jsonPointerToParam('/messages/0/content/1/image_url'), 'messages[0].content[1].image_url');
    assert.equal(jsonPointerToParam(''), '');
    assert.equal(jsonPointerToParam('/a~1b'), 'a/b');
  });

  it('maps schema errors to 400 with the field as param', () => {
    const missing = toGatewayError(
      {
        validation: [
          { instancePath: '/messages/0', keyword: 'required', params: { missingProperty: 'role' } },
        ],
      },
      1,
    );
    assert.equal(missing.status, 400);
    assert.equal(missing.param, 'messages[0].role');
    assert.match(missing.message, /Missing required parameter: 'messages\[0\]\.role'/);
    const type = toGatewayError(
      { validation: [{ instancePath: '/n', keyword: 'type', params: { type: 'integer' } }] },
      1,
    );
    assert.equal(type.param, 'n');
  });

  it('maps Fastify body errors to 413, 415 and 400', () => {
    assert.equal(toGatewayError({ code: 'FST_ERR_CTP_BODY_TOO_LARGE', statusCode: 413 }, 10).status, 413);
    assert.equal(toGatewayError({ code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE', statusCode: 415 }, 10).status, 415);
    assert.equal(toGatewayError({ code: 'FST_ERR_CTP_EMPTY_JSON_BODY', statusCode: 400 }, 10).status, 400);
  });

  it('hides unknown errors behind a generic 500', () => {
    const e = toGatewayError(new Error('secret internals at /srv/app.js:12'), 1);
    assert.equal(e.status, 500);
    assert.equal(e.code, 'internal_error');
    assert.ok(!e.message.includes('secret'));
    assert.deepEqual(Object.keys(e.toBody().error).sort(), ['code', 'message', 'param', 'type']);
  });

  it('passes gateway errors through unchanged', () => {
    const e = errors.modelNotFound('x');
    assert.equal(toGatewayError(e, 1), e);
  });
});
