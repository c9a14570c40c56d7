// Properties of request validation, through the real gateway (app.inject, a fake upstream behind
// it): a well-formed body is never refused, whatever unknown fields ride along; a known field of
// the wrong type is always a 400 in OpenAI's shape that names it, before anything goes upstream;
// and no body at all, bytes or JSON, makes the gateway answer 5xx.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startFakeUpstream } from '../../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../../src/fake-upstream/types.js';
import { chatCompletionsBodySchema } from '../../../src/http/schemas/chat-completions.js';
import { embeddingsBodySchema } from '../../../src/http/schemas/embeddings.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../../helpers/start-gateway.js';

const PROVIDER_KEY = 'sk-test-provider-secret-0123456789';
/** Each run is one gateway round trip (a few ms): enough to explore, cheap enough to run always. */
const NUM_RUNS = 100;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Body = Record<string, unknown>;

const text = fc.string({ unit: 'binary', maxLength: 16 });

const { json } = fc.letrec<{ json: Json }>((tie) => ({
  json: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    text,
    fc.array(tie('json'), { maxLength: 3 }),
    fc.dictionary(text, tie('json'), { maxKeys: 3 }),
  ),
}));

/**
 * Names an unknown field must not take: the ones the gateway checks, and the ones the fake
 * upstream acts on (x_fake sets its latency, response_format and tool_choice shape its answer).
 */
const MEANINGFUL = new Set([
  ...Object.keys(chatCompletionsBodySchema.properties),
  ...Object.keys(embeddingsBodySchema.properties),
  'x_fake',
  'response_format',
  'tool_choice',
]);
const unknownKey = fc
  .oneof(fc.constantFrom('__proto__', 'constructor', 'toString', 'seed', 'some_future_knob'), text)
  .filter((k) => !MEANINGFUL.has(k));
const unknownFields = fc.dictionary(unknownKey, json, { maxKeys: 3 });

/** Wraps an arbitrary with the option of leaving the field out (undefined: not serialised). */
const optional = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(arb, { nil: undefined });
const nullable = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> => fc.option(arb, { nil: null });

const textPart = fc.record({ type: fc.constant('text'), text });
const imagePart = fc.record({
  type: fc.constant('image_url'),
  image_url: fc.record(
    { url: fc.constant('https://example.com/cat.png'), detail: fc.constantFrom('low', 'high', 'auto') },
    { requiredKeys: ['url'] },
  ),
});
const content = fc.oneof(text, fc.array(textPart, { minLength: 1, maxLength: 3 }));
const userContent = fc.oneof(text, fc.array(fc.oneof(textPart, imagePart), { minLength: 1, maxLength: 3 }));
const toolCall = fc.record({
  id: text,
  type: fc.constant('function'),
  function: fc.record({ name: text, arguments: text }),
});

const message = fc
  .tuple(
    fc.oneof(
      fc.record({ role: fc.constant('system'), content, name: optional(text) }),
      fc.record({ role: fc.constant('user'), content: userContent, name: optional(text) }),
      fc.record({
        role: fc.constant('assistant'),
        content: nullable(content),
        tool_calls: optional(fc.array(toolCall, { minLength: 1, maxLength: 2 })),
      }),
      fc.record({ role: fc.constant('tool'), content, tool_call_id: text }),
    ),
    unknownFields,
  )
  .map(([known, extra]) => ({ ...extra, ...known }));

const tool = fc.record({
  type: fc.constant('function'),
  function: fc.record({
    name: fc.stringMatching(/^[a-zA-Z_]{1,12}$/),
    parameters: fc.constant({ type: 'object', properties: { q: { type: 'string' } }, required: ['q'] }),
  }),
});

/**
 * Well-formed chat bodies. Limits stay where a real request would have them: a max_tokens of
 * 10^9 is valid JSON-schema-wise but asks for more than a context window holds.
 */
const chatBody: fc.Arbitrary<Body> = fc
  .record({
    known: fc.record(
      {
        model: fc.constantFrom('gpt-4o-mini', 'gpt-4o'),
        messages: fc.array(message, { minLength: 1, maxLength: 4 }),
        stream: nullable(fc.boolean()),
        stream_options: nullable(fc.record({ include_usage: fc.boolean() }, { requiredKeys: [] })),
        max_tokens: nullable(fc.integer({ min: 1, max: 4096 })),
        max_completion_tokens: nullable(fc.integer({ min: 1, max: 4096 })),
        n: nullable(fc.integer({ min: 1, max: 128 })),
        temperature: nullable(fc.double({ min: 0, max: 2, noNaN: true })),
        top_p: nullable(fc.double({ min: 0, max: 1, noNaN: true })),
        tools: fc.array(tool, { maxLength: 2 }),
        user: text,
      },
      { requiredKeys: ['model', 'messages'] },
    ),
    extra: unknownFields,
  })
  .map(({ known, extra }) => ({ ...extra, ...known }));

