import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheDigest, canonicalJson, KEY_IGNORED_FIELDS } from '../../../src/pipeline/cache/cache-key.js';

const base = (): Record<string, unknown> => ({
  model: 'gpt-4o-mini',
  messages: [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hello' },
  ],
  temperature: 0,
});

/** Every field that can change the output, each with a value that differs from `base`. */
const OUTPUT_CHANGING: Record<string, unknown> = {
  messages: [{ role: 'user', content: 'Hello!' }],
  model: 'gpt-4o',
  tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
  tool_choice: 'required',
  response_format: { type: 'json_object' },
  temperature: 0.2,
  top_p: 0.5,
  max_tokens: 10,
  max_completion_tokens: 10,
  seed: 42,
  stop: ['\n'],
  n: 2,
  logprobs: true,
  top_logprobs: 3,
  frequency_penalty: 0.5,
  presence_penalty: 0.5,
  logit_bias: { '50256': -100 },
  parallel_tool_calls: false,
  reasoning_effort: 'low',
  // A field this gateway has never heard of must still count: it may change the answer.
  some_future_knob: { level: 3 },
};

describe('cache key', () => {
  const d0 = cacheDigest('chat', base());

  it('is a sha256 hex digest, stable for the same body', () => {
    assert.match(d0, /^[0-9a-f]{64}$/);
    assert.equal(cacheDigest('chat', base()), d0);
  });

  for (const [field, value] of Object.entries(OUTPUT_CHANGING)) {
    it(`changes when ${field} changes`, () => {
      assert.notEqual(cacheDigest('chat', { ...base(), [field]: value }), d0);
    });
  }

  it('changes with a nested value deep inside the messages', () => {
    const b = base();
    (b.messages as { content: string }[])[1]!.content = 'Hello ';
    assert.notEqual(cacheDigest('chat', b), d0);
  });

  it('does not depend on key order, at the top or nested', () => {
    const reordered = {
      temperature: 0,
      messages: [
        { content: 'Be brief.', role: 'system' },
        { content: 'Hello', role: 'user' },
      ],
      model: 'gpt-4o-mini',
    };
    assert.equal(cacheDigest('chat', reordered), d0);
  });

  it('keeps array order significant', () => {
    const b = base();
    (b.messages as unknown[]).reverse();
    assert.notEqual(cacheDigest('chat', b), d0);
  });

  it('ignores stream, stream_options, user and metadata', () => {
    assert.deepEqual([...KEY_IGNORED_FIELDS].sort(), ['metadata', 'stream', 'stream_options', 'user']);
    const b = {
      ...base(),
      stream: true,
      stream_options: { include_usage: true },
      user: 'alice',
      metadata: { trace: 'abc' },
    };
    assert.equal(cacheDigest('chat', b), d0);
  });

  it('ignores those names only at the top level', () => {
    const b = base();
    (b.messages as Record<string, unknown>[])[1]!.user = 'alice';
    assert.notEqual(cacheDigest('chat', b), d0);
  });

  it('includes the endpoint', () => {
    const body = { model: 'text-embedding-3-small', input: 'hi' };
    assert.notEqual(cacheDigest('chat', body), cacheDigest('embeddings', body));
  });

  it('treats an explicit undefined like an absent field, and null as a value', () => {
    assert.equal(cacheDigest('chat', { ...base(), seed: undefined }), d0);
    assert.notEqual(cacheDigest('chat', { ...base(), seed: null }), d0);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every depth, keeps arrays, and round-trips through JSON.parse', () => {
    const v = { b: [3, { z: 1, a: 'x' }], a: { d: null, c: true }, e: 'é\u2028"' };
    const s = canonicalJson(v);
    assert.equal(s, '{"a":{"c":true,"d":null},"b":[3,{"a":"x","z":1}],"e":"é\u2028\\""}');
    assert.deepEqual(JSON.parse(s), v);
  });

  it('orders keys as the default sort does, for small objects and past 16 keys alike', () => {
    // Code-unit order: upper case before lower, digits first, 'é' and astral characters last.
    const names = ['role', 'content', 'Z', 'a1', 'a', '10', '9', 'é', '\u{1F600}', 'ab', 'aB', '_', ''];
    for (const n of [2, 3, names.length]) {
      const keys = names.slice(0, n).reverse();
      const obj = Object.fromEntries(keys.map((k, i) => [k, i]));
      const expected = `{${[...keys]
        .sort()
        .map((k) => `${JSON.stringify(k)}:${obj[k]}`)
        .join(',')}}`;
      assert.equal(canonicalJson(obj), expected);
    }
    const many = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${(i * 7) % 40}`, i]));
    assert.deepEqual(Object.keys(JSON.parse(canonicalJson(many)) as object), Object.keys(many).sort());
  });

  it('omits the given top-level names', () => {
    assert.equal(canonicalJson({ a: 1, stream: true }, new Set(['stream'])), '{"a":1}');
  });
});
