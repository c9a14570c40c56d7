// Anthropic's Messages API on the fake upstream (POST /v1/messages), over real HTTP: the body and SSE
// wire formats, stop reasons, tool calls and prompt-cache usage arithmetic must match Anthropic closely
// enough to test the gateway's translator against it.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../../src/fake-upstream/server.js';
import {
  BASE,
  TIME_TOOL,
  WEATHER_TOOL,
  assertAnthropicHeaders,
  message,
  payloads,
  post,
  stream,
} from './anthropic-helpers.js';
import type { AnthropicMessage, AnthropicUsage } from './anthropic-helpers.js';
import { readJson } from './helpers.js';

void describe('fake upstream: Anthropic messages', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream({ chunks: 5 });
  });
  afterEach(() => up.reset());
  after(() => up.close());

  void it("answers a non-stream request in Anthropic's shape, with Anthropic's headers", async () => {
    const res = await post(up, BASE);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assertAnthropicHeaders(res);
    const body = await readJson<AnthropicMessage>(res);
    assert.match(body.id, /^msg_01[A-Za-z0-9]{22}$/);
    assert.deepEqual(body, {
      id: body.id,
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5',
      content: [{ type: 'text', text: 'Hello from the fake upstream' }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: {
        input_tokens: body.usage.input_tokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
        output_tokens: 5,
        service_tier: 'standard',
      },
    });
    assert.ok(body.usage.input_tokens > 0);
    assert.equal(up.requests.at(-1)?.path, '/v1/messages');
  });

  void it('streams named events in order, framed as event/data pairs, without [DONE]', async () => {
    const events = await stream(up, BASE);
    // 1. message_start  2. ping  3. one text block: start, a delta per piece, stop
    // 4. message_delta with the stop reason and cumulative usage  5. message_stop
    assert.deepEqual(
      events.map((e) => e.event),
      [
        'message_start',
        'ping',
        'content_block_start',
        ...Array<string>(5).fill('content_block_delta'),
        'content_block_stop',
        'message_delta',
        'message_stop',
      ],
    );
    const data = payloads(events);
    const start = data[0].message;
    assert.match(start.id, /^msg_01/);
    assert.deepEqual(
      { ...start, id: 'x', usage: undefined },
      {
        id: 'x',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-4-5',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: undefined,
      },
    );
    assert.equal(start.usage.output_tokens, 1);
    assert.deepEqual(data[2], {
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    });
    const text = data
      .filter((d) => d.type === 'content_block_delta')
      .map((d) => {
        assert.equal(d.index, 0);
        assert.equal(d.delta.type, 'text_delta');
        return d.delta.text as string;
      })
      .join('');
    assert.equal(text, 'Hello from the fake upstream');
    assert.deepEqual(data[8], { type: 'content_block_stop', index: 0 });
    const whole = await message(up, BASE);
    assert.deepEqual(data[9], {
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: {
        input_tokens: whole.usage.input_tokens,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: 5,
      },
    });
    assert.equal(start.usage.input_tokens, whole.usage.input_tokens);
    assert.deepEqual(data[10], { type: 'message_stop' });
  });

  void it('takes x-fake-chunks from the headers', async () => {
    const body = await message(up, BASE, { 'x-fake-chunks': '7' });
    assert.equal(
      body.content[0]?.type === 'text' && body.content[0].text,
      'Hello from the fake upstream Hello from',
    );
    assert.equal(body.usage.output_tokens, 7);
  });

  void it('truncates at max_tokens with stop_reason max_tokens', async () => {
    const body = await message(up, { ...BASE, max_tokens: 2 });
    assert.deepEqual(body.content, [{ type: 'text', text: 'Hello from' }]);
    assert.equal(body.stop_reason, 'max_tokens');
    assert.equal(body.stop_sequence, null);
    assert.equal(body.usage.output_tokens, 2);
    const data = payloads(await stream(up, { ...BASE, max_tokens: 2 }));
    assert.deepEqual(data.at(-2).delta, { stop_reason: 'max_tokens', stop_sequence: null });
    assert.equal(data.at(-2).usage.output_tokens, 2);
  });

  void it('stops before a matching stop sequence, naming it', async () => {
    const req = { ...BASE, stop_sequences: ['nowhere', ' fake'] };
    const body = await message(up, req);
    assert.deepEqual(body.content, [{ type: 'text', text: 'Hello from the' }]);
    assert.equal(body.stop_reason, 'stop_sequence');
    assert.equal(body.stop_sequence, ' fake');
    assert.equal(body.usage.output_tokens, 3);
    const data = payloads(await stream(up, req));
    assert.deepEqual(data.at(-2).delta, { stop_reason: 'stop_sequence', stop_sequence: ' fake' });
    // A sequence that never appears changes nothing.
    assert.equal((await message(up, { ...BASE, stop_sequences: ['zzz'] })).stop_reason, 'end_turn');
  });

  void it('calls the forced tool with its required inputs filled', async () => {
    const body = await message(up, {
      ...BASE,
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: { type: 'tool', name: 'get_time' },
    });
    assert.equal(body.stop_reason, 'tool_use');
    assert.equal(body.content.length, 1);
    const call = body.content[0]!;
    assert.equal(call.type, 'tool_use');
    assert.ok(call.type === 'tool_use');
    assert.match(call.id, /^toolu_01[A-Za-z0-9]{22}$/);
    assert.equal(call.name, 'get_time');
    assert.deepEqual(call.input, { tz: 'fake' });
  });

  void it('says a few words before an automatic tool call, and none with tool_choice none', async () => {
    const body = await message(up, { ...BASE, tools: [WEATHER_TOOL, TIME_TOOL] });
    assert.deepEqual(
      body.content.map((b) => b.type),
      ['text', 'tool_use'],
    );
    assert.deepEqual(body.content[1]?.type === 'tool_use' && body.content[1].input, {
      city: 'fake',
      days: 1,
    });
    const none = await message(up, { ...BASE, tools: [WEATHER_TOOL], tool_choice: { type: 'none' } });
    assert.equal(none.stop_reason, 'end_turn');
    assert.deepEqual(
      none.content.map((b) => b.type),
      ['text'],
    );
    const any = await message(up, { ...BASE, tools: [WEATHER_TOOL], tool_choice: { type: 'any' } });
    assert.deepEqual(
      any.content.map((b) => b.type),
      ['tool_use'],
    );
  });

  void it('streams tool input as input_json_delta pieces that reassemble to the input', async () => {
    const data = payloads(await stream(up, { ...BASE, tools: [WEATHER_TOOL] }));
    // Block 0 is the text before the call; block 1 the tool_use.
    assert.deepEqual(data[2].content_block, { type: 'text', text: '' });
    const start = data.find((d) => d.type === 'content_block_start' && d.index === 1);
    assert.equal(start.content_block.type, 'tool_use');
    assert.equal(start.content_block.name, 'get_weather');
    assert.match(start.content_block.id, /^toolu_01/);
    assert.deepEqual(start.content_block.input, {});
    const pieces = data
      .filter((d) => d.type === 'content_block_delta' && d.index === 1)
      .map((d) => {
        assert.equal(d.delta.type, 'input_json_delta');
        return d.delta.partial_json as string;
      });
    assert.ok(pieces.length >= 3, `got ${pieces.length} pieces`);
    for (const p of pieces) assert.throws(() => JSON.parse(p) as unknown);
    assert.deepEqual(JSON.parse(pieces.join('')), { city: 'fake', days: 1 });
    const delta = data.at(-2);
    assert.deepEqual(delta.delta, { stop_reason: 'tool_use', stop_sequence: null });
    assert.equal(delta.usage.output_tokens, 1 + pieces.length);
    assert.deepEqual(
      data.filter((d) => d.type === 'content_block_stop').map((d) => d.index),
      [0, 1],
    );
  });

  void it('calls every tool with x-fake-parallel-tools, unless parallel use is disabled', async () => {
    const tools = [WEATHER_TOOL, TIME_TOOL];
    const all = await message(up, { ...BASE, tools }, { 'x-fake-parallel-tools': 'true' });
    assert.deepEqual(
      all.content.map((b) => (b.type === 'tool_use' ? b.name : b.type)),
      ['text', 'get_weather', 'get_time'],
    );
    const one = await message(
      up,
      { ...BASE, tools, tool_choice: { type: 'auto', disable_parallel_tool_use: true } },
      { 'x-fake-parallel-tools': 'true' },
    );
    assert.equal(one.content.filter((b) => b.type === 'tool_use').length, 1);
  });
});

