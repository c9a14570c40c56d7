import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeSseData } from '../../../src/providers/sse/encode.js';
import { SseParser } from '../../../src/providers/sse/parse.js';

const all = (parts: (string | Uint8Array)[]): { event: string | undefined; data: string }[] => {
  const p = new SseParser();
  return parts.flatMap((x) => p.push(x));
};

describe('SseParser', () => {
  it('parses OpenAI framing', () => {
    assert.deepEqual(all(['data: {"a":1}\n\ndata: [DONE]\n\n']), [
      { event: undefined, data: '{"a":1}' },
      { event: undefined, data: '[DONE]' },
    ]);
  });

  it('handles events split at any byte, including inside a multi-byte character', () => {
    const text = 'event: message_start\ndata: {"t":"héllo ✓"}\n\n';
    const bytes = new TextEncoder().encode(text);
    for (let cut = 1; cut < bytes.length; cut++) {
      assert.deepEqual(all([bytes.slice(0, cut), bytes.slice(cut)]), [
        { event: 'message_start', data: '{"t":"héllo ✓"}' },
      ]);
    }
  });

  it('accepts CRLF and CR line ends, also when a CRLF is split across pushes', () => {
    assert.deepEqual(all(['data: a\r\n\r\ndata: b\r\rdata: c\r', '\n\r\n']), [
      { event: undefined, data: 'a' },
      { event: undefined, data: 'b' },
      { event: undefined, data: 'c' },
    ]);
  });

  it('keeps a pending CR across an empty chunk, so the LF after it is no blank line', () => {
    // Found by the property test: the empty push forgot the CR, and the LF dispatched 'a' alone.
    const empty = new Uint8Array(0);
    assert.deepEqual(all(['data: a\r', empty, '\ndata: b\n\n']), [{ event: undefined, data: 'a\nb' }]);
    assert.deepEqual(all(['data: a\r', '', '\ndata: b\n\n']), [{ event: undefined, data: 'a\nb' }]);
  });

  it('joins multi-line data, skips comments and unknown fields, drops one leading space only', () => {
    assert.deepEqual(all([': keep-alive\ndata:x\ndata:  y\nid: 7\nretry: 10\n\n']), [
      { event: undefined, data: 'x\n y' },
    ]);
  });

  it('reads a field without a colon as an empty value, and three or more data lines in order', () => {
    assert.deepEqual(all(['data\n\nevent:ping\ndata: a\ndata: b\ndata: c\n\ndatum: no\ndata:\n\n']), [
      { event: undefined, data: '' },
      { event: 'ping', data: 'a\nb\nc' },
      { event: undefined, data: '' },
    ]);
  });

  it('does not dispatch an unterminated last event', () => {
    const p = new SseParser();
    assert.deepEqual(p.push('data: partial'), []);
    assert.equal(p.pending, true);
  });

  it('encodes multi-line payloads so they parse back unchanged', () => {
    assert.deepEqual(all([encodeSseData('a\nb'), encodeSseData('c')]), [
      { event: undefined, data: 'a\nb' },
      { event: undefined, data: 'c' },
    ]);
  });
});
