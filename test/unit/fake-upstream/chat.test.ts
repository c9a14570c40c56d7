// Chat completions from the fake upstream, over real HTTP: the non-stream and SSE wire formats must
// match OpenAI's closely enough that the gateway's parsers can be tested against it.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../../src/fake-upstream/server.js';
import { parseStream, postJson, readJson, USER_MESSAGES } from './helpers.js';
import type { ChatCompletion, Chunk, ErrorResponse } from './helpers.js';

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather for a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        days: { type: 'integer' },
        metric: { type: 'boolean' },
        note: { type: 'string' },
      },
      required: ['city', 'days', 'metric'],
    },
  },
};
const TIME_TOOL = {
  type: 'function',
  function: {
    name: 'get_time',
    parameters: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] },
  },
};

function contentOf(chunks: Chunk[], index = 0): string {
  return chunks
    .flatMap((c) => c.choices)
    .filter((c) => c.index === index)
    .map((c) => c.delta.content ?? '')
    .join('');
}

void describe('fake upstream: chat completions', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ chunks: 5 });
  });
  after(() => up.close());

  void it('answers a non-stream request in OpenAI shape, with OpenAI-like headers', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'gpt-4o-mini',
      messages: USER_MESSAGES,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.match(res.headers.get('x-request-id') ?? '', /^req_[0-9a-f]{32}$/);
    assert.match(res.headers.get('openai-processing-ms') ?? '', /^\d+$/);
    for (const h of ['limit-requests', 'limit-tokens', 'remaining-requests', 'remaining-tokens']) {
      assert.match(res.headers.get(`x-ratelimit-${h}`) ?? '', /^\d+$/, h);
    }
    assert.equal(res.headers.get('x-ratelimit-reset-requests'), '1s');
    assert.equal(res.headers.get('x-ratelimit-reset-tokens'), '6m0s');

    const body = await readJson<ChatCompletion>(res);
    assert.match(body.id, /^chatcmpl-[A-Za-z0-9]{29}$/);
    assert.equal(typeof body.created, 'number');
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 5);
    const promptTokens = Math.ceil(JSON.stringify(USER_MESSAGES).length / 4);
    assert.deepEqual(body, {
      id: body.id,
      object: 'chat.completion',
      created: body.created,
      model: 'gpt-4o-mini',
      system_fingerprint: 'fp_fake',
      choices: [
        {
          index: 0,
          message: {
            role: 'assistant',
            content: 'Hello from the fake upstream',
            refusal: null,
            annotations: [],
          },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage: {
        prompt_tokens: promptTokens,
        completion_tokens: 5,
        total_tokens: promptTokens + 5,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      },
      service_tier: 'default',
    });
  });

  void it('honours n, echoes any model and counts tokens over all choices', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'my/own-model',
      messages: USER_MESSAGES,
      n: 3,
    });
    const body = await readJson<ChatCompletion>(res);
    assert.equal(body.model, 'my/own-model');
    assert.deepEqual(
      body.choices.map((c) => c.index),
      [0, 1, 2],
    );
    assert.equal(body.usage.completion_tokens, 15);
  });

  void it('cuts content at max_tokens with finish_reason length', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      max_tokens: 2,
    });
    const body = await readJson<ChatCompletion>(res);
    assert.equal(body.choices[0]?.message.content, 'Hello from');
    assert.equal(body.choices[0]?.finish_reason, 'length');
    assert.equal(body.usage.completion_tokens, 2);
  });

  void it('streams SSE frames like OpenAI, without usage unless asked', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'gpt-4o',
      messages: USER_MESSAGES,
      stream: true,
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(res.headers.get('x-request-id'));
    const chunks = parseStream(await res.text());
    assert.equal(chunks.length, 1 + 5 + 1);
    const first = chunks[0]!;
    for (const c of chunks) {
      assert.equal(c.id, first.id);
      assert.equal(c.created, first.created);
      assert.equal(c.model, 'gpt-4o');
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal('usage' in c, false);
      assert.equal(c.choices.length, 1);
    }
    assert.deepEqual(first.choices[0], {
      index: 0,
      delta: { role: 'assistant', content: '', refusal: null },
      logprobs: null,
      finish_reason: null,
    });
    assert.equal(contentOf(chunks), 'Hello from the fake upstream');
    assert.deepEqual(chunks.at(-1)!.choices[0], {
      index: 0,
      delta: {},
      logprobs: null,
      finish_reason: 'stop',
    });
  });

  void it('adds a usage chunk and usage:null everywhere else with include_usage', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'gpt-4o',
      messages: USER_MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = parseStream(await res.text());
    assert.equal(chunks.length, 1 + 5 + 1 + 1);
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage?.completion_tokens, 5);
    assert.equal(last.usage?.total_tokens, last.usage.prompt_tokens + 5);
  });

  void it('honours per-request chunk counts from x_fake and from headers', async () => {
    const viaBody = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      stream: true,
      x_fake: { chunks: 12 },
    });
    const bodyChunks = parseStream(await viaBody.text());
    assert.equal(bodyChunks.length, 12 + 2);
    assert.equal(contentOf(bodyChunks).split(' ').length, 12);

    const viaHeader = await postJson(
      `${up.url}/chat/completions`,
      { model: 'm', messages: USER_MESSAGES },
      { headers: { 'x-fake-chunks': '2' } },
    );
    const body = await readJson<ChatCompletion>(viaHeader);
    assert.equal(body.choices[0]?.message.content, 'Hello from');
    assert.equal(body.usage.completion_tokens, 2);
  });

  void it('spaces chunks by chunkDelayMs and delays headers by latencyMs', async () => {
    const t0 = Date.now();
    const res = await postJson(
      `${up.url}/chat/completions`,
      { model: 'm', messages: USER_MESSAGES, stream: true, x_fake: { chunks: 2, latencyMs: 40 } },
      { headers: { 'x-fake-chunk-delay-ms': '15' } },
    );
    const headersAt = Date.now() - t0;
    assert.ok(headersAt >= 35, `headers after ${headersAt}ms`);
    parseStream(await res.text());
    // 5 frames (role, 2 content, finish, [DONE]) -> 4 gaps of 15ms.
    assert.ok(Date.now() - t0 >= 35 + 55, `stream done after ${Date.now() - t0}ms`);
  });

  void it('survives backpressure on long streams', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      stream: true,
      x_fake: { chunks: 1000 },
    });
    const chunks = parseStream(await res.text());
    assert.equal(chunks.length, 1002);
  });

  void it('answers with a tool call, arguments filled from the schema', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      tools: [WEATHER_TOOL, TIME_TOOL],
    });
    const body = await readJson<ChatCompletion>(res);
    const choice = body.choices[0]!;
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, null);
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls[0]!;
    assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'fake', days: 1, metric: true });
  });

  void it('follows tool_choice: a named function, or none', async () => {
    const named = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    const call = (await readJson<ChatCompletion>(named)).choices[0]!.message.tool_calls![0]!;
    assert.equal(call.function.name, 'get_time');
    assert.deepEqual(JSON.parse(call.function.arguments), { tz: 'fake' });

    const none = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      tools: [WEATHER_TOOL],
      tool_choice: 'none',
    });
    const msg = (await readJson<ChatCompletion>(none)).choices[0]!.message;
    assert.equal(msg.content, 'Hello from the fake upstream');
    assert.equal(msg.tool_calls, undefined);
  });

  void it('streams parallel tool calls whose argument pieces reassemble to valid JSON', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      tools: [WEATHER_TOOL, TIME_TOOL],
      stream: true,
      x_fake: { parallel_tools: true },
    });
    const chunks = parseStream(await res.text());
    const deltas = chunks.flatMap((c) => c.choices.flatMap((ch) => ch.delta.tool_calls ?? []));
    const calls = new Map<number, { id?: string; name?: string; args: string; pieces: number }>();
    for (const d of deltas) {
      const call = calls.get(d.index) ?? { args: '', pieces: 0 };
      if (d.id) {
        assert.equal(call.id, undefined, 'id only in the first delta of a call');
        assert.equal(d.type, 'function');
        assert.equal(d.function.arguments, '');
        call.id = d.id;
        call.name = d.function.name;
      } else {
        assert.equal(d.function.name, undefined);
        call.args += d.function.arguments;
        call.pieces++;
      }
      calls.set(d.index, call);
    }
    assert.deepEqual([...calls.keys()], [0, 1]);
    assert.equal(calls.get(0)?.name, 'get_weather');
    assert.ok((calls.get(0)?.pieces ?? 0) >= 3);
    assert.deepEqual(JSON.parse(calls.get(0)?.args ?? ''), { city: 'fake', days: 1, metric: true });
    assert.equal(calls.get(1)?.name, 'get_time');
    assert.deepEqual(JSON.parse(calls.get(1)?.args ?? ''), { tz: 'fake' });
    assert.deepEqual(chunks[0]!.choices[0]!.delta.role, 'assistant');
    assert.equal(chunks.at(-1)!.choices[0]!.finish_reason, 'tool_calls');
  });

  void it('makes a single call when parallel_tool_calls is false', async () => {
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      tools: [WEATHER_TOOL, TIME_TOOL],
      parallel_tool_calls: false,
      x_fake: { parallel_tools: true },
    });
    assert.equal((await readJson<ChatCompletion>(res)).choices[0]?.message.tool_calls?.length, 1);
  });

  void it('answers JSON for response_format json_object and json_schema, also streamed', async () => {
    const obj = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      response_format: { type: 'json_object' },
    });
    const objContent = (await readJson<ChatCompletion>(obj)).choices[0]?.message.content;
    assert.equal(typeof JSON.parse(objContent ?? ''), 'object');

    const schema = {
      type: 'object',
      properties: { name: { type: 'string' }, age: { type: 'integer' }, tags: { type: 'array' } },
      required: ['name', 'age', 'tags'],
      additionalProperties: false,
    };
    const res = await postJson(`${up.url}/chat/completions`, {
      model: 'm',
      messages: USER_MESSAGES,
      stream: true,
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema } },
    });
    const chunks = parseStream(await res.text());
    assert.equal(chunks.length, 1 + 5 + 1);
    assert.deepEqual(JSON.parse(contentOf(chunks)), { name: 'fake', age: 1, tags: [] });
  });

  void it('rejects invalid JSON and missing parameters with OpenAI errors', async () => {
    const bad = await postJson(`${up.url}/chat/completions`, '{"model": ');
    assert.equal(bad.status, 400);
    const badBody = await readJson<ErrorResponse>(bad);
    assert.equal(badBody.error.type, 'invalid_request_error');
    assert.match(badBody.error.message, /could not parse the JSON body/);
    assert.deepEqual(Object.keys(badBody.error), ['message', 'type', 'param', 'code']);

    for (const [body, param] of [
      [{ messages: USER_MESSAGES }, 'model'],
      [{ model: 'm' }, 'messages'],
      [{ model: 'm', messages: USER_MESSAGES, n: 0 }, 'n'],
    ] as const) {
      const res = await postJson(`${up.url}/chat/completions`, body);
      assert.equal(res.status, 400);
      assert.ok(res.headers.get('x-request-id'));
      assert.equal((await readJson<ErrorResponse>(res)).error.param, param);
    }
  });

  void it('answers unknown routes with a 404 OpenAI error', async () => {
    const res = await fetch(`${up.url}/nope`, { method: 'POST', body: '{}' });
    assert.equal(res.status, 404);
    assert.deepEqual(await res.json(), {
      error: {
        message: 'Invalid URL (POST /v1/nope)',
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    });
    const get = await fetch(`${up.url}/chat/completions`);
    assert.equal(get.status, 404);
    await get.arrayBuffer();
  });

  void it('records requests in arrival order', async () => {
    up.reset();
    await postJson(`${up.url}/chat/completions?x=1`, {
      model: 'a',
      messages: USER_MESSAGES,
      x_fake: { chunks: 1 },
    });
    await fetch(`${up.url}/models`, { headers: { 'X-Custom': 'yes' } }).then((r) => r.arrayBuffer());
    assert.equal(up.requests.length, 2);
    const [chat, models] = up.requests;
    assert.equal(chat?.method, 'POST');
    assert.equal(chat?.path, '/v1/chat/completions');
    assert.deepEqual(chat?.body, { model: 'a', messages: USER_MESSAGES, x_fake: { chunks: 1 } });
    assert.equal(chat?.rawBody, JSON.stringify(chat?.body));
    assert.equal(chat?.headers['content-type'], 'application/json');
    assert.equal(models?.method, 'GET');
    assert.equal(models?.body, undefined);
    assert.equal(models?.headers['x-custom'], 'yes');
    assert.ok((chat?.at ?? 0) <= (models?.at ?? 0));
    assert.equal(up.inFlight, 0);
  });
});
