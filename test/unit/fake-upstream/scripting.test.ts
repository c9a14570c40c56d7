// Scripted misbehaviour of the fake upstream (errors, resets, cut and stalled streams), client-abort
// detection and API-key checks: the failure modes the gateway's retry and timeout logic is tested with.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { ClientAbortInfo, FakeUpstream } from '../../../src/fake-upstream/server.js';
import { parseStream, postJson, readJson, readUntilError, sseData, USER_MESSAGES } from './helpers.js';
import type { ChatCompletion, ErrorResponse } from './helpers.js';

const CHAT = { model: 'gpt-4o-mini', messages: USER_MESSAGES };

function nextRequest(up: FakeUpstream): Promise<void> {
  return new Promise((resolve) => up.once('request', () => resolve()));
}

void describe('fake upstream: scripted answers', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ chunks: 4 });
  });
  afterEach(() => up.reset());
  after(() => up.close());

  void it('sends a scripted 429 with retry-after, then behaves normally again', async () => {
    up.script({ kind: 'error', status: 429, headers: { 'Retry-After': '2', 'retry-after-ms': '1500' } });
    assert.equal(up.pendingScripts, 1);
    const res = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(res.status, 429);
    assert.equal(res.headers.get('retry-after'), '2');
    assert.equal(res.headers.get('retry-after-ms'), '1500');
    assert.equal(res.headers.get('x-ratelimit-remaining-requests'), '0');
    assert.match(res.headers.get('x-request-id') ?? '', /^req_/);
    const body = await readJson<ErrorResponse>(res);
    assert.equal(body.error.type, 'requests');
    assert.equal(body.error.code, 'rate_limit_exceeded');
    assert.equal(body.error.param, null);
    assert.match(body.error.message, /^Rate limit reached for gpt-4o-mini .* Please try again in 1s\./);
    assert.equal(up.pendingScripts, 0);

    const ok = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });

  void it('consumes scripts in order, with OpenAI default messages and overrides', async () => {
    up.script(
      { kind: 'error', status: 500 },
      { kind: 'error', status: 503 },
      {
        kind: 'error',
        status: 429,
        type: 'insufficient_quota',
        code: 'insufficient_quota',
        message: 'No quota.',
      },
      { kind: 'error', status: 502, body: '<html>bad gateway</html>' },
    );
    const errors = [];
    for (let i = 0; i < 4; i++) {
      const res = await postJson(`${up.url}/chat/completions`, CHAT);
      errors.push({ status: res.status, text: await res.text() });
    }
    assert.deepEqual(JSON.parse(errors[0]!.text), {
      error: {
        message: 'The server had an error while processing your request. Sorry about that!',
        type: 'server_error',
        param: null,
        code: null,
      },
    });
    assert.equal(errors[1]!.status, 503);
    assert.equal(
      JSON.parse(errors[1]!.text).error.message,
      'The engine is currently overloaded, please try again later.',
    );
    assert.deepEqual(JSON.parse(errors[2]!.text).error, {
      message: 'No quota.',
      type: 'insufficient_quota',
      param: null,
      code: 'insufficient_quota',
    });
    assert.deepEqual(errors[3], { status: 502, text: '<html>bad gateway</html>' });
  });

  void it('leaves GET requests out of the script queue', async () => {
    up.script({ kind: 'error', status: 500 });
    const models = await fetch(`${up.url}/models`);
    assert.equal(models.status, 200);
    await models.arrayBuffer();
    assert.equal(up.pendingScripts, 1);
  });

  void it('sends exact ok and raw bodies, and normal answers with scripted headers', async () => {
    up.script(
      { kind: 'ok', body: { hello: 'world' } },
      { kind: 'raw', status: 200, text: '{"choices": [', headers: { 'Content-Type': 'application/json' } },
      { kind: 'ok', status: 201, headers: { 'x-extra': '1' } },
    );
    const a = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.deepEqual(await a.json(), { hello: 'world' });
    const b = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(await b.text(), '{"choices": [');
    const c = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(c.status, 201);
    assert.equal(c.headers.get('x-extra'), '1');
    assert.equal((await readJson<ChatCompletion>(c)).object, 'chat.completion');
  });

  void it('applies a scripted latency', async () => {
    up.script({ kind: 'error', status: 500, latencyMs: 40 });
    const t0 = Date.now();
    const res = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(res.status, 500);
    await res.arrayBuffer();
    assert.ok(Date.now() - t0 >= 35);
  });

  void it('resets the connection without a response, and does not count it as a client abort', async () => {
    up.script({ kind: 'reset' });
    await assert.rejects(postJson(`${up.url}/chat/completions`, CHAT), TypeError);
    const ok = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.deepEqual(up.aborts, []);
  });

  void it('cuts a stream after k frames, without [DONE]', async () => {
    up.script({ kind: 'stream', cutAfter: 3 });
    // The scripted stream applies even though the request did not ask for one.
    const res = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const { text, failed } = await readUntilError(res);
    assert.equal(failed, true);
    const data = sseData(text);
    assert.equal(data.length, 3);
    assert.ok(!data.includes('[DONE]'));
    assert.equal(JSON.parse(data[2]!).choices[0].delta.content, ' from');
    assert.deepEqual(up.aborts, []);
  });

  void it('sends the headers before cutting or stalling at frame 0', async () => {
    up.script({ kind: 'stream', cutAfter: 0 }, { kind: 'stream', stallAfter: 0 });
    const cut = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(cut.status, 200);
    assert.deepEqual(await readUntilError(cut), { text: '', failed: true });

    const ac = new AbortController();
    const stalled = await postJson(`${up.url}/chat/completions`, CHAT, { signal: ac.signal });
    assert.equal(stalled.status, 200);
    ac.abort();
    await up.waitForAbort(1000);
  });

  void it('streams scripted chunk counts and exact events', async () => {
    up.script(
      { kind: 'stream', chunks: 2 },
      { kind: 'stream', events: ['{"not":"openai"}', 'oops', '[DONE]'] },
    );
    const a = await postJson(`${up.url}/chat/completions`, { ...CHAT, stream: true });
    assert.equal(parseStream(await a.text()).length, 2 + 2);
    const b = await postJson(`${up.url}/chat/completions`, { ...CHAT, stream: true });
    assert.equal(await b.text(), 'data: {"not":"openai"}\n\ndata: oops\n\ndata: [DONE]\n\n');
  });

  void it('reports a client abort of a stalled request', async () => {
    up.script({ kind: 'stall' });
    const seen: ClientAbortInfo[] = [];
    const onAbort = (info: ClientAbortInfo): void => {
      seen.push(info);
    };
    up.on('clientAborted', onAbort);
    const ac = new AbortController();
    const arrived = nextRequest(up);
    const pending = postJson(`${up.url}/chat/completions`, CHAT, { signal: ac.signal }).catch(
      (e: unknown) => e,
    );
    await arrived;
    assert.equal(up.inFlight, 1);
    const abortedAt = Date.now();
    ac.abort();
    assert.ok((await pending) instanceof Error);
    const at = await up.waitForAbort(1000);
    up.off('clientAborted', onAbort);
    assert.ok(at >= abortedAt);
    assert.deepEqual(seen, [{ path: '/v1/chat/completions', at }]);
    assert.equal(up.inFlight, 0);
  });

  void it('stalls a stream after k frames and reports the abort when the client gives up', async () => {
    up.script({ kind: 'stream', stallAfter: 2 });
    const ac = new AbortController();
    const res = await postJson(
      `${up.url}/chat/completions`,
      { ...CHAT, stream: true },
      { signal: ac.signal },
    );
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (text.split('\n\n').length - 1 < 2) {
      const { value, done } = await reader.read();
      assert.equal(done, false);
      text += decoder.decode(value, { stream: true });
    }
    assert.equal(sseData(text).length, 2);
    assert.equal(up.inFlight, 1);
    ac.abort();
    await up.waitForAbort(1000);
    assert.equal(up.inFlight, 0);
  });

  void it('rejects waitForAbort when nothing aborts in time', async () => {
    await assert.rejects(up.waitForAbort(20), /no client abort/);
  });
});

