import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  planChat,
  renderChatCompletion,
  renderChatStream,
  type ChatKnobs,
  type Json,
} from '../../../src/fake-upstream/responses.js';
import { StreamAssembler, type ChatCompletion } from '../../../src/pipeline/cache/assemble.js';
import {
  parseStoredCompletion,
  readStoredUsage,
  replayChunkData,
  splitPieces,
} from '../../../src/pipeline/cache/replay.js';

const KNOBS: ChatKnobs = { chunks: 7, parallelTools: true };
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'get_weather',
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
  },
  {
    type: 'function',
    function: {
      name: 'get_time',
      parameters: { type: 'object', properties: { tz: { type: 'string' } }, required: ['tz'] },
    },
  },
];

const chatBody = (over: Json = {}): Json => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  ...over,
});

/** The `data` texts of a fake-upstream stream, without `[DONE]`. */
function streamData(body: Json, includeUsage = true): string[] {
  return renderChatStream(planChat(body, KNOBS), 'chatcmpl-1', 1700000000, includeUsage)
    .map((f) => f.slice('data: '.length, -2))
    .filter((d) => d !== '[DONE]');
}

function assemble(datas: Iterable<string>): ChatCompletion | undefined {
  const a = new StreamAssembler();
  for (const d of datas) a.push(d);
  return a.finish();
}

