import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { UpstreamError } from '../../../../src/errors.js';
import { AnthropicStreamMapper } from '../../../../src/providers/anthropic/translate-stream.js';
import { SseParser } from '../../../../src/providers/sse/parse.js';

const sse = (name: string): string =>
  readFileSync(new URL(`../../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');
const NOW = 1_700_000_000;

function mapper(over: { includeUsage?: boolean; structuredTool?: string } = {}): AnthropicStreamMapper {
  return new AnthropicStreamMapper({
    providerName: 'anthropic',
    structuredTool: over.structuredTool,
    includeUsage: over.includeUsage ?? false,
    now: () => NOW,
  });
}

/** Feeds SSE text (in pieces of `step` characters) through the parser and the mapper. */
function run(text: string, m = mapper(), step = text.length): any[] {
  const parser = new SseParser();
  const out: any[] = [];
  for (let i = 0; i < text.length; i += step)
    for (const ev of parser.push(text.slice(i, i + step))) out.push(...m.push(ev));
  return out;
}

const event = (data: object): string => `event: ${(data as any).type}\ndata: ${JSON.stringify(data)}\n\n`;
const START = event({
  type: 'message_start',
  message: {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    content: [],
    model: 'claude-x',
    usage: { input_tokens: 3, output_tokens: 1 },
  },
});
const END = (stop_reason: string, output_tokens = 7): string =>
  event({ type: 'message_delta', delta: { stop_reason, stop_sequence: null }, usage: { output_tokens } }) +
  event({ type: 'message_stop' });

/** Folds OpenAI chunk deltas back into one message, as the openai SDK's stream helper does. */
function reassemble(chunks: any[]) {
  let content: string | undefined;
  let reasoning: string | undefined;
  let finish: string | null = null;
  let usage: unknown;
  const calls: any[] = [];
  for (const c of chunks) {
    if (c.usage) usage = c.usage;
    for (const choice of c.choices) {
      const d = choice.delta;
      if (typeof d.content === 'string') content = (content ?? '') + d.content;
      if (typeof d.reasoning_content === 'string') reasoning = (reasoning ?? '') + d.reasoning_content;
      for (const tc of d.tool_calls ?? []) {
        const slot = (calls[tc.index] ??= { id: undefined, type: undefined, name: '', arguments: '' });
        if (tc.id) slot.id = tc.id;
        if (tc.type) slot.type = tc.type;
        if (tc.function?.name) slot.name += tc.function.name;
        if (tc.function?.arguments) slot.arguments += tc.function.arguments;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  return { content, reasoning, finish, usage, calls };
}

describe('AnthropicStreamMapper', () => {
  it('maps the recorded text stream: role chunk first, text deltas, finish, same id/created/model', () => {
    const chunks = run(sse('text.stream.sse'));
    // 1. role chunk  2-3. "Hello", "!"  4. finish chunk (ping and block stops say nothing)
    assert.equal(chunks.length, 4);
    assert.deepEqual(chunks[0].choices[0].delta, { role: 'assistant', content: '' });
    for (const c of chunks) {
      assert.equal(c.id, 'chatcmpl-msg_01XFDUDYJgAACzvnptvVoYEL');
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.created, NOW);
      assert.equal(c.model, 'claude-sonnet-4-5-20250929');
      assert.equal('usage' in c, false);
    }
    assert.deepEqual(chunks[3].choices[0], { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });
    const r = reassemble(chunks);
    assert.equal(r.content, 'Hello!');
    assert.equal(r.finish, 'stop');
  });

  it('adds usage: null to every chunk and a final usage chunk when the client asked for usage', () => {
    const m = mapper({ includeUsage: true });
    const chunks = run(sse('text.stream.sse'), m);
    const last = chunks[chunks.length - 1];
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, {
      prompt_tokens: 25,
      completion_tokens: 15,
      total_tokens: 40,
      prompt_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
    });
    for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
    assert.deepEqual(m.usage, last.usage);
    assert.equal(m.finished, true);
  });

  it('streams tool calls: index per tool block, id and name first, then argument pieces', () => {
    const chunks = run(sse('tool-use.stream.sse'));
    const first = chunks.find((c) => c.choices[0].delta.tool_calls)!;
    assert.deepEqual(first.choices[0].delta.tool_calls, [
      {
        index: 0,
        id: 'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
        type: 'function',
        function: { name: 'get_weather', arguments: '' },
      },
    ]);
    const r = reassemble(chunks);
    assert.equal(r.content, 'Let me check both.');
    assert.equal(r.finish, 'tool_calls');
    assert.deepEqual(
      r.calls.map((c) => [c.id, c.type, c.name, JSON.parse(c.arguments)]),
      [
        [
          'toolu_01T1x1fJ34qAmk2tNTrN7Up6',
          'function',
          'get_weather',
          { location: 'San Francisco, CA', unit: 'fahrenheit' },
        ],
        ['toolu_02Ab3xQ9kLm7VrNcYt5WzPq8', 'function', 'get_time', { timezone: 'America/Los_Angeles' }],
      ],
    );
  });

  it('gives the same chunks however the bytes are split', () => {
    const text = sse('tool-use.stream.sse');
    assert.deepEqual(run(text, mapper(), 1), run(text));
    assert.deepEqual(run(text, mapper(), 7), run(text));
  });

  it('takes message_delta usage as cumulative: the last values, never a sum', () => {
    const m = mapper({ includeUsage: true });
    const r = reassemble(run(sse('prompt-cache.stream.sse'), m));
    // message_start said output 1 and the same input counts; message_delta's values replace them.
    assert.deepEqual(r.usage, {
      prompt_tokens: 2308,
      completion_tokens: 40,
      total_tokens: 2348,
      prompt_tokens_details: {
        cached_tokens: 2048,
        cache_write_tokens: 248,
        cache_write_5m_tokens: 200,
        cache_write_1h_tokens: 48,
      },
    });
  });

  it('has no usage before message_delta gave the final counts', () => {
    const m = mapper();
    run(START, m);
    assert.equal(m.usage, undefined);
    assert.equal(m.finished, false);
  });

  it('throws the mapped error on an error event, after relaying what came before', () => {
    const m = mapper();
    const parser = new SseParser();
    const seen: any[] = [];
    assert.throws(
      () => {
        for (const ev of parser.push(sse('error.stream.sse'))) seen.push(...m.push(ev));
      },
      (err: unknown) =>
        err instanceof UpstreamError && err.status === 503 && err.retryable && err.message === 'Overloaded',
    );
    assert.equal(reassemble(seen).content, 'Partial');
  });

  it('maps thinking deltas to reasoning_content and drops signatures', () => {
    const text =
      START +
      event({ type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } }) +
      event({ type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Hmm, ' } }) +
      event({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'thinking_delta', thinking: '2+2=4.' },
      }) +
      event({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'signature_delta', signature: 'EqQBsig' },
      }) +
      event({ type: 'content_block_stop', index: 0 }) +
      event({ type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } }) +
      event({ type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: '4' } }) +
      END('end_turn');
    const chunks = run(text);
    const r = reassemble(chunks);
    assert.equal(r.reasoning, 'Hmm, 2+2=4.');
    assert.equal(r.content, '4');
    assert.ok(!JSON.stringify(chunks).includes('EqQBsig'));
  });

  it('streams the structured-output tool input as content with finish_reason stop', () => {
    const text =
      START +
      event({
        type: 'content_block_start',
        index: 0,
        content_block: { type: 'tool_use', id: 't1', name: 'math', input: {} },
      }) +
      event({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: '{"answer"' },
      }) +
      event({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'input_json_delta', partial_json: ': 42}' },
      }) +
      END('tool_use');
    const r = reassemble(run(text, mapper({ structuredTool: 'math' })));
    assert.deepEqual(JSON.parse(r.content!), { answer: 42 });
    assert.equal(r.calls.length, 0);
    assert.equal(r.finish, 'stop');
  });

  it('maps max_tokens to length and ignores events after message_stop', () => {
    const m = mapper();
    const chunks = run(START + END('max_tokens') + event({ type: 'content_block_delta', index: 0 }), m);
    assert.equal(reassemble(chunks).finish, 'length');
  });

  it('answers protocol violations with upstream_bad_response', () => {
    const bad = (text: string) =>
      assert.throws(
        () => run(text),
        (err: unknown) => err instanceof UpstreamError && err.code === 'upstream_bad_response',
      );
    bad(event({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }));
    bad(START + event({ type: 'content_block_delta', index: 5, delta: { type: 'text_delta', text: 'x' } }));
    bad(START + 'event: content_block_delta\ndata: {not json\n\n');
  });
});
