import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { GatewayError } from '../../../../src/errors.js';
import { translateRequest } from '../../../../src/providers/anthropic/translate-request.js';

const MODEL = 'claude-sonnet-4-5-20250929';
const fixture = (name: string): any =>
  JSON.parse(
    readFileSync(new URL(`../../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8'),
  );

function translate(body: Record<string, unknown>, stream = false): any {
  return translateRequest(body, { model: MODEL, stream, defaultMaxTokens: 4096 });
}
const user = (content: unknown): Record<string, unknown> => ({ role: 'user', content });
const req = (extra: Record<string, unknown>, messages = [user('hi')]): Record<string, unknown> => ({
  model: 'claude',
  messages,
  ...extra,
});

function assertUnsupported(body: Record<string, unknown>, param: string): void {
  assert.throws(
    () => translate(body),
    (err: unknown) => {
      assert.ok(err instanceof GatewayError);
      assert.equal(err.status, 400);
      assert.equal(err.type, 'invalid_request_error');
      assert.equal(err.code, 'unsupported_parameter');
      assert.equal(err.param, param);
      return true;
    },
  );
}

describe('translateRequest', () => {
  it('translates the recorded text request to the golden Anthropic body', () => {
    const out = translate(fixture('text.openai-request.json'), true);
    assert.deepEqual(out.body, fixture('text.anthropic-request.json'));
    assert.equal(out.structuredTool, undefined);
  });

  it('translates tool calls, tool results and tools to the golden Anthropic body', () => {
    const out = translate(fixture('tool-use.openai-request.json'));
    assert.deepEqual(out.body, fixture('tool-use.anthropic-request.json'));
  });

  it('defaults max_tokens and prefers max_completion_tokens over max_tokens', () => {
    assert.equal(translate(req({})).body.max_tokens, 4096);
    assert.equal(translate(req({ max_tokens: 10, max_completion_tokens: 20 })).body.max_tokens, 20);
    assert.equal(translate(req({ max_tokens: 10, max_completion_tokens: null })).body.max_tokens, 10);
  });

  it('passes temperature up to 1, top_p and top_k, and refuses temperature above 1', () => {
    const out = translate(req({ temperature: 1, top_p: 0.9, top_k: 40 })).body;
    assert.equal(out.temperature, 1);
    assert.equal(out.top_p, 0.9);
    assert.equal(out.top_k, 40);
    assert.equal(translate(req({ temperature: 0 })).body.temperature, 0);
    assertUnsupported(req({ temperature: 1.2 }), 'temperature');
  });

  it('maps stop, user and safety_identifier', () => {
    assert.deepEqual(translate(req({ stop: ['END', 'STOP'] })).body.stop_sequences, ['END', 'STOP']);
    assert.equal(translate(req({ stop: [] })).body.stop_sequences, undefined);
    assert.deepEqual(translate(req({ user: 'u1' })).body.metadata, { user_id: 'u1' });
    assert.deepEqual(translate(req({ safety_identifier: 's1' })).body.metadata, { user_id: 's1' });
  });

  it('drops only fields that cannot change the answer', () => {
    const out = translate(
      req({
        seed: 1,
        service_tier: 'auto',
        store: false,
        metadata: { a: 'b' },
        stream_options: { include_usage: true },
        prompt_cache_key: 'k',
        n: 1,
        logprobs: false,
        frequency_penalty: 0,
        presence_penalty: 0,
        logit_bias: {},
        modalities: ['text'],
        audio: null,
        top_logprobs: null,
      }),
    ).body;
    assert.deepEqual(Object.keys(out).sort(), ['max_tokens', 'messages', 'model']);
  });

  it('refuses every output-changing field it cannot translate, naming the param', () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ n: 2 }, 'n'],
      [{ logprobs: true }, 'logprobs'],
      [{ top_logprobs: 3 }, 'top_logprobs'],
      [{ audio: { voice: 'alloy', format: 'mp3' } }, 'audio'],
      [{ modalities: ['text', 'audio'] }, 'modalities'],
      [{ prediction: { type: 'content', content: 'x' } }, 'prediction'],
      [{ frequency_penalty: 0.5 }, 'frequency_penalty'],
      [{ presence_penalty: -1 }, 'presence_penalty'],
      [{ logit_bias: { '50256': -100 } }, 'logit_bias'],
      [{ reasoning_effort: 'high' }, 'reasoning_effort'],
      [{ functions: [{ name: 'f' }] }, 'functions'],
      [{ function_call: 'auto' }, 'function_call'],
      [{ web_search_options: {} }, 'web_search_options'],
      [{ x_custom_knob: 1 }, 'x_custom_knob'],
      [{ tools: [{ type: 'custom', custom: { name: 'c' } }] }, 'tools[0].type'],
      [{ tool_choice: 'sometimes', tools: [{ type: 'function', function: { name: 'f' } }] }, 'tool_choice'],
      [{ response_format: { type: 'grammar' } }, 'response_format.type'],
    ];
    for (const [extra, param] of cases) assertUnsupported(req(extra), param);
    // Names that exist on Object.prototype are fields like any other.
    assertUnsupported(req({ constructor: 1 }), 'constructor');
    assertUnsupported(req({}, [{ role: 'toString', content: 'x' }]), 'messages[0].role');
    assertUnsupported(req({}, [{ role: 'user', content: 'hi', name: 'bob' }]), 'messages[0].name');
    assertUnsupported(req({}, [{ role: 'function', name: 'f', content: 'x' }]), 'messages[0].role');
    assertUnsupported(
      req({}, [user('a'), { role: 'assistant', content: 'b', audio: { id: 'x' } }]),
      'messages[1].audio',
    );
    assertUnsupported(
      req({}, [user([{ type: 'input_audio', input_audio: { data: 'AAA', format: 'wav' } }])]),
      'messages[0].content[0].type',
    );
    assertUnsupported(
      req({}, [user([{ type: 'image_url', image_url: { url: 'https://x/a.png', detail: 'low' } }])]),
      'messages[0].content[0].image_url.detail',
    );
    assertUnsupported(
      req({}, [user([{ type: 'image_url', image_url: { url: 'data:image/tiff;base64,AAAA' } }])]),
      'messages[0].content[0].image_url.url',
    );
    assertUnsupported(
      req({}, [user([{ type: 'file', file: { file_id: 'file-1' } }])]),
      'messages[0].content[0].file',
    );
  });

  it('refuses tool-call arguments that are not a JSON object, naming the exact path', () => {
    for (const args of ['{"a":', '[1,2]', '"x"']) {
      const call = (id: string, a: string) => ({
        id,
        type: 'function',
        function: { name: 'f', arguments: a },
      });
      const body = req({}, [
        user('q'),
        { role: 'assistant', tool_calls: [call('c0', '{}'), call('c1', args)] },
      ]);
      assert.throws(
        () => translate(body),
        (err: unknown) =>
          err instanceof GatewayError &&
          err.status === 400 &&
          err.param === 'messages[1].tool_calls[1].function.arguments',
      );
    }
  });

  it('puts system and developer messages, wherever they stand, into the top-level system', () => {
    const body = req({}, [
      { role: 'system', content: 'A' },
      user('hi'),
      { role: 'developer', content: [{ type: 'text', text: 'B' }] },
    ]);
    const out = translate(body).body;
    assert.equal(out.system, 'A\n\nB');
    assert.deepEqual(out.messages, [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }]);
  });

  it('keeps system blocks when any carries cache_control (part or message level)', () => {
    const cc = { type: 'ephemeral' };
    const body = req({}, [
      { role: 'system', content: [{ type: 'text', text: 'long doc', cache_control: cc }] },
      { role: 'developer', content: 'rules', cache_control: { type: 'ephemeral', ttl: '1h' } },
      user('hi'),
    ]);
    assert.deepEqual(translate(body).body.system, [
      { type: 'text', text: 'long doc', cache_control: cc },
      { type: 'text', text: 'rules', cache_control: { type: 'ephemeral', ttl: '1h' } },
    ]);
  });

  it('passes cache_control through on content parts, messages, tools and tool results', () => {
    const cc = { type: 'ephemeral' };
    const body = req({ tools: [{ type: 'function', function: { name: 'f' }, cache_control: cc }] }, [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'text', text: 'b' },
        ],
        cache_control: cc,
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'r', cache_control: cc },
    ]);
    const out = translate(body).body;
    assert.deepEqual(out.messages[0].content, [
      { type: 'text', text: 'a' },
      { type: 'text', text: 'b', cache_control: cc },
    ]);
    assert.deepEqual(out.messages[2].content, [
      { type: 'tool_result', tool_use_id: 'c1', content: 'r', cache_control: cc },
    ]);
    assert.deepEqual(out.tools[0], {
      name: 'f',
      input_schema: { type: 'object', properties: {} },
      cache_control: cc,
    });
  });

  it('merges consecutive same-role messages so turns alternate, tool results first', () => {
    const call = { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } };
    const out = translate(
      req({}, [
        user('one'),
        user('two'),
        { role: 'assistant', content: 'thinking aloud' },
        { role: 'assistant', content: '', tool_calls: [call] },
        user('before the result'),
        { role: 'tool', tool_call_id: 'c1', content: 'result' },
      ]),
    ).body;
    assert.deepEqual(
      out.messages.map((m: any) => [m.role, m.content.map((b: any) => b.type)]),
      [
        ['user', ['text', 'text']],
        ['assistant', ['text', 'tool_use']],
        ['user', ['tool_result', 'text']],
      ],
    );
    assert.deepEqual(out.messages[1].content[1], { type: 'tool_use', id: 'c1', name: 'f', input: { x: 1 } });
  });

  it('translates image parts: data URLs to base64 sources, http(s) URLs to url sources', () => {
    const out = translate(
      req({}, [
        user([
          { type: 'text', text: 'compare' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg', detail: 'high' } },
          { type: 'file', file: { file_data: 'data:application/pdf;base64,JVBERi0=' } },
        ]),
      ]),
    ).body;
    assert.deepEqual(out.messages[0].content.slice(1), [
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' } },
    ]);
  });

  it('maps tool_choice and parallel_tool_calls', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    const choice = (tool_choice: unknown, parallel?: boolean) =>
      translate(req({ tools, tool_choice, parallel_tool_calls: parallel })).body.tool_choice;
    assert.deepEqual(choice('auto'), { type: 'auto' });
    assert.deepEqual(choice('required'), { type: 'any' });
    assert.deepEqual(choice('none'), { type: 'none' });
    assert.deepEqual(choice({ type: 'function', function: { name: 'f' } }), { type: 'tool', name: 'f' });
    assert.equal(choice(undefined), undefined);
    assert.deepEqual(choice(undefined, false), { type: 'auto', disable_parallel_tool_use: true });
    assert.deepEqual(choice('required', false), { type: 'any', disable_parallel_tool_use: true });
    assert.deepEqual(choice('none', false), { type: 'none' });
    assert.deepEqual(choice('auto', true), { type: 'auto' });
    // No tools: a string choice means nothing; a named function is the client's mistake.
    assert.equal(translate(req({ tool_choice: 'auto' })).body.tool_choice, undefined);
    assert.throws(() => translate(req({ tool_choice: { type: 'function', function: { name: 'f' } } })), {
      param: 'tool_choice',
    });
  });

  it('implements response_format json_schema as a forced tool', () => {
    const schema = { type: 'object', properties: { answer: { type: 'number' } }, required: ['answer'] };
    const out = translate(
      req({ response_format: { type: 'json_schema', json_schema: { name: 'math', schema, strict: true } } }),
    );
    assert.equal(out.structuredTool, 'math');
    assert.deepEqual(out.body.tools, [
      { name: 'math', description: 'Respond with JSON matching this schema.', input_schema: schema },
    ]);
    assert.deepEqual(out.body.tool_choice, { type: 'tool', name: 'math', disable_parallel_tool_use: true });
  });

  it('implements response_format json_object as a forced json_output tool, and ignores text', () => {
    const out = translate(req({ response_format: { type: 'json_object' } }));
    assert.equal(out.structuredTool, 'json_output');
    assert.deepEqual(out.body.tools[0].input_schema, { type: 'object' });
    assert.equal(translate(req({ response_format: { type: 'text' } })).body.tools, undefined);
  });

  it('refuses response_format with tools, and a schema whose root is not an object', () => {
    const tools = [{ type: 'function', function: { name: 'f' } }];
    assertUnsupported(req({ tools, response_format: { type: 'json_object' } }), 'response_format');
    assertUnsupported(
      req({
        response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'array' } } },
      }),
      'response_format.json_schema.schema',
    );
  });

  it('reports malformed input as invalid_request with the field path', () => {
    assert.throws(() => translate(req({ stop: 5 })), { code: 'invalid_request', param: 'stop' });
    assert.throws(() => translate(req({}, [{ role: 'tool', content: 'x' }])), {
      code: 'invalid_request',
      param: 'messages[0].tool_call_id',
    });
  });
});
