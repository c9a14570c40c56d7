// Anthropic's Messages API on the fake upstream: request validation, x-api-key auth and scripted
// failures (errors, mid-stream error events, cuts, stalls), all in Anthropic's shapes and headers.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../../src/fake-upstream/server.js';
import {
  ANTHROPIC_HEADERS,
  BASE,
  USER,
  assertAnthropicHeaders,
  errorOf,
  post,
  sseEvents,
} from './anthropic-helpers.js';
import type { AnthropicMessage } from './anthropic-helpers.js';
import { postJson, readJson, readUntilError, sseData } from './helpers.js';
import type { ErrorResponse } from './helpers.js';

void describe('fake upstream: Anthropic validation', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream();
  });
  after(() => up.close());

  async function rejects(body: unknown, message: string | RegExp, headers?: Record<string, string>) {
    const res = await post(up, body, headers);
    assert.equal(res.status, 400);
    assertAnthropicHeaders(res);
    const err = await errorOf(res);
    assert.equal(err.error.type, 'invalid_request_error');
    if (typeof message === 'string') assert.equal(err.error.message, message);
    else assert.match(err.error.message, message);
  }

  void it('requires alternating roles, starting with the user', async () => {
    await rejects(
      { ...BASE, messages: [...USER, { role: 'user', content: 'again' }] },
      'messages: roles must alternate between "user" and "assistant", but found multiple "user" roles in a row',
    );
    await rejects(
      {
        ...BASE,
        messages: [...USER, { role: 'assistant', content: 'a' }, { role: 'assistant', content: 'b' }],
      },
      'messages: roles must alternate between "user" and "assistant", but found multiple "assistant" roles in a row',
    );
    await rejects(
      { ...BASE, messages: [{ role: 'assistant', content: 'Hi' }, ...USER] },
      'messages: first message must use the "user" role',
    );
    await rejects(
      { ...BASE, messages: [{ role: 'system', content: 'x' }, ...USER] },
      /^messages: Unexpected role "system"/,
    );
    await rejects(
      { ...BASE, messages: [{ role: 'tool', content: 'x' }] },
      "messages.0.role: Input should be 'user' or 'assistant'",
    );
    await rejects({ ...BASE, messages: [] }, 'messages: at least one message is required');
    // A final assistant turn (prefill) is fine.
    const prefill = await post(up, { ...BASE, messages: [...USER, { role: 'assistant', content: 'Sure:' }] });
    assert.equal(prefill.status, 200);
    await prefill.arrayBuffer();
  });

  void it('requires model and an integer max_tokens, and rejects OpenAI-only fields', async () => {
    await rejects({ model: 'claude-x', messages: USER }, 'max_tokens: Field required');
    await rejects({ ...BASE, max_tokens: 1.5 }, 'max_tokens: Input should be a valid integer');
    await rejects({ ...BASE, max_tokens: 0 }, 'max_tokens: Input should be greater than or equal to 1');
    await rejects({ max_tokens: 10, messages: USER }, 'model: Field required');
    await rejects(
      { ...BASE, stream_options: { include_usage: true } },
      'stream_options: Extra inputs are not permitted',
    );
    await rejects({ ...BASE, x_fake: { chunks: 2 } }, 'x_fake: Extra inputs are not permitted');
    await rejects(
      { ...BASE, messages: [{ role: 'user', content: 'hi', name: 'bob' }] },
      'messages.0.name: Extra inputs are not permitted',
    );
    await rejects({ ...BASE, temperature: 1.5 }, 'temperature: Input should be less than or equal to 1');
    await rejects({ ...BASE, tool_choice: 'auto' }, /^tool_choice: Input should be a valid dictionary/);
    await rejects(
      { ...BASE, tools: [{ type: 'function', function: { name: 'f' } }] },
      'tools.0.custom.name: Field required',
    );
  });

  void it('rejects empty content, a missing anthropic-version and bad JSON', async () => {
    await rejects(
      { ...BASE, messages: [{ role: 'user', content: [{ type: 'text', text: '' }] }] },
      'messages: text content blocks must be non-empty',
    );
    await rejects(
      { ...BASE, messages: [{ role: 'user', content: '' }] },
      'messages.0: all messages must have non-empty content except for the optional final assistant message',
    );
    const res = await postJson(`${up.url}/messages`, BASE);
    assert.equal(res.status, 400);
    assert.equal((await errorOf(res)).error.message, 'anthropic-version: header is required');
    await rejects(BASE, 'anthropic-version: "2024-10-22" is not a valid version', {
      'anthropic-version': '2024-10-22',
    });
    await rejects('{"model":', /JSON/);
  });
});

