import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { UpstreamError } from '../../../../src/errors.js';
import {
  mapStopReason,
  toOpenAIUsage,
  translateResponse,
} from '../../../../src/providers/anthropic/translate-response.js';

const fixture = (name: string): any =>
  JSON.parse(
    readFileSync(new URL(`../../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8'),
  );
const NOW = 1_700_000_000;
const translate = (message: unknown, structuredTool?: string): any =>
  translateResponse(message, { providerName: 'anthropic', structuredTool, now: () => NOW });

describe('translateResponse', () => {
  it('translates the recorded text message to the golden chat.completion', () => {
    assert.deepEqual(translate(fixture('text.response.json')), fixture('text.openai-response.json'));
  });

  it('turns tool_use blocks into tool_calls with JSON-string arguments', () => {
    const out = translate(fixture('tool-use.response.json'));
    const choice = out.choices[0];
    assert.equal(out.id, 'chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U');
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.content, 'Let me check both.');
    assert.deepEqual(
      choice.message.tool_calls.map((c: any) => [
        c.id,
        c.type,
        c.function.name,
        JSON.parse(c.function.arguments),
      ]),
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
    assert.equal(out.usage.prompt_tokens, 472);
  });

  it('has null content when the answer is only tool calls', () => {
    const msg = fixture('tool-use.response.json');
    msg.content = msg.content.slice(1);
    assert.equal(translate(msg).choices[0].message.content, null);
  });

  it('counts cache reads and writes into prompt_tokens and keeps the writes for billing', () => {
    const usage = translate(fixture('prompt-cache.response.json')).usage;
    // 12 uncached + 248 written + 2048 read = 2308 prompt tokens.
    assert.deepEqual(usage, {
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

  it('treats missing or null usage fields as zero', () => {
    assert.deepEqual(toOpenAIUsage({ input_tokens: 5, cache_read_input_tokens: null }), {
      prompt_tokens: 5,
      completion_tokens: 0,
      total_tokens: 5,
      prompt_tokens_details: { cached_tokens: 0, cache_write_tokens: 0 },
    });
  });

  it('maps every stop_reason', () => {
    const table: [unknown, boolean, string][] = [
      ['end_turn', false, 'stop'],
      ['stop_sequence', false, 'stop'],
      ['max_tokens', false, 'length'],
      ['model_context_window_exceeded', false, 'length'],
      ['pause_turn', false, 'length'],
      ['tool_use', false, 'tool_calls'],
      ['tool_use', true, 'stop'],
      ['refusal', false, 'content_filter'],
      [null, false, 'stop'],
      ['something_new', false, 'stop'],
    ];
    for (const [reason, structured, expected] of table)
      assert.equal(mapStopReason(reason, structured), expected, String(reason));
  });

  it('returns the forced structured-output tool input as JSON content with finish_reason stop', () => {
    const msg = {
      ...fixture('text.response.json'),
      content: [{ type: 'tool_use', id: 'toolu_1', name: 'math', input: { answer: 42 } }],
      stop_reason: 'tool_use',
    };
    const choice = translate(msg, 'math').choices[0];
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.message.content, '{"answer":42}');
    assert.equal(choice.message.tool_calls, undefined);
  });

  it('puts thinking into reasoning_content and drops signatures and redacted thinking', () => {
    const msg = {
      ...fixture('text.response.json'),
      content: [
        { type: 'thinking', thinking: 'Let me think.', signature: 'EqQB...' },
        { type: 'redacted_thinking', data: 'xyz' },
        { type: 'text', text: 'Answer.' },
      ],
    };
    const message = translate(msg).choices[0].message;
    assert.equal(message.reasoning_content, 'Let me think.');
    assert.equal(message.content, 'Answer.');
    assert.ok(!JSON.stringify(message).includes('EqQB'));
  });

  it('answers a body that is not an Anthropic message with upstream_bad_response', () => {
    for (const body of [null, { type: 'error' }, { type: 'message', content: 'x' }]) {
      assert.throws(
        () => translate(body),
        (err: unknown) =>
          err instanceof UpstreamError && err.code === 'upstream_bad_response' && err.status === 502,
      );
    }
  });
});
