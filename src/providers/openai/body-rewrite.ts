// The request body forwarded with its top-level `model` replaced, by splicing the received bytes
// rather than serialising the parsed body again (a group, alias or fallback sends a different
// upstream name on most requests, and a re-serialisation costs about what the parse did).
//
// The splice happens only when it is provably the top-level member: the parsed body holds
// exactly one `model` key at any depth (the top-level one), and the bytes hold exactly one
// unescaped `"model": "..."` member, not preceded by a backslash, whose value is the parsed
// model. Inside a JSON string every quote is escaped, so such a member is a key; being the only
// one, it is the top-level key unless that key was written with escapes, in which case the parse
// shows one `model` key while the bytes show none, or show a different key — and a different key
// named `model` cannot exist, since the parse counts every `model` key. Otherwise: undefined,
// and the caller serialises.

const MEMBER = /"model"\s*:\s*"((?:[^"\\]|\\.)*)"/g;

/** `raw` with the top-level model `from` changed to `to`, or undefined when that is not provably safe. */
export function spliceModel(
  raw: Buffer,
  body: Readonly<Record<string, unknown>>,
  from: string,
  to: string,
): Buffer | undefined {
  if (body.model !== from || countModelKeys(body, 2) !== 1) return undefined;
  // latin1 maps each byte to one char, so string indexes are byte offsets.
  const text = raw.toString('latin1');
  MEMBER.lastIndex = 0;
  const member = MEMBER.exec(text);
  if (!member || MEMBER.exec(text) !== null || text.charCodeAt(member.index - 1) === 0x5c /* \ */) {
    return undefined;
  }
  const valueEnd = member.index + member[0].length; // after the closing quote
  const valueStart = valueEnd - member[1]!.length - 2; // at the opening quote
  let value: unknown;
  try {
    value = JSON.parse(raw.toString('utf8', valueStart, valueEnd));
  } catch {
    return undefined;
  }
  if (value !== from) return undefined;
  return Buffer.concat([
    raw.subarray(0, valueStart),
    Buffer.from(JSON.stringify(to)),
    raw.subarray(valueEnd),
  ]);
}

/** `model` keys in `v` at any depth, counting no further than `stopAt`. Walks objects only. */
function countModelKeys(v: unknown, stopAt: number): number {
  let n = 0;
  const walk = (x: unknown): void => {
    if (n >= stopAt || x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) {
      for (const item of x) walk(item);
      return;
    }
    for (const key of Object.keys(x)) {
      if (key === 'model') n++;
      walk((x as Record<string, unknown>)[key]);
    }
  };
  walk(v);
  return n;
}

const USAGE_MEMBER = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * `raw` with `"stream_options":{"include_usage":true}` added as its first member, when the body
 * has no `stream_options` at all (what almost every streaming client sends): the parse holds
 * every top-level key, so the bytes hold no such member either, and a new first member cannot
 * collide. Undefined when the body has one (it is then merged by a serialisation) or the bytes
 * are not a non-empty object.
 */
export function insertStreamUsage(raw: Buffer, body: Readonly<Record<string, unknown>>): Buffer | undefined {
  if (Object.hasOwn(body, 'stream_options')) return undefined;
  let open = 0;
  while (open < raw.length && isJsonSpace(raw[open]!)) open++;
  if (raw[open] !== 0x7b /* { */) return undefined;
  let first = open + 1;
  while (first < raw.length && isJsonSpace(raw[first]!)) first++;
  if (first >= raw.length || raw[first] === 0x7d /* } */) return undefined;
  return Buffer.concat([raw.subarray(0, open + 1), USAGE_MEMBER, raw.subarray(open + 1)]);
}

function isJsonSpace(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}