describe('assemble', () => {
  it('folds a text stream into the chat.completion the same request gets without streaming', () => {
    const body = chatBody();
    const whole = JSON.parse(renderChatCompletion(planChat(body, KNOBS), 'chatcmpl-1', 1700000000));
    const got = assemble(streamData(body))!;
    assert.equal(got.id, 'chatcmpl-1');
    assert.equal(got.object, 'chat.completion');
    assert.equal(got.created, whole.created);
    assert.equal(got.model, whole.model);
    assert.equal(got.system_fingerprint, whole.system_fingerprint);
    assert.equal(got.service_tier, whole.service_tier);
    assert.deepEqual(got.usage, whole.usage);
    assert.equal(got.choices.length, 1);
    assert.equal(got.choices[0]!.message.role, 'assistant');
    assert.equal(got.choices[0]!.message.content, whole.choices[0].message.content);
    assert.equal(got.choices[0]!.message.refusal, null);
    assert.equal(got.choices[0]!.finish_reason, 'stop');
    assert.equal(got.choices[0]!.logprobs, null);
  });

  it('concatenates tool-call arguments by tool-call index, keeping id, type and name', () => {
    const body = chatBody({ tools: TOOLS });
    const whole = JSON.parse(renderChatCompletion(planChat(body, KNOBS), 'chatcmpl-1', 1));
    const got = assemble(streamData(body))!;
    const calls = got.choices[0]!.message.tool_calls!;
    assert.equal(calls.length, 2);
    assert.deepEqual(
      calls.map((c) => c.function),
      [
        { name: 'get_weather', arguments: '{"city":"fake"}' },
        { name: 'get_time', arguments: '{"tz":"fake"}' },
      ],
    );
    assert.ok(
      calls.every((c) => typeof c.id === 'string' && c.id.startsWith('call_') && c.type === 'function'),
    );
    assert.equal(got.choices[0]!.message.content, null);
    assert.equal(got.choices[0]!.finish_reason, 'tool_calls');
    // The fake draws fresh ids per render; everything else matches the non-stream body.
    assert.deepEqual(
      calls.map((c) => c.function),
      whole.choices[0].message.tool_calls.map((c: any) => c.function),
    );
  });

  it('keeps interleaved choices apart (n = 2)', () => {
    const got = assemble(streamData(chatBody({ n: 2 })))!;
    assert.deepEqual(
      got.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
      [
        [0, 'Hello from the fake upstream Hello from', 'stop'],
        [1, 'Hello from the fake upstream Hello from', 'stop'],
      ],
    );
  });

  it('takes usage from the settled stream usage when the usage chunk was hidden', () => {
    const usage = { prompt_tokens: 3, completion_tokens: 7, total_tokens: 10 };
    const a = new StreamAssembler();
    for (const d of streamData(chatBody(), false)) a.push(d);
    assert.deepEqual(a.finish(usage)!.usage, usage);
  });

  it('concatenates logprobs and unknown string delta fields such as reasoning_content', () => {
    const env = '"id":"c","object":"chat.completion.chunk","created":1,"model":"m"';
    const got = assemble([
      `{${env},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
      `{${env},"choices":[{"index":0,"delta":{"reasoning_content":"think "},"logprobs":null,"finish_reason":null}]}`,
      `{${env},"choices":[{"index":0,"delta":{"reasoning_content":"hard"},"logprobs":null,"finish_reason":null}]}`,
      `{${env},"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-0.1}],"refusal":null},"finish_reason":null}]}`,
      `{${env},"choices":[{"index":0,"delta":{"content":"!"},"logprobs":{"content":[{"token":"!","logprob":-0.2}],"refusal":null},"finish_reason":null}]}`,
      `{${env},"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
    ])!;
    const c = got.choices[0]!;
    assert.equal(c.message.content, 'Hi!');
    assert.equal(c.message.reasoning_content, 'think hard');
    assert.deepEqual(c.logprobs, {
      content: [
        { token: 'Hi', logprob: -0.1 },
        { token: '!', logprob: -0.2 },
      ],
      refusal: null,
    });
  });

  it('gives up on what it cannot fold faithfully: bad JSON, a legacy function_call, an error event', () => {
    const good = streamData(chatBody());
    assert.equal(assemble([good[0]!, '{not json', ...good.slice(1)]), undefined);
    const fc =
      '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"function_call":{"name":"f","arguments":""}},"finish_reason":null}]}';
    assert.equal(assemble([fc]), undefined);
    assert.equal(assemble([...good.slice(0, 2), '{"error":{"message":"boom"}}']), undefined);
    assert.equal(assemble([]), undefined);
  });

  it('folds a long stream across its 64 KB folding steps, and a bad chunk anywhere spoils it', () => {
    const env = '"id":"c","object":"chat.completion.chunk","created":1,"model":"m"';
    const piece = (i: number): string =>
      `{${env},"choices":[{"index":0,"delta":{"content":"${String(i).padStart(4, '0')} "},"finish_reason":null}]}`;
    const data = Array.from({ length: 2000 }, (_, i) => piece(i));
    const end = `{${env},"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`;
    const got = assemble([...data, end])!;
    assert.equal(
      got.choices[0]!.message.content,
      Array.from({ length: 2000 }, (_, i) => `${String(i).padStart(4, '0')} `).join(''),
    );
    assert.equal(got.choices[0]!.finish_reason, 'stop');
    const spoiled = [...data];
    spoiled[1500] = '{not json';
    assert.equal(assemble([...spoiled, end]), undefined);
  });

  it('stops holding text past maxBytes', () => {
    const a = new StreamAssembler(10);
    for (const d of streamData(chatBody())) a.push(d);
    assert.equal(a.ok, false);
    assert.equal(a.finish(), undefined);
  });
});

/** Parses replayed chunk events, checking the envelope every chunk must carry. */
function replay(completion: ChatCompletion, includeUsage: boolean): Json[] {
  return [...replayChunkData(completion, includeUsage)].map((d) => {
    assert.notEqual(d, '[DONE]');
    const chunk = JSON.parse(d) as Json;
    assert.equal(chunk.object, 'chat.completion.chunk');
    assert.equal(chunk.id, completion.id);
    assert.equal(chunk.created, completion.created);
    assert.equal(chunk.model, completion.model);
    return chunk;
  });
}

describe('replay', () => {
  const textCompletion = (): ChatCompletion =>
    JSON.parse(renderChatCompletion(planChat(chatBody(), { chunks: 40, parallelTools: false }), 'c1', 5));

  it('emits a role chunk, content in a few pieces and a finish chunk, without [DONE] or usage', () => {
    const completion = textCompletion();
    const chunks = replay(completion, false);
    const deltas = chunks.map((c) => (c.choices as any[])[0]);
    assert.deepEqual(deltas[0].delta, { role: 'assistant', content: '', refusal: null });
    const pieces = deltas.filter((d) => typeof d.delta.content === 'string' && d.delta.content !== '');
    assert.ok(pieces.length > 1 && pieces.length <= 4, `pieces: ${pieces.length}`);
    assert.equal(pieces.map((d) => d.delta.content).join(''), completion.choices[0]!.message.content);
    assert.deepEqual(deltas.at(-1), { index: 0, delta: {}, logprobs: null, finish_reason: 'stop' });
    assert.ok(deltas.slice(0, -1).every((d) => d.finish_reason === null));
    assert.ok(chunks.every((c) => !('usage' in c)));
  });

  it('adds usage: null to every chunk and a final usage chunk with empty choices when asked', () => {
    const completion = textCompletion();
    const chunks = replay(completion, true);
    const last = chunks.at(-1)!;
    assert.deepEqual(last.choices, []);
    assert.deepEqual(last.usage, completion.usage);
    assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
  });

  it('round-trips: a replay assembles back to the same completion', () => {
    for (const body of [chatBody(), chatBody({ tools: TOOLS }), chatBody({ n: 3 })]) {
      const assembled = assemble(streamData(body))!;
      assert.deepEqual(assemble(replayChunkData(assembled, true)), assembled);
    }
  });

  it('replays tool calls as a head delta with empty arguments, then argument pieces', () => {
    const completion: ChatCompletion = JSON.parse(
      renderChatCompletion(planChat(chatBody({ tools: TOOLS }), KNOBS), 'c2', 5),
    );
    const deltas = replay(completion, false).map((c) => (c.choices as any[])[0].delta);
    const heads = deltas.filter((d) => d.tool_calls?.[0]?.id !== undefined).map((d) => d.tool_calls[0]);
    assert.deepEqual(
      heads.map((h) => [h.index, h.type, h.function]),
      [
        [0, 'function', { name: 'get_weather', arguments: '' }],
        [1, 'function', { name: 'get_time', arguments: '' }],
      ],
    );
    const reassembled = assemble(replayChunkData(completion, false))!;
    assert.deepEqual(reassembled.choices[0]!.message.tool_calls, completion.choices[0]!.message.tool_calls);
    assert.equal(reassembled.choices[0]!.finish_reason, 'tool_calls');
  });

  it('replays logprobs and extra message fields so they reassemble', () => {
    const completion: ChatCompletion = {
      id: 'c3',
      object: 'chat.completion',
      created: 1,
      model: 'm',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'Hi!', refusal: null, reasoning_content: 'hmm' },
          logprobs: { content: [{ token: 'Hi', logprob: -1 }], refusal: null },
          finish_reason: 'stop',
        },
      ],
    };
    const back = assemble(replayChunkData(completion, false))!;
    assert.deepEqual(back.choices, completion.choices);
  });

  it('parses only chat.completion entries', () => {
    assert.ok(parseStoredCompletion(Buffer.from(JSON.stringify(textCompletion()))));
    assert.equal(parseStoredCompletion(Buffer.from('{"object":"list","data":[]}')), undefined);
    assert.equal(parseStoredCompletion(Buffer.from('{trunc')), undefined);
  });
});

describe('splitPieces', () => {
  it('never splits a surrogate pair and keeps every character', () => {
    const text = '😀'.repeat(50);
    const pieces = splitPieces(text);
    assert.ok(pieces.length > 1);
    assert.equal(pieces.join(''), text);
    for (const p of pieces) assert.ok(!/^[\udc00-\udfff]|[\ud800-\udbff]$/.test(p), JSON.stringify(p));
  });

  it('keeps short text whole', () => {
    assert.deepEqual(splitPieces('Hi'), ['Hi']);
  });
});

describe('readStoredUsage', () => {
  const usage = { prompt_tokens: 4, total_tokens: 4 };

  it('finds usage at the end of an embeddings list', () => {
    const body = JSON.stringify({ object: 'list', data: [{ embedding: [0.1, 0.2] }], model: 'e', usage });
    assert.deepEqual(readStoredUsage(Buffer.from(body)), usage);
  });

  it('is not fooled by "usage" inside strings, and reads pretty-printed JSON', () => {
    const body = JSON.stringify(
      {
        id: 'c',
        choices: [{ message: { content: 'the "usage": {"prompt_tokens": 99} \\' } }],
        usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
        service_tier: 'default',
      },
      null,
      2,
    );
    assert.deepEqual(readStoredUsage(Buffer.from(body)), {
      prompt_tokens: 1,
      completion_tokens: 2,
      total_tokens: 3,
    });
  });

  it('returns undefined when there is none', () => {
    assert.equal(readStoredUsage(Buffer.from('{"id":"c","choices":[]}')), undefined);
  });
});
