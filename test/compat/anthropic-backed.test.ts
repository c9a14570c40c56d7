// The official openai SDK, unchanged, against models served by Anthropic (through the fake
// upstream's Messages API) and by an Azure OpenAI deployment: streams, tools, structured
// output and errors all look like OpenAI to the client.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const ANTHROPIC_KEY = 'sk-ant-test-secret-0123456789';
const AZURE_KEY = 'azure-test-secret-0123456789';

describe('the openai SDK against Anthropic- and Azure-backed models', () => {
  let anthropic: FakeUpstream;
  let azure: FakeUpstream;
  let gw: StartedGateway;
  let client: OpenAI;
  const team = makeTeam('apps');

  before(async () => {
    anthropic = await startFakeUpstream({ apiKey: ANTHROPIC_KEY });
    azure = await startFakeUpstream();
    gw = await startGateway({
      providers: {
        claude: { type: 'anthropic', baseUrl: anthropic.url, apiKey: ANTHROPIC_KEY },
        // The fake serves OpenAI paths under /v1; Azure's are under /openai/deployments/...
        azure: {
          type: 'azure',
          baseUrl: azure.url.replace(/\/v1$/, ''),
          apiKey: AZURE_KEY,
          apiVersion: '2024-10-21',
        },
      },
      models: {
        'claude-sonnet': { deployments: [{ provider: 'claude', model: 'claude-sonnet-4-5' }] },
        'gpt-4o-azure': { deployments: [{ provider: 'azure', model: 'prod-gpt4o' }] },
      },
      routing: { retry: { maxAttempts: 1 } },
      teams: [team.entry],
    });
    client = new OpenAI({ apiKey: team.key, baseURL: gw.baseURL, maxRetries: 0 });
  });
  after(async () => {
    await gw.close();
    await anthropic.close();
    await azure.close();
  });
  beforeEach(() => {
    anthropic.reset();
    azure.reset();
  });

  it('chats with Claude, with system prompt and usage in OpenAI terms', async () => {
    const res = await client.chat.completions.create({
      model: 'claude-sonnet',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello' },
      ],
      max_tokens: 100,
    });
    assert.equal(res.object, 'chat.completion');
    assert.equal(res.choices[0]?.finish_reason, 'stop');
    assert.ok((res.choices[0]?.message.content ?? '').length > 0);
    assert.ok(res.usage && res.usage.prompt_tokens > 0 && res.usage.completion_tokens > 0);
    const sent = anthropic.requests[0]!;
    assert.equal(sent.path, '/v1/messages');
    assert.equal(sent.headers['x-api-key'], ANTHROPIC_KEY);
    assert.equal((sent.body as { system: string }).system, 'Be brief.');
    assert.equal((sent.body as { model: string }).model, 'claude-sonnet-4-5');
  });

  it('streams from Claude, with tool-call argument deltas that reassemble', async () => {
    const stream = client.chat.completions.stream({
      model: 'claude-sonnet',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [
        {
          type: 'function',
          function: {
            name: 'get_weather',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
          },
        },
      ],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      stream_options: { include_usage: true },
    });
    const final = await stream.finalChatCompletion();
    const call = final.choices[0]?.message.tool_calls?.[0];
    assert.equal(final.choices[0]?.finish_reason, 'tool_calls');
    assert.ok(call && call.type === 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'fake' });
  });

  it('returns structured output from Claude as JSON content', async () => {
    const res = await client.chat.completions.create({
      model: 'claude-sonnet',
      messages: [{ role: 'user', content: 'Invent a person' }],
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'person',
          schema: {
            type: 'object',
            properties: { name: { type: 'string' }, age: { type: 'integer' } },
            required: ['name', 'age'],
          },
        },
      },
    });
    const parsed = JSON.parse(res.choices[0]?.message.content ?? '') as { name: unknown; age: unknown };
    assert.equal(typeof parsed.name, 'string');
    assert.equal(typeof parsed.age, 'number');
    assert.equal(res.choices[0]?.finish_reason, 'stop');
  });

  it("maps Claude's 529 overloaded to a retryable 5xx with Retry-After", async () => {
    anthropic.script({ kind: 'error', status: 529, headers: { 'retry-after': '2' } });
    await assert.rejects(
      client.chat.completions.create({ model: 'claude-sonnet', messages: [{ role: 'user', content: 'x' }] }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.InternalServerError);
        assert.equal(err.headers?.get('retry-after'), '2');
        return true;
      },
    );
  });

  it('refuses what Claude cannot do, naming the parameter, without calling it', async () => {
    await assert.rejects(
      client.chat.completions.create({
        model: 'claude-sonnet',
        messages: [{ role: 'user', content: 'x' }],
        n: 3,
      }),
      (err: unknown) => {
        assert.ok(err instanceof OpenAI.BadRequestError);
        assert.equal(err.param, 'n');
        return true;
      },
    );
    assert.equal(anthropic.requests.length, 0);
  });

  it('calls an Azure deployment by its URL, api-version and api-key', async () => {
    azure.script({ kind: 'ok' });
    const res = await client.chat.completions.create({
      model: 'gpt-4o-azure',
      messages: [{ role: 'user', content: 'x' }],
    });
    assert.equal(res.object, 'chat.completion');
    const sent = azure.requests[0]!;
    assert.equal(sent.path, '/openai/deployments/prod-gpt4o/chat/completions');
    assert.equal(sent.headers['api-key'], AZURE_KEY);
    assert.equal(sent.headers.authorization, undefined);
  });
});
