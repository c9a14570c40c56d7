import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeliveredText } from '../../../src/accounting/delivered.js';

const chunk = (delta: object, finish: string | null = null) =>
  JSON.stringify({
    id: 'c',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, finish_reason: finish }],
  });

describe('DeliveredText', () => {
  it('collects content, refusal and tool-call arguments, unescaped', () => {
    const d = new DeliveredText();
    d.add(chunk({ role: 'assistant', content: '' }));
    d.add(chunk({ content: 'He said "hi"\n' }));
    d.add(chunk({ content: 'and \\ left. ' }));
    d.add(chunk({ tool_calls: [{ index: 0, function: { name: 'f', arguments: '{"a":' } }] }));
    d.add(chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }));
    d.add(chunk({ refusal: 'no' }));
    d.add(chunk({}, 'tool_calls'));
    assert.equal(d.text(), 'He said "hi"\nand \\ left. {"a":1}no');
    assert.equal(d.finishReason, 'tool_calls');
  });

  it('is not fooled by the member names inside a string', () => {
    const d = new DeliveredText();
    d.add(chunk({ content: 'the key "content":"x" appears here' }));
    assert.equal(d.text(), 'the key "content":"x" appears here');
  });

  it('keeps non-ASCII text and escapes intact', () => {
    const d = new DeliveredText();
    d.add(chunk({ content: 'héllo ' }));
    d.add('{"choices":[{"delta":{"content":"\\u00e9\\ud83d\\ude00"}}]}');
    assert.equal(d.text(), 'héllo é😀');
  });

  it('is empty when nothing was delivered', () => {
    const d = new DeliveredText();
    d.add(chunk({ role: 'assistant' }));
    assert.equal(d.text(), '');
    assert.equal(d.finishReason, undefined);
  });
});
