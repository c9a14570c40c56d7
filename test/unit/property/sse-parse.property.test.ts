// Properties of the SSE parser: however the network splits a stream (inside a multi-byte
// character, between the CR and LF of a CRLF, into empty chunks), the parser must see the same
// events as when the stream arrives whole, and those must be the events that were sent.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { SseParser, type SseEvent } from '../../../src/providers/sse/parse.js';

const NUM_RUNS = 300;
const EOLS = ['\n', '\r\n', '\r'] as const;
type Eol = (typeof EOLS)[number];

/** Text of one line: any code point except the three that end a line. */
const lineText = fc.string({ unit: 'binary', maxLength: 12 }).map((s) => s.replace(/[\r\n]/g, ''));
const eol = fc.constantFrom(...EOLS);

/** A line that must not change any event: a comment, or a field the parser ignores. */
const ignoredLine = fc.oneof(
  lineText.map((t) => `:${t}`),
  lineText.map((t) => `id: ${t}`),
  fc.nat({ max: 9999 }).map((n) => `retry: ${n}`),
);

interface Sent {
  event: SseEvent;
  /** How each field is spelled; a ':' right after the name, or not, is part of the test. */
  lines: string[];
}

/** `data: v` keeps v as is; `data:v` only when v does not start with the space the parser drops. */
const fieldLine = (name: string, value: string, spaced: boolean): string =>
  value === '' && !spaced ? name : spaced || value.startsWith(' ') ? `${name}: ${value}` : `${name}:${value}`;

const sentEvent: fc.Arbitrary<Sent> = fc
  .record({
    name: fc.option(lineText, { nil: undefined }),
    data: fc.array(lineText, { minLength: 1, maxLength: 4 }),
    spacing: fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
    comments: fc.array(fc.tuple(fc.nat({ max: 5 }), ignoredLine), { maxLength: 3 }),
  })
  .map(({ name, data, spacing, comments }) => {
    const lines = data.map((d, i) => fieldLine('data', d, spacing[i]!));
    if (name !== undefined) lines.splice(spacing[4] ? 0 : lines.length, 0, fieldLine('event', name, true));
    for (const [at, c] of comments) lines.splice(Math.min(at, lines.length), 0, c);
    return { event: { event: name, data: data.join('\n') }, lines };
  });

/**
 * Every line of every event, each with its own line end, and a blank line after each event. A
 * blank line after a CR is never a lone LF: "\r\n" is one line end, so that stream would mean
 * something else (the format's own ambiguity, not the parser's).
 */
function serialise(events: Sent[], eols: Eol[]): string {
  let out = '';
  let i = 0;
  const next = (): Eol => eols[i++ % eols.length]!;
  let previous: Eol | undefined;
  for (const e of events) {
    for (const line of e.lines) {
      previous = next();
      out += line + previous;
    }
    let blank = next();
    if (previous === '\r' && blank === '\n') blank = '\r\n';
    out += blank;
    previous = blank;
  }
  return out;
}

/**
 * Where to cut: anywhere, or right after the k-th CR (where a CRLF's LF may arrive late), which
 * an arbitrary offset would seldom hit. A repeated offset makes an empty chunk.
 */
type Cut = { any: number } | { afterCr: number };
const cut: fc.Arbitrary<Cut> = fc.oneof(
  fc.nat().map((n) => ({ any: n })),
  fc.nat({ max: 20 }).map((k) => ({ afterCr: k })),
);

function offset(bytes: Uint8Array, c: Cut): number {
  if ('any' in c) return c.any % (bytes.length + 1);
  const crs = bytes.reduce<number[]>((acc, b, i) => (b === 13 ? [...acc, i + 1] : acc), []);
  return crs.length === 0 ? 0 : crs[c.afterCr % crs.length]!;
}

function split(bytes: Uint8Array, cuts: Cut[]): Uint8Array[] {
  const at = cuts.map((c) => offset(bytes, c)).sort((a, b) => a - b);
  const pieces: Uint8Array[] = [];
  let start = 0;
  for (const c of at) {
    pieces.push(bytes.subarray(start, c));
    start = c;
  }
  pieces.push(bytes.subarray(start));
  return pieces;
}

function parseAll(pieces: Uint8Array[]): { events: SseEvent[]; pending: boolean } {
  const parser = new SseParser();
  const events = pieces.flatMap((p) => parser.push(p));
  return { events, pending: parser.pending };
}

/** How many blank lines a text has, by the WHATWG line rules: each one can dispatch one event. */
function blankLines(text: string): number {
  const lines = text.split(/\r\n|\r|\n/);
  lines.pop(); // the unterminated rest is not a line yet
  return lines.filter((l) => l === '').length;
}

const encoder = new TextEncoder();

describe('SseParser properties', () => {
  it('yields the sent events, whole or split at any bytes', () => {
    fc.assert(
      fc.property(
        fc.array(sentEvent, { maxLength: 6 }),
        fc.array(eol, { minLength: 1, maxLength: 8 }),
        fc.array(cut, { maxLength: 12 }),
        (sent, eols, cuts) => {
          const bytes = encoder.encode(serialise(sent, eols));
          const expected = sent.map((s) => s.event);
          const whole = parseAll([bytes]);
          assert.deepEqual(whole.events, expected);
          assert.equal(whole.pending, false);
          const pieces = parseAll(split(bytes, cuts));
          assert.deepEqual(pieces.events, expected);
          assert.equal(pieces.pending, false);
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('splits one byte at a time like anywhere else', () => {
    fc.assert(
      fc.property(fc.array(sentEvent, { maxLength: 3 }), fc.array(eol, { minLength: 1 }), (sent, eols) => {
        const bytes = encoder.encode(serialise(sent, eols));
        const single = Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
        assert.deepEqual(
          parseAll(single).events,
          sent.map((s) => s.event),
        );
      }),
      { numRuns: 100 },
    );
  });

  // Garbage made of the bytes that matter to the parser, plus any byte at all (invalid UTF-8 too).
  const garbage = fc
    .array(
      fc.oneof(
        fc
          .constantFrom('\r', '\n', ':', ' ', 'data', 'event', 'data:', 'é', '✓')
          .map((s) => encoder.encode(s)),
        fc.uint8Array({ minLength: 1, maxLength: 4 }),
      ),
      { maxLength: 40 },
    )
    .map((parts) => Uint8Array.from(parts.flatMap((p) => Array.from(p))));

  it('never throws on garbage, and dispatches at most one event per blank line', () => {
    fc.assert(
      fc.property(garbage, fc.array(cut, { maxLength: 8 }), (bytes, cuts) => {
        const whole = parseAll([bytes]);
        const text = new TextDecoder().decode(bytes);
        assert.ok(whole.events.length <= blankLines(text), JSON.stringify(text));
        assert.deepEqual(parseAll(split(bytes, cuts)).events, whole.events);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
