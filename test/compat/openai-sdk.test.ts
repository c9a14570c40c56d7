// The official `openai` npm SDK pointed at the gateway, unchanged but for baseURL and key:
// every call shape a team uses must work, and every gateway error must surface as the SDK's
// own error class.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const PROVIDER_KEY = 'sk-test-provider-secret-0123456789';

describe('the official openai SDK against the gateway', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('search', ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small']);
  let client: OpenAI;

  before(async () => {
    fake = await startFakeUpstream({ apiKey: PROVIDER_KEY });
    // One attempt per request: these tests are about how each upstream error reaches the SDK.
    gw = await startGateway(baseConfig(fake.url, [team], { routing: { retry: { maxAttempts: 1 } } }));
    client = new OpenAI({ apiKey: team.key, baseURL: gw.baseURL, maxRetries: 0 });
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it('creates a non-streaming chat completion with every field the upstream sent', async () => {
    const res = await client.chat.completions.create({
      model: 'gpt-4o',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.model, 'gpt-4o-2024-08-06');
    assert.equal(res.choices[0]?.finish_reason, 'stop');
    assert.equal(res.choices[0]?.message.refusal, null);
    assert.equal(res.system_fingerprint, 'fp_fake');
    assert.ok(res.usage && res.usage.total_tokens > 0);
    assert.equal(res.usage.completion_tokens_details?.reasoning_tokens, 0);
    // The upstream saw the deployment's model name, not the alias the client used.
    assert.equal((fake.requests[0]?.body as { model: string }).model, 'gpt-4o-2024-08-06');
  });

  it('streams a chat completion chunk by chunk and hides the usage chunk when not asked', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
    });
    let text = '';
    let finish: string | null | undefined;
    let sawUsage = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) sawUsage = true;
    }
    assert.equal(text, 'Hello from the fake upstream');
    assert.equal(finish, 'stop');
    assert.equal(sawUsage, false);
    // The gateway still asked the upstream for usage, for its own accounting.
    assert.deepEqual((fake.requests[0]?.body as { stream_options: unknown }).stream_options, {
      include_usage: true,
    });
  });

  it('passes the usage chunk to a client that asked for it', async () => {
    const stream = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) if (chunk.usage) usage = chunk.usage;
    assert.ok(usage);
    assert.equal(usage.completion_tokens, 5);
  });

  it('streams tool calls whose argument deltas reassemble into valid JSON', async () => {
    const stream = client.chat.completions.stream({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: {
              type: 'object',
              properties: { city: { type: 'string' }, days: { type: 'integer' } },
              required: ['city', 'days'],
            },
          },
        },
      ],
      tool_choice: 'auto',
    });
    const final = await stream.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'fake', days: 1 });
    const sent = fake.requests[0]?.body as Record<string, unknown>;
    assert.equal(sent.tool_choice, 'auto');
    assert.equal((sent.tools as unknown[]).length, 1);
  });

  it('passes response_format json_schema through unchanged and returns structured output', async () => {
    const response_format = {
      type: 'json_schema' as const,
      json_schema: {
        name: 'person',
        strict: true,
        schema: {
          type: 'object',
          properties: { name: { type: 'string' }, age: { type: 'integer' } },
          required: ['name', 'age'],
          additionalProperties: false,
        },
      },
    };
    const res = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Invent a person' }],
      response_format,
      seed: 7,
    });
    const parsed = JSON.parse(res.choices[0]?.message.content ?? '') as { name: unknown; age: unknown };
    assert.equal(typeof parsed.name, 'string');
    assert.equal(typeof parsed.age, 'number');
    const sent = fake.requests[0]?.body as Record<string, unknown>;
    assert.deepEqual(sent.response_format, response_format);
    assert.equal(sent.seed, 7);
  });

  it('creates embeddings, as floats and as base64', async () => {
    const floats = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
    assert.equal(floats.data.length, 2);
    assert.equal(floats.data[0]?.embedding.length, 8);
    // The SDK asks for base64 by default and decodes it; explicit float must match it.
    const explicit = await client.embeddings.create({
      model: 'text-embedding-3-small',
      input: ['a', 'b'],
      encoding_format: 'float',
    });
    assert.deepEqual(
      floats.data.map((d) => d.embedding.map((x) => Math.fround(x))),
      explicit.data.map((d) => d.embedding.map((x) => Math.fround(x))),
    );
    assert.ok(floats.usage.prompt_tokens > 0);
  });

  it("lists only the team's models", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list()) ids.push(m.id);
    assert.deepEqual(ids.sort(), ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small']);
  });

  it('raises BadRequestError for a wrong field type, naming the field', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 'ten' as unknown as number,
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError);
        assert.equal(err.status, 400);
        assert.equal(err.param, 'max_tokens');
        return true;
      },
    );
    assert.equal(fake.requests.length, 0);
  });

  it('raises AuthenticationError for a wrong key', async () => {
    const bad = new OpenAI({ apiKey: 'tg-not-a-real-key', baseURL: gw.baseURL, maxRetries: 0 });
    await assert.rejects(bad.models.list(), (err: unknown) => {
      assert.ok(err instanceof OpenAI.AuthenticationError);
      assert.equal(err.code, 'invalid_api_key');
      return true;
    });
  });

  it('raises NotFoundError for a model the team may not use', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-secret', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.NotFoundError);
        assert.equal(err.code, 'model_not_found');
        return true;
      },
    );
  });

  it("raises RateLimitError with the upstream's Retry-After", async () => {
    fake.script({ kind: 'error', status: 429, headers: { 'retry-after': '3', 'retry-after-ms': '2500' } });
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.RateLimitError);
        assert.equal(err.headers?.get('retry-after'), '3');
        assert.equal(err.headers?.get('retry-after-ms'), '2500');
        assert.equal(err.code, 'rate_limit_exceeded');
        return true;
      },
    );
  });

  it('raises InternalServerError for an upstream 5xx', async () => {
    fake.script({ kind: 'error', status: 503 });
    await assert.rejects(
      client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.InternalServerError);
        assert.equal(err.status, 503);
        return true;
      },
    );
  });

  it('lets the SDK retry on its own and succeed after an upstream 500', async () => {
    fake.script({ kind: 'error', status: 500, headers: { 'retry-after-ms': '10' } });
    const retrying = new OpenAI({ apiKey: team.key, baseURL: gw.baseURL, maxRetries: 2 });
    const res = await retrying.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(res.choices[0]?.finish_reason, 'stop');
    assert.equal(fake.requests.length, 2);
  });
});
