// Which requests count as "the same" for the response cache. The digest covers every body
// field that can change the answer, including fields this gateway does not know: a sampling
// knob added by a provider tomorrow must make two requests differ, not collide. Only fields
// that change how the answer is delivered or traced, never what it is, are left out. The
// endpoint goes into the digest too, so a chat body and an embeddings body never share an entry.
import { hash } from 'node:crypto';
import type { Endpoint } from '../types.js';

/** Top-level body fields that do not change the output: delivery (stream, stream_options), tracing (user, metadata). */
export const KEY_IGNORED_FIELDS: ReadonlySet<string> = new Set([
  'stream',
  'stream_options',
  'user',
  'metadata',
]);

/**
 * sha256 (hex) of `<endpoint>\n<canonical body>`. The body is serialised once, in canonical form,
 * and never stringified as a whole otherwise: on large prompts that walk is the cost of a key.
 */
export function cacheDigest(endpoint: Endpoint, body: Readonly<Record<string, unknown>>): string {
  // One-shot hash: a Hash object with its update/digest calls was 5% of a cache hit's CPU.
  return hash('sha256', `${endpoint}\n${canonicalJson(body, KEY_IGNORED_FIELDS)}`, 'hex');
}

/**
 * JSON with object keys sorted (at every depth) and arrays in their order, so two bodies that
 * differ only in key order or whitespace give the same text. `omitTopLevel` names top-level
 * keys to leave out. Undefined members are dropped and undefined array items become null, as
 * JSON.stringify does.
 */
export function canonicalJson(value: unknown, omitTopLevel?: ReadonlySet<string>): string {
  let out = '';
  const write = (v: unknown, omit: ReadonlySet<string> | undefined): void => {
    if (v === null || typeof v !== 'object') {
      out += JSON.stringify(v) ?? 'null';
      return;
    }
    if (Array.isArray(v)) {
      out += '[';
      for (let i = 0; i < v.length; i++) {
        if (i > 0) out += ',';
        write(v[i], undefined);
      }
      out += ']';
      return;
    }
    const obj = v as Record<string, unknown>;
    const names = sortNames(Object.keys(obj));
    out += '{';
    let first = true;
    for (const name of names) {
      const member = obj[name];
      if (member === undefined || omit?.has(name)) continue;
      if (!first) out += ',';
      first = false;
      out += JSON.stringify(name);
      out += ':';
      write(member, undefined);
    }
    out += '}';
  };
  write(value, omitTopLevel);
  return out;
}

/**
 * `names` sorted in place by UTF-16 code units, as the default sort does: the same order on every
 * replica and Node version. A body's objects have a handful of keys (a message: role, content),
 * where an insertion sort needs no scratch array; Array.prototype.sort allocated one per object.
 */
function sortNames(names: string[]): string[] {
  if (names.length > 16) return names.sort();
  for (let i = 1; i < names.length; i++) {
    const name = names[i]!;
    let j = i - 1;
    while (j >= 0 && names[j]! > name) {
      names[j + 1] = names[j]!;
      j--;
    }
    names[j + 1] = name;
  }
  return names;
}
