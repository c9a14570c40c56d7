import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { insertStreamUsage, spliceModel } from '../../../../src/providers/openai/body-rewrite.js';

/** spliceModel on a body given as its exact JSON text. */
function splice(text: string, to: string): string | undefined {
  const body = JSON.parse(text) as Record<string, unknown>;
  return spliceModel(Buffer.from(text), body, body.model as string, to)?.toString('utf8');
}

describe('spliceModel', () => {
  it('changes only the top-level model and keeps every other byte as received', () => {
    const text =
      '{ "messages" : [{"role":"user","content":"say \\"model\\": \\"gpt\\""}],\n "model" : "gpt", "n":1 }';
    const out = splice(text, 'gpt-4o-mini-2024-07-18');
    assert.equal(out, text.replace('"model" : "gpt"', '"model" : "gpt-4o-mini-2024-07-18"'));
    assert.equal(JSON.parse(out).model, 'gpt-4o-mini-2024-07-18');
  });

  it('writes the new name as a JSON string and keeps multi-byte text intact', () => {
    const out = splice('{"model":"ünï","content":"日本語 ✓"}', 'we"ird\\name');
    assert.deepEqual(JSON.parse(out!), { model: 'we"ird\\name', content: '日本語 ✓' });
  });

  it('accepts a model value written with escapes', () => {
    assert.equal(splice('{"model":"gp\\u0074"}', 'a'), '{"model":"a"}');
  });

  it('declines when a model key exists below the top level (the caller serialises instead)', () => {
    assert.equal(splice('{"model":"gpt","tools":[{"model":"gpt"}]}', 'a'), undefined);
    assert.equal(splice('{"metadata":{"model":"x"},"model":"gpt"}', 'a'), undefined);
  });

  it('declines when the top-level key is written with escapes', () => {
    // The only unescaped "model" member here is a key named `x"model`, not the top-level one.
    assert.equal(splice('{"mod\\u0065l":"gpt","meta":{"x\\"model":"gpt"}}', 'a'), undefined);
    assert.equal(splice('{"mod\\u0065l":"gpt"}', 'a'), undefined);
  });
});

describe('insertStreamUsage', () => {
  const insert = (text: string) =>
    insertStreamUsage(Buffer.from(text), JSON.parse(text) as Record<string, unknown>)?.toString('utf8');

  it('adds the usage option as the first member and keeps every received byte', () => {
    const text =
      ' \n{ "model":"gpt","stream":true,"messages":[{"role":"user","content":"{\\"stream_options\\":1}"}]}';
    const out = insert(text)!;
    assert.equal(
      out,
      ' \n{"stream_options":{"include_usage":true}, "model":"gpt"' + text.slice(text.indexOf(',"stream"')),
    );
    const parsed = JSON.parse(out) as Record<string, unknown>;
    assert.deepEqual(parsed.stream_options, { include_usage: true });
    assert.deepEqual(parsed.messages, JSON.parse(text).messages);
  });

  it('declines when the body has stream_options of its own (the caller merges by serialising)', () => {
    assert.equal(insert('{"model":"gpt","stream_options":{"include_usage":false}}'), undefined);
    assert.equal(insert('{"model":"gpt","stream_options":null}'), undefined);
    // Written with escapes, it is still the same key to the parse.
    assert.equal(insert('{"model":"gpt","stream_\\u006fptions":{}}'), undefined);
  });

  it('declines bytes that are not a non-empty object', () => {
    assert.equal(insertStreamUsage(Buffer.from(' { } '), {}), undefined);
    assert.equal(insertStreamUsage(Buffer.from('[1]'), {}), undefined);
  });
});
