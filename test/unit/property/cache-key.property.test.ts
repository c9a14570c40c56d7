// Properties of the cache key: two bodies share a key exactly when they mean the same JSON once
// the delivery and tracing fields (KEY_IGNORED_FIELDS, top level only) are set aside. A key that
// depends on key order wastes the cache; one that misses a difference serves a wrong answer.
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { cacheDigest, canonicalJson } from '../../../src/pipeline/cache/cache-key.js';

const NUM_RUNS = 200;
type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Body = Record<string, unknown>;

/** What the module documents as ignored, written out here so a longer list in src fails a test. */
const IGNORED = ['stream', 'stream_options', 'user', 'metadata'];
const isIgnored = (name: string): boolean => IGNORED.includes(name);

/**
 * Keys that matter: the ignored names (which count when nested), request fields that change the
 * answer, integer-like keys (JavaScript orders them first), '__proto__', and anything at all.
 */
const key = fc.oneof(
  fc.constantFrom(
    ...IGNORED,
    'seed',
    'temperature',
    'tools',
    'n',
    'role',
    'content',
    '0',
    '2',
    '10',
    '__proto__',
  ),
  fc.string({ unit: 'binary', maxLength: 6 }),
);

const leaf = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  // -0 is JSON's 0; the others print in exponent form.
  fc.constantFrom(-0, 1e21, 5e-324, 0.1),
  fc.string({ unit: 'binary', maxLength: 8 }),
);

/** JSON values, as JSON.parse gives them and as code builds them (null prototypes included). */
const { json } = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    leaf,
    fc.array(tie('json'), { maxLength: 4 }),
    fc.dictionary(key, tie('json'), { maxKeys: 4 }),
  ),
}));

/** The same, with undefined members and items, which canonicalJson must treat as JSON.stringify does. */
const { loose } = fc.letrec<{ loose: unknown }>((tie) => ({
  loose: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    leaf,
    fc.constant(undefined),
    fc.array(tie('loose'), { maxLength: 4 }),
    fc.dictionary(key, tie('loose'), { maxKeys: 4 }),
  ),
}));
const container = fc.oneof(fc.array(loose, { maxLength: 4 }), fc.dictionary(key, loose, { maxKeys: 4 }));

/** A chat-like body: the usual fields plus arbitrary others, none of them ignored. */
const body: fc.Arbitrary<Body> = fc
  .record({
    model: fc.string({ maxLength: 12 }),
    messages: fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'assistant'), content: json }), {
      minLength: 1,
      maxLength: 3,
    }),
    extra: fc.dictionary(key, json, { maxKeys: 4 }),
  })
  .map(({ model, messages, extra }) => {
    const out: Body = { ...extra, model, messages };
    for (const name of IGNORED) delete out[name];
    return out;
  });

/** A small seeded generator, so fast-check can shrink a shuffle through its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A deep copy with the keys of every object in a random order (arrays keep theirs). */
function shuffleKeys(value: unknown, random: () => number): unknown {
  if (Array.isArray(value)) return value.map((v) => shuffleKeys(v, random));
  if (value === null || typeof value !== 'object') return value;
  const entries = Object.entries(value);
  for (let i = entries.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [entries[i], entries[j]] = [entries[j]!, entries[i]!];
  }
  return Object.fromEntries(entries.map(([k, v]) => [k, shuffleKeys(v, random)]));
}

/** What JSON makes of a value: the reference the canonical form is held to. */
const viaJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

type Path = (string | number)[];

/** Every place in a body that can change: a path to each value in it, top-level fields included. */
function paths(value: unknown, at: Path = []): Path[] {
  const out = at.length > 0 ? [at] : [];
  if (Array.isArray(value)) value.forEach((v, i) => out.push(...paths(v, [...at, i])));
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) out.push(...paths(v, [...at, k]));
  return out;
}

const get = (value: unknown, path: Path): any => path.reduce((v: any, p) => v[p], value);