const embeddingsBody: fc.Arbitrary<Body> = fc
  .record({
    known: fc.record(
      {
        model: fc.constant('text-embedding-3-small'),
        input: fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 3 })),
        encoding_format: fc.constantFrom('float', 'base64'),
        dimensions: fc.integer({ min: 1, max: 16 }),
        user: text,
      },
      { requiredKeys: ['model', 'input'] },
    ),
    extra: unknownFields,
  })
  .map(({ known, extra }) => ({ ...extra, ...known }));

/** A JSON value that is not `accepted`; `edges` are wrong values right at a boundary. */
const wrong = (accepted: (v: Json) => boolean, ...edges: Json[]): fc.Arbitrary<Json> =>
  fc.oneof(
    json.filter((v) => !accepted(v)),
    ...(edges.length ? [fc.constantFrom(...edges)] : []),
  );

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);
const isInt = (v: Json, min: number, max = Infinity): boolean =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const inRange = (v: Json, min: number, max: number): boolean => typeof v === 'number' && v >= min && v <= max;
const nonEmptyString = (v: Json): boolean => typeof v === 'string' && v.length > 0;

/** One way to break a valid body: `apply` changes it and returns the param the 400 must name. */
interface Breakage {
  what: string;
  apply(body: Body): string;
}

const setField = (field: string, value: fc.Arbitrary<Json>): fc.Arbitrary<Breakage> =>
  value.map((v) => ({
    what: `${field} = ${JSON.stringify(v)}`,
    apply: (b) => {
      b[field] = v;
      return field;
    },
  }));
const removeField = (field: string): fc.Arbitrary<Breakage> =>
  fc.constant({
    what: `no ${field}`,
    apply: (b) => {
      delete b[field];
      return field;
    },
  });

/** Breaks message `pick` (modulo the count): not an object, no role, or a role of the wrong type. */
const messageBreakage: fc.Arbitrary<Breakage> = fc
  .tuple(
    fc.nat(),
    fc.oneof(
      wrong(isObject).map((v) => ({ role: false, value: v })),
      fc.constant({ role: true, value: undefined }),
      wrong((v) => typeof v === 'string').map((v) => ({ role: true, value: v })),
    ),
  )
  .map(([pick, { role, value }]) => ({
    what: `message #${pick} ${role ? 'role ' : ''}= ${JSON.stringify(value)}`,
    apply: (b: Body) => {
      const messages = b.messages as unknown[];
      const i = pick % messages.length;
      if (!role) messages[i] = value;
      else if (value === undefined) delete (messages[i] as Body).role;
      else (messages[i] as Body).role = value;
      return `messages[${i}]${role ? '.role' : ''}`;
    },
  }));

/** A breakage that is not a single field set to a value. */
const custom = (what: string, param: string, apply: (b: Body) => void): Breakage => ({
  what,
  apply: (b) => {
    apply(b);
    return param;
  },
});

const nullOr =
  (check: (v: Json) => boolean) =>
  (v: Json): boolean =>
    v === null || check(v);

const chatBreakage: fc.Arbitrary<Breakage> = fc.oneof(
  removeField('model'),
  removeField('messages'),
  setField('model', wrong(nonEmptyString, '')),
  // Not an array, or empty; an array with a bad item is messageBreakage's (it names the item).
  setField('messages', wrong(Array.isArray, [])),
  messageBreakage,
  setField('stream', wrong(nullOr((v) => typeof v === 'boolean'))),
  setField('stream_options', wrong(nullOr(isObject), [])),
  wrong((v) => typeof v === 'boolean').map((v) =>
    custom(`include_usage = ${JSON.stringify(v)}`, 'stream_options.include_usage', (b) => {
      b.stream_options = { include_usage: v };
    }),
  ),
  setField(
    'max_tokens',
    wrong(
      nullOr((v) => isInt(v, 1)),
      0,
      -1,
      1.5,
    ),
  ),
  setField(
    'max_completion_tokens',
    wrong(
      nullOr((v) => isInt(v, 1)),
      0,
      2.5,
    ),
  ),
  setField(
    'n',
    wrong(
      nullOr((v) => isInt(v, 1, 128)),
      0,
      129,
      1.5,
    ),
  ),
  setField(
    'temperature',
    wrong(
      nullOr((v) => inRange(v, 0, 2)),
      -0.01,
      2.01,
    ),
  ),
  setField(
    'top_p',
    wrong(
      nullOr((v) => inRange(v, 0, 1)),
      -0.01,
      1.01,
    ),
  ),
  // Not an array (null too: tools is not nullable); a bad item is named by its index, below.
  setField('tools', wrong(Array.isArray)),
  wrong(isObject).map((v) =>
    custom(`tools = [${JSON.stringify(v)}]`, 'tools[0]', (b) => {
      b.tools = [v];
    }),
  ),
  fc.constant(
    custom('a tool without type', 'tools[0].type', (b) => {
      b.tools = [{ function: { name: 'f' } }];
    }),
  ),
  setField(
    'user',
    wrong((v) => typeof v === 'string'),
  ),
);