void describe('fake upstream: API key', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ apiKey: 'sk-test-secret-key' });
  });
  after(() => up.close());

  void it('answers 401 with the sent key masked', async () => {
    const res = await postJson(`${up.url}/chat/completions`, CHAT, {
      headers: { authorization: 'Bearer sk-abcdefghijklmncd' },
    });
    assert.equal(res.status, 401);
    assert.ok(res.headers.get('x-request-id'));
    assert.deepEqual(await res.json(), {
      error: {
        message:
          'Incorrect API key provided: sk-ab*****cd. You can find your API key at https://platform.openai.com/account/api-keys.',
        type: 'invalid_request_error',
        param: null,
        code: 'invalid_api_key',
      },
    });
  });

  void it('answers 401 without a key, and 200 with the right one', async () => {
    const none = await postJson(`${up.url}/chat/completions`, CHAT);
    assert.equal(none.status, 401);
    assert.match((await readJson<ErrorResponse>(none)).error.message, /You didn't provide an API key/);

    const ok = await postJson(`${up.url}/chat/completions`, CHAT, {
      headers: { authorization: 'Bearer sk-test-secret-key' },
    });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
  });
});

void describe('fake upstream: close', () => {
  void it('closes promptly with stalled requests and pending latency', async () => {
    const up = await startFakeUpstream({ latencyMs: 60_000 });
    up.script({ kind: 'stall' });
    const arrived = nextRequest(up);
    const stalled = postJson(`${up.url}/chat/completions`, CHAT).catch((e: unknown) => e);
    await arrived;
    const slow = postJson(`${up.url}/chat/completions`, CHAT).catch((e: unknown) => e);
    while (up.inFlight < 2) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    await up.close();
    assert.ok(Date.now() - t0 < 500);
    assert.ok((await stalled) instanceof Error);
    assert.ok((await slow) instanceof Error);
    assert.deepEqual(up.aborts, []);
    await up.close();
  });
});