void describe('fake upstream: Anthropic auth', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ apiKey: 'sk-ant-test' });
  });
  after(() => up.close());

  void it('answers 401 authentication_error without the right x-api-key, leaving the script queue alone', async () => {
    up.script({ kind: 'error', status: 500 });
    const none = await post(up, BASE, { authorization: 'Bearer sk-ant-test' });
    assert.equal(none.status, 401);
    assertAnthropicHeaders(none);
    assert.deepEqual((await errorOf(none)).error, {
      type: 'authentication_error',
      message: 'x-api-key header is required',
    });
    const wrong = await post(up, BASE, { 'x-api-key': 'sk-ant-nope' });
    assert.equal(wrong.status, 401);
    assert.deepEqual((await errorOf(wrong)).error, {
      type: 'authentication_error',
      message: 'invalid x-api-key',
    });
    assert.equal(up.pendingScripts, 1);
    up.reset();

    const ok = await post(up, BASE, { 'x-api-key': 'sk-ant-test' });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    // The OpenAI routes still want the bearer token.
    const chat = await postJson(
      `${up.url}/chat/completions`,
      { model: 'gpt-4o-mini', messages: USER },
      {
        headers: { 'x-api-key': 'sk-ant-test' },
      },
    );
    assert.equal(chat.status, 401);
    assert.equal((await readJson<ErrorResponse>(chat)).error.type, 'invalid_request_error');
  });
});

