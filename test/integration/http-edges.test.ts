// The HTTP surface through real sockets: only the documented routes exist, bad input gets a
// 4xx in OpenAI's shape naming the field, keys work both ways, bodies pass through untouched
// in both directions, and upstream errors keep their meaning without leaking the provider key.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { request } from 'undici';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const PROVIDER_KEY = 'sk-test-provider-secret-0123456789';

describe('the HTTP surface', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('search', ['gpt-4o-mini', 'text-embedding-3-small']);
  const other = makeTeam('billing', ['gpt-4o']);

  const call = async (
    method: 'GET' | 'POST',
    path: string,
    opts: { body?: string; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; headers: Record<string, unknown>; text: string; json: any }> => {
    const res = await request(`${gw.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json', ...opts.headers },
      ...(opts.body !== undefined ? { body: opts.body } : {}),
    });
    const text = await res.body.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, headers: res.headers, text, json };
  };
  const chat = (body: Record<string, unknown>, headers?: Record<string, string>) =>
    call('POST', '/v1/chat/completions', {
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body }),
      ...(headers ? { headers } : {}),
    });

  before(async () => {
    fake = await startFakeUpstream({ apiKey: PROVIDER_KEY });
    // One attempt per request: these tests are about how each upstream answer is relayed.
    gw = await startGateway(
      baseConfig(fake.url, [team, other], {
        server: { bodyLimitBytes: 64 * 1024 },
        routing: { retry: { maxAttempts: 1 } },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  const assertOpenAIError = (json: any, code: string | null): void => {
    assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(json.error.code, code);
    assert.equal(typeof json.error.message, 'string');
  };

  for (const path of [
    '/v1/..%2fadmin',
    '/v1/%2e%2e/admin',
    '/admin',
    '/v1/files',
    '/v1/chat/completions/../../x',
    '/v2/chat/completions',
    '/v1/models/../../etc/passwd',
  ]) {
    it(`answers 404 for ${path} without reaching the upstream`, async () => {
      const res = await call('POST', path, { body: '{}' });
      assert.equal(res.status, 404);
      assertOpenAIError(res.json, 'unknown_url');
      assert.equal(fake.requests.length, 0);
    });
  }

  it('answers 413 for a body over the limit before forwarding anything', async () => {
    const res = await chat({ messages: [{ role: 'user', content: 'x'.repeat(70 * 1024) }] });
    assert.equal(res.status, 413);
    assertOpenAIError(res.json, 'request_too_large');
    assert.equal(fake.requests.length, 0);
  });

  it('answers 400 for invalid JSON, never 500', async () => {
    const res = await call('POST', '/v1/chat/completions', {
      body: '{"model": "gpt-4o-mini", "messages": [',
    });
    assert.equal(res.status, 400);
    assertOpenAIError(res.json, 'invalid_json');
  });

  it('answers 400 for an empty body and for a JSON array', async () => {
    assert.equal((await call('POST', '/v1/chat/completions', { body: '' })).status, 400);
    const arr = await call('POST', '/v1/chat/completions', { body: '[]' });
    assert.equal(arr.status, 400);
    assertOpenAIError(arr.json, 'invalid_request');
  });

  it('answers 415 for a non-JSON content type', async () => {
    const res = await call('POST', '/v1/chat/completions', {
      body: 'model=gpt-4o-mini',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(res.status, 415);
    assertOpenAIError(res.json, 'unsupported_media_type');
  });

  it('names the missing field', async () => {
    const res = await call('POST', '/v1/chat/completions', {
      body: JSON.stringify({ model: 'gpt-4o-mini' }),
    });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.param, 'messages');
  });

  it('names a nested field of the wrong type', async () => {
    const res = await chat({ messages: [{ role: 3, content: 'x' }] });
    assert.equal(res.status, 400);
    assert.equal(res.json.error.param, 'messages[0].role');
  });

  it('accepts the key as x-api-key too', async () => {
    const res = await call('GET', '/v1/models', { headers: { authorization: '', 'x-api-key': team.key } });
    assert.equal(res.status, 200);
  });

  it('answers 401 without a key and with a wrong one, before reading the body', async () => {
    const none = await call('POST', '/v1/chat/completions', { body: '{', headers: { authorization: '' } });
    assert.equal(none.status, 401);
    assertOpenAIError(none.json, 'invalid_api_key');
    const wrong = await call('GET', '/v1/models', { headers: { authorization: 'Bearer tg-wrong' } });
    assert.equal(wrong.status, 401);
  });

  it("answers 404 model_not_found for another team's model, as for a model that does not exist", async () => {
    const res = await chat({ model: 'gpt-4o' });
    assert.equal(res.status, 404);
    assertOpenAIError(res.json, 'model_not_found');
    const missing = await chat({ model: 'no-such-model' });
    assert.equal(missing.json.error.message.replace('no-such-model', 'gpt-4o'), res.json.error.message);
    assert.equal(fake.requests.length, 0);
  });

  it("lists only the calling team's models", async () => {
    const res = await call('GET', '/v1/models', { headers: { authorization: `Bearer ${other.key}` } });
    assert.deepEqual(
      res.json.data.map((m: { id: string }) => m.id),
      ['gpt-4o'],
    );
  });

  it('honours a safe x-request-id and replaces an unsafe one', async () => {
    const res = await call('GET', '/v1/models', { headers: { 'x-request-id': 'trace-123' } });
    assert.equal(res.headers['x-request-id'], 'trace-123');
    const unsafe = await call('GET', '/v1/models', { headers: { 'x-request-id': 'a b<script>' } });
    assert.notEqual(unsafe.headers['x-request-id'], 'a b<script>');
    assert.match(String(unsafe.headers['x-request-id']), /^[0-9a-f-]{36}$/);
  });

  it('serves /healthz and /readyz without a key', async () => {
    assert.equal((await call('GET', '/healthz', { headers: { authorization: '' } })).status, 200);
    assert.equal((await call('GET', '/readyz', { headers: { authorization: '' } })).status, 200);
  });

  it('forwards the request bytes unchanged when nothing needs rewriting, unknown fields included', async () => {
    const body =
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","name":"ann"}],"seed":1.0,' +
      '"logprobs":true,"top_logprobs":2,"parallel_tool_calls":false,"metadata":{"k":"v"},' +
      '"some_future_field":{"nested":[1,2,{"x":null}]},"temperature":0}';
    const res = await call('POST', '/v1/chat/completions', { body });
    assert.equal(res.status, 200);
    assert.equal(fake.requests[0]?.rawBody, body);
  });

  it('rewrites only model and stream_options when it must', async () => {
    const res = await chat({
      stream: true,
      future: { a: 1 },
      tools: [{ type: 'function', function: { name: 'f' } }],
      tool_choice: 'none',
    });
    assert.equal(res.status, 200);
    const sent = fake.requests[0]?.body as Record<string, unknown>;
    assert.deepEqual(sent.future, { a: 1 });
    assert.equal(sent.tool_choice, 'none');
    assert.deepEqual(sent.stream_options, { include_usage: true });
  });

  it('returns the upstream response byte for byte: explicit nulls and new fields included', async () => {
    const upstreamBody =
      '{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,' +
      '"message":{"role":"assistant","content":null,"refusal":"I cannot help with that.","annotations":[]},' +
      '"logprobs":{"content":[],"refusal":null},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,' +
      '"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1},"brand_new_detail":{"x":1}},"system_fingerprint":null,' +
      '"service_tier":"flex","a_new_top_level_field":[1,"two",null]}';
    fake.script({ kind: 'raw', text: upstreamBody });
    const res = await chat({});
    assert.equal(res.status, 200);
    assert.equal(res.text, upstreamBody);
  });

  it('returns base64 embeddings untouched', async () => {
    const res = await call('POST', '/v1/embeddings', {
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'hello', encoding_format: 'base64' }),
    });
    assert.equal(res.status, 200);
    assert.equal(typeof res.json.data[0].embedding, 'string');
    const floats = await call('POST', '/v1/embeddings', {
      body: JSON.stringify({ model: 'text-embedding-3-small', input: 'hello' }),
    });
    const decoded = new Float32Array(
      new Uint8Array(Buffer.from(res.json.data[0].embedding, 'base64')).buffer,
    );
    assert.deepEqual(
      [...decoded],
      floats.json.data[0].embedding.map((x: number) => Math.fround(x)),
    );
  });

  it('turns an upstream 401 into a 502 that does not blame the client or reveal the provider key', async () => {
    fake.script({ kind: 'error', status: 401, message: `Incorrect API key provided: ${PROVIDER_KEY}.` });
    const res = await chat({});
    assert.equal(res.status, 502);
    assertOpenAIError(res.json, 'upstream_auth_failed');
    assert.ok(!res.text.includes(PROVIDER_KEY));
    assert.ok(!res.text.includes('sk-'));
  });

  it('keeps an upstream 400 with its code and param, scrubbing anything secret from the message', async () => {
    fake.script({
      kind: 'error',
      status: 400,
      code: 'context_length_exceeded',
      param: 'messages',
      message: `This model's maximum context length is 128000 tokens (key ${PROVIDER_KEY}, via https://user:pw@proxy.internal/v1).`,
    });
    const res = await chat({});
    assert.equal(res.status, 400);
    assert.equal(res.json.error.code, 'context_length_exceeded');
    assert.equal(res.json.error.param, 'messages');
    assert.ok(!res.text.includes(PROVIDER_KEY));
    assert.ok(!res.text.includes('user:pw'));
  });

  it('answers 502 upstream_bad_response for malformed JSON in a 200', async () => {
    fake.script({ kind: 'raw', text: '{"id": "chatcmpl-x", "choices": [' });
    const res = await chat({});
    assert.equal(res.status, 502);
    assertOpenAIError(res.json, 'upstream_bad_response');
  });

  it('answers 502 upstream_unavailable when the upstream resets the connection', async () => {
    fake.script({ kind: 'reset' });
    const res = await chat({});
    assert.equal(res.status, 502);
    assertOpenAIError(res.json, 'upstream_unavailable');
  });

  it('never writes a team key or the provider key into the logs', async () => {
    await chat({});
    await chat({}, { authorization: 'Bearer tg-some-wrong-key-123' });
    const text = gw.logs.text();
    assert.ok(!text.includes(team.key));
    assert.ok(!text.includes('tg-some-wrong-key-123'));
    assert.ok(!text.includes(PROVIDER_KEY));
    assert.ok(!text.includes('"hi"'), 'prompts are not logged by default');
    assert.ok(gw.logs.lines.some((l) => l.keyId === team.keyId));
  });
});