void describe('fake upstream: Anthropic prompt caching usage', () => {
  let up: FakeUpstream;
  before(async () => {
    up = await startFakeUpstream();
  });
  afterEach(() => up.reset());
  after(() => up.close());

  const SYSTEM_TEXT = 'You are a careful assistant. '.repeat(40);
  const plain = { ...BASE, system: [{ type: 'text', text: SYSTEM_TEXT }] };
  const cached = (ttl?: '1h') => ({
    ...BASE,
    system: [
      { type: 'text', text: SYSTEM_TEXT, cache_control: { type: 'ephemeral', ...(ttl ? { ttl } : {}) } },
    ],
  });

  const total = (u: AnthropicUsage): number =>
    u.input_tokens + u.cache_creation_input_tokens + u.cache_read_input_tokens;

  void it('writes the prefix first, reads it afterwards, and input_tokens excludes both', async () => {
    const uncached = (await message(up, plain)).usage;
    assert.equal(uncached.cache_creation_input_tokens, 0);
    assert.equal(uncached.cache_read_input_tokens, 0);

    // 1. First request with a breakpoint: the prefix is written.
    const first = (await message(up, cached())).usage;
    assert.ok(first.cache_creation_input_tokens > 0);
    assert.equal(first.cache_read_input_tokens, 0);
    assert.deepEqual(first.cache_creation, {
      ephemeral_5m_input_tokens: first.cache_creation_input_tokens,
      ephemeral_1h_input_tokens: 0,
    });
    assert.ok(first.input_tokens < uncached.input_tokens);
    assert.equal(total(first), uncached.input_tokens);

    // 2. The same prefix again: read, not written; the uncached rest is unchanged.
    const second = (await message(up, cached())).usage;
    assert.equal(second.cache_read_input_tokens, first.cache_creation_input_tokens);
    assert.equal(second.cache_creation_input_tokens, 0);
    assert.deepEqual(second.cache_creation, { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 });
    assert.equal(second.input_tokens, first.input_tokens);
    assert.equal(total(second), uncached.input_tokens);

    // 3. A different model has its own cache.
    const other = (await message(up, { ...cached(), model: 'claude-haiku-4-5' })).usage;
    assert.equal(other.cache_creation_input_tokens, first.cache_creation_input_tokens);
    assert.equal(other.cache_read_input_tokens, 0);
  });

  void it('reports the same cache usage in the stream, and forgets the cache on reset()', async () => {
    const first = payloads(await stream(up, cached()));
    const startUsage = first[0].message.usage;
    assert.ok(startUsage.cache_creation_input_tokens > 0);
    assert.deepEqual(first.at(-2).usage, {
      input_tokens: startUsage.input_tokens,
      cache_creation_input_tokens: startUsage.cache_creation_input_tokens,
      cache_read_input_tokens: 0,
      output_tokens: 5,
    });
    const again = (await message(up, cached())).usage;
    assert.equal(again.cache_read_input_tokens, startUsage.cache_creation_input_tokens);
    up.reset();
    const afterReset = (await message(up, cached())).usage;
    assert.equal(afterReset.cache_read_input_tokens, 0);
    assert.equal(afterReset.cache_creation_input_tokens, startUsage.cache_creation_input_tokens);
  });

  void it('counts a 1h breakpoint as a 1h write', async () => {
    const u = (await message(up, cached('1h'))).usage;
    assert.ok(u.cache_creation_input_tokens > 0);
    assert.deepEqual(u.cache_creation, {
      ephemeral_5m_input_tokens: 0,
      ephemeral_1h_input_tokens: u.cache_creation_input_tokens,
    });
  });

  void it('reads the longest cached prefix and writes only the stretch after it', async () => {
    const turn1 = {
      ...BASE,
      tools: [{ ...WEATHER_TOOL, cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'What is the weather in Paris?' }] }],
    };
    const first = (await message(up, turn1)).usage;
    const toolPrefix = first.cache_creation_input_tokens;
    assert.ok(toolPrefix > 0);

    // The conversation grows, with a second breakpoint on its latest user turn.
    const turn2 = {
      ...turn1,
      messages: [
        ...turn1.messages,
        { role: 'assistant', content: 'Sunny.' },
        {
          role: 'user',
          content: [{ type: 'text', text: 'And tomorrow?', cache_control: { type: 'ephemeral' } }],
        },
      ],
    };
    const plainTurn2 = {
      ...turn2,
      tools: [WEATHER_TOOL],
      messages: [
        ...turn1.messages,
        turn2.messages[1],
        { role: 'user', content: [{ type: 'text', text: 'And tomorrow?' }] },
      ],
    };
    const second = (await message(up, turn2)).usage;
    assert.equal(second.cache_read_input_tokens, toolPrefix);
    assert.ok(second.cache_creation_input_tokens > 0);
    // Everything is behind the last breakpoint: nothing left uncached.
    assert.equal(second.input_tokens, 0);
    assert.equal(total(second), (await message(up, plainTurn2)).usage.input_tokens);

    const third = (await message(up, turn2)).usage;
    assert.equal(third.cache_read_input_tokens, toolPrefix + second.cache_creation_input_tokens);
    assert.equal(third.cache_creation_input_tokens, 0);
  });
});