const embeddingsBreakage: fc.Arbitrary<Breakage> = fc.oneof(
  removeField('model'),
  removeField('input'),
  setField('model', wrong(nonEmptyString, '')),
  setField(
    'input',
    wrong((v) => typeof v === 'string' || Array.isArray(v)),
  ),
  setField(
    'encoding_format',
    wrong((v) => typeof v === 'string'),
  ),
  setField(
    'dimensions',
    wrong((v) => isInt(v, 1), 0, 1.5),
  ),
  setField(
    'user',
    wrong((v) => typeof v === 'string'),
  ),
);

describe('request validation properties (through the gateway)', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('props');

  before(async () => {
    fake = await startFakeUpstream({ apiKey: PROVIDER_KEY, recordRequests: true });
    // One attempt: an upstream answer is relayed as it is, never retried into something else.
    gw = await startGateway(baseConfig(fake.url, [team], { routing: { retry: { maxAttempts: 1 } } }));
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });

  const post = async (path: string, payload: string | Buffer) => {
    const res = await gw.gateway.app.inject({
      method: 'POST',
      url: path,
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
      payload,
    });
    return { status: res.statusCode, body: res.body, json: () => res.json() };
  };

  const assertOpenAIError = (json: any): void => {
    assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(typeof json.error.message, 'string');
  };

  it('never refuses a well-formed chat body, whatever unknown fields it carries', async () => {
    await fc.assert(
      fc.asyncProperty(chatBody, async (body) => {
        const res = await post('/v1/chat/completions', JSON.stringify(body));
        assert.equal(res.status, 200, res.body);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('never refuses a well-formed embeddings body', async () => {
    await fc.assert(
      fc.asyncProperty(embeddingsBody, async (body) => {
        const res = await post('/v1/embeddings', JSON.stringify(body));
        assert.equal(res.status, 200, res.body);
      }),
      { numRuns: 50 },
    );
  });

  for (const [path, valid, breakage] of [
    ['/v1/chat/completions', chatBody, chatBreakage],
    ['/v1/embeddings', embeddingsBody, embeddingsBreakage],
  ] as const) {
    it(`answers a wrong-typed or missing field on ${path} with a 400 naming it`, async () => {
      await fc.assert(
        fc.asyncProperty(valid, breakage, async (valid, broken) => {
          // A copy: fast-check reports the body as generated, not as broken.
          const body = JSON.parse(JSON.stringify(valid)) as Body;
          const param = broken.apply(body);
          const before = fake.requests.length;
          const res = await post(path, JSON.stringify(body));
          assert.equal(res.status, 400, res.body);
          const json = res.json();
          assertOpenAIError(json);
          assert.equal(json.error.type, 'invalid_request_error');
          assert.equal(json.error.param, param);
          assert.ok(json.error.message.includes(`'${param}'`), json.error.message);
          assert.equal(fake.requests.length, before, 'a refused body must not reach the upstream');
        }),
        { numRuns: NUM_RUNS },
      );
    });
  }

  /** Bytes that are nearly JSON: a valid body cut short, with a byte changed, or none of it. */
  const nearlyJson = fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    fc.tuple(chatBody, fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([body, cut, at, byte]) => {
      const bytes = Buffer.from(JSON.stringify(body));
      const out = bytes.subarray(0, 1 + (cut % bytes.length));
      out[at % out.length] = byte;
      return out;
    }),
  );

  it('never answers 5xx to arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        nearlyJson,
        fc.constantFrom('/v1/chat/completions', '/v1/embeddings'),
        async (bytes, path) => {
          const res = await post(path, bytes);
          assert.ok(res.status < 500, `${res.status} ${res.body}`);
          if (res.status >= 400) assertOpenAIError(res.json());
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });

  it('never answers 5xx to arbitrary JSON, as the body or in place of any field', async () => {
    const anyField = fc.oneof(
      fc.constantFrom(...MEANINGFUL),
      fc.constantFrom('content', 'role', 'tool_calls'),
    );
    const mangled = fc.oneof(
      json,
      // A valid body with one field, top-level or in the first message, holding any JSON at all.
      fc.tuple(chatBody, anyField, json, fc.boolean()).map(([body, field, value, inMessage]) => {
        const target = inMessage ? (body.messages as Body[])[0]! : body;
        target[field] = value;
        return body as Json;
      }),
    );
    await fc.assert(
      fc.asyncProperty(
        mangled,
        fc.constantFrom('/v1/chat/completions', '/v1/embeddings'),
        async (value, path) => {
          const res = await post(path, JSON.stringify(value));
          assert.ok(res.status < 500, `${res.status} ${res.body}`);
          if (res.status >= 400) assertOpenAIError(res.json());
        },
      ),
      { numRuns: NUM_RUNS },
    );
  });
});