void describe('fake upstream: Anthropic scripted answers', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ chunks: 5 });
  });
  afterEach(() => up.reset());
  after(() => up.close());

  void it('sends a scripted 429 as rate_limit_error with retry-after and exhausted request headers', async () => {
    up.script(
      { kind: 'error', status: 429, headers: { 'Retry-After': '3' } },
      { kind: 'error', status: 429 },
    );
    const t0 = Date.now();
    const res = await post(up, BASE);
    assert.equal(res.status, 429);
    assertAnthropicHeaders(res);
    assert.equal(res.headers.get('retry-after'), '3');
    assert.equal(res.headers.get('anthropic-ratelimit-requests-remaining'), '0');
    const reset = Date.parse(res.headers.get('anthropic-ratelimit-requests-reset')!);
    assert.ok(reset >= t0 + 2000 && reset <= Date.now() + 4000, `reset ${reset - t0}ms from now`);
    const body = await errorOf(res);
    assert.equal(body.error.type, 'rate_limit_error');
    assert.match(body.error.message, /^This request would exceed the rate limit for your organization/);
    const plain = await post(up, BASE);
    assert.equal(plain.headers.get('retry-after'), '1');
    await plain.arrayBuffer();
  });

  void it('maps statuses to Anthropic error types, honouring type, message and body overrides', async () => {
    const cases: [number, string, string][] = [
      [529, 'overloaded_error', 'Overloaded'],
      [500, 'api_error', 'Internal server error'],
      [400, 'invalid_request_error', 'Invalid request'],
      [401, 'authentication_error', 'invalid x-api-key'],
      [403, 'permission_error', 'Your API key does not have permission to use the specified resource.'],
      [404, 'not_found_error', 'model: claude-sonnet-4-5'],
    ];
    up.script(...cases.map(([status]) => ({ kind: 'error' as const, status })));
    for (const [status, type, message] of cases) {
      const res = await post(up, BASE);
      assert.equal(res.status, status);
      assertAnthropicHeaders(res);
      assert.deepEqual((await errorOf(res)).error, { type, message }, String(status));
    }
    up.script(
      {
        kind: 'error',
        status: 400,
        type: 'invalid_request_error',
        message: 'prompt is too long: 210000 tokens > 200000 maximum',
      },
      { kind: 'error', status: 503, body: 'upstream connect error' },
    );
    const long = await post(up, BASE);
    assert.equal((await errorOf(long)).error.message, 'prompt is too long: 210000 tokens > 200000 maximum');
    const raw = await post(up, BASE);
    assert.equal(raw.status, 503);
    assert.equal(await raw.text(), 'upstream connect error');
    // The same script on an OpenAI route still answers in OpenAI's shape.
    up.script({ kind: 'error', status: 529 });
    const chat = await postJson(`${up.url}/chat/completions`, { model: 'gpt-4o-mini', messages: USER });
    assert.equal(chat.status, 529);
    assert.equal((await readJson<ErrorResponse>(chat)).error.type, 'server_error');
  });

  void it('sends an error event mid-stream after k frames, then ends the stream', async () => {
    up.script({ kind: 'stream', errorAfter: 4 });
    // The scripted stream applies even though the request did not ask for one.
    const res = await post(up, BASE);
    assert.equal(res.status, 200);
    assertAnthropicHeaders(res);
    const { text, failed } = await readUntilError(res);
    assert.equal(failed, false);
    const events = sseEvents(text);
    assert.deepEqual(
      events.map((e) => e.event),
      ['message_start', 'ping', 'content_block_start', 'content_block_delta', 'error'],
    );
    assert.deepEqual(JSON.parse(events[4]!.data), {
      type: 'error',
      error: { type: 'overloaded_error', message: 'Overloaded' },
    });

    up.script({
      kind: 'stream',
      errorAfter: 0,
      error: { type: 'api_error', message: 'Internal server error' },
    });
    const first = sseEvents(await (await post(up, BASE)).text());
    assert.deepEqual(first, [
      {
        event: 'error',
        data: '{"type":"error","error":{"type":"api_error","message":"Internal server error"}}',
      },
    ]);
  });

  void it('sends a mid-stream error on OpenAI routes as a data-only error object', async () => {
    up.script({ kind: 'stream', errorAfter: 2 });
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'gpt-4o-mini',
      messages: USER,
      stream: true,
    });
    const data = sseData(await res.text());
    assert.equal(data.length, 3);
    assert.equal(JSON.parse(data[2]!).error.type, 'server_error');
  });

  void it('cuts an Anthropic stream after k frames', async () => {
    up.script({ kind: 'stream', cutAfter: 3, chunks: 2 });
    const cut = await post(up, { ...BASE, stream: true });
    const { text, failed } = await readUntilError(cut);
    assert.equal(failed, true);
    assert.deepEqual(
      sseEvents(text).map((e) => e.event),
      ['message_start', 'ping', 'content_block_start'],
    );
    assert.deepEqual(up.aborts, []);
  });

  void it('reports a client abort of a stalled /v1/messages request', async () => {
    up.script({ kind: 'stall' });
    const ac = new AbortController();
    const arrived = new Promise<void>((resolve) => up.once('request', () => resolve()));
    const pending = postJson(`${up.url}/messages`, BASE, {
      headers: ANTHROPIC_HEADERS,
      signal: ac.signal,
    }).catch((e: unknown) => e);
    await arrived;
    assert.equal(up.inFlight, 1);
    ac.abort();
    assert.ok((await pending) instanceof Error);
    await up.waitForAbort(1000);
    assert.equal(up.aborts.at(-1)?.path, '/v1/messages');
    assert.equal(up.inFlight, 0);
  });

  void it('sends scripted events with or without event names, and ok/raw with Anthropic headers', async () => {
    up.script(
      {
        kind: 'stream',
        events: [{ event: 'ping', data: { type: 'ping' } }, { event: 'weird', data: 'not json' }, 'plain'],
      },
      { kind: 'ok', body: { type: 'message', content: [] } },
      { kind: 'ok', status: 201, headers: { 'x-extra': '1' } },
      { kind: 'raw', text: '{"type":"mess' },
    );
    const res = await post(up, BASE);
    assert.equal(
      await res.text(),
      'event: ping\ndata: {"type":"ping"}\n\nevent: weird\ndata: not json\n\ndata: plain\n\n',
    );
    const ok = await post(up, BASE);
    assertAnthropicHeaders(ok);
    assert.deepEqual(await ok.json(), { type: 'message', content: [] });
    const normal = await post(up, BASE);
    assert.equal(normal.status, 201);
    assert.equal(normal.headers.get('x-extra'), '1');
    assertAnthropicHeaders(normal);
    assert.equal((await readJson<AnthropicMessage>(normal)).type, 'message');
    const raw = await post(up, BASE);
    assertAnthropicHeaders(raw);
    assert.equal(await raw.text(), '{"type":"mess');
  });

  void it('applies x-fake-latency-ms from the headers', async () => {
    const t0 = Date.now();
    const res = await post(up, BASE, { 'x-fake-latency-ms': '40' });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
    assert.ok(Date.now() - t0 >= 35);
  });
});