type Change =
  { kind: 'replace'; pick: number; value: Json } | { kind: 'add'; pick: number; key: string; value: Json };

/**
 * A copy of the body changed so that it means something else, or undefined when the pick does
 * not apply (the same value again, a key already there, an ignored name at the top level).
 */
function applyChange(b: Body, change: Change): Body | undefined {
  const copy = viaJson(b) as Body;
  if (change.kind === 'replace') {
    const all = paths(b);
    const path = all[change.pick % all.length]!;
    if (isDeepStrictEqual(viaJson(get(b, path)), viaJson(change.value))) return undefined;
    get(copy, path.slice(0, -1))[path[path.length - 1]!] = change.value;
    return copy;
  }
  const objects = [[], ...paths(b)].filter((p) => {
    const v = get(b, p);
    return v !== null && typeof v === 'object' && !Array.isArray(v);
  });
  const path = objects[change.pick % objects.length]!;
  const target = get(copy, path);
  if (Object.hasOwn(target, change.key)) return undefined;
  if (path.length === 0 && isIgnored(change.key)) return undefined;
  // defineProperty, so that a '__proto__' key is a member like any other.
  Object.defineProperty(target, change.key, { value: change.value, enumerable: true, writable: true });
  return copy;
}

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), pick: fc.nat(), value: json }),
  fc.record({ kind: fc.constant('add' as const), pick: fc.nat(), key, value: json }),
);

describe('cache key properties', () => {
  it('canonicalJson parses back to what JSON makes of the value', () => {
    fc.assert(
      fc.property(container, (value) => {
        assert.deepEqual(JSON.parse(canonicalJson(value)), viaJson(value));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('canonicalJson and the digest do not depend on key order or whitespace, at any depth', () => {
    fc.assert(
      fc.property(body, fc.integer(), (b, seed) => {
        const shuffled = shuffleKeys(b, rng(seed)) as Body;
        const spaced = JSON.parse(JSON.stringify(b, null, 2)) as Body;
        assert.equal(canonicalJson(shuffled), canonicalJson(b));
        assert.equal(cacheDigest('chat', shuffled), cacheDigest('chat', b));
        assert.equal(cacheDigest('chat', spaced), cacheDigest('chat', b));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('a changed value or an added key anywhere gives another digest', () => {
    fc.assert(
      fc.property(body, change, (b, c) => {
        const changed = applyChange(b, c);
        fc.pre(changed !== undefined);
        assert.notEqual(cacheDigest('chat', changed), cacheDigest('chat', b));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('array order counts', () => {
    fc.assert(
      fc.property(body, fc.nat(), (b, pick) => {
        const arrays = paths(b).filter((p) => {
          const v = get(b, p);
          // Reversed, it must read differently: [a, b, a] reversed is itself.
          return Array.isArray(v) && !isDeepStrictEqual(viaJson(v), viaJson([...v].reverse()));
        });
        fc.pre(arrays.length > 0);
        const copy = viaJson(b) as Body;
        (get(copy, arrays[pick % arrays.length]!) as unknown[]).reverse();
        assert.notEqual(cacheDigest('chat', copy), cacheDigest('chat', b));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('ignores the delivery and tracing fields at the top level only, and keeps the endpoint', () => {
    const ignoredValues = fc.record(Object.fromEntries(IGNORED.map((name) => [name, json])), {
      requiredKeys: [],
    });
    fc.assert(
      fc.property(body, ignoredValues, fc.constantFrom(...IGNORED), json, (b, extra, name, value) => {
        const d = cacheDigest('chat', b);
        assert.equal(cacheDigest('chat', { ...b, ...extra }), d);
        const messages = viaJson(b.messages) as Record<string, unknown>[];
        messages[0]![name] = value;
        assert.notEqual(cacheDigest('chat', { ...b, messages }), d);
        assert.notEqual(
          cacheDigest('chat', { ...b, nested: { [name]: value } }),
          cacheDigest('chat', { ...b, nested: {} }),
        );
        assert.notEqual(cacheDigest('embeddings', b), d);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
