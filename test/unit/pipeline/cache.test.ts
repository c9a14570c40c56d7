import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  planChat,
  renderChatCompletion,
  renderChatStream,
  type ChatKnobs,
  type Json,
} from '../../../src/fake-upstream/responses.js';
import { createCacheStage, type CacheOptions } from '../../../src/pipeline/stages/cache.js';
import type {
  Chunk,
  Endpoint,
  JsonOutcome,
  Outcome,
  PipelineContext,
  StreamOutcome,
  Usage,
} from '../../../src/pipeline/types.js';
import { ClientAbortedError } from '../../../src/providers/upstream-client.js';
import { createKeys } from '../../../src/stores/keys.js';
import { MemoryStore } from '../../../src/stores/memory-store.js';
import { StoreUnavailableError, type Store } from '../../../src/stores/store.js';
import { createLogSink } from '../../helpers/log-sink.js';
import { Canceller } from '../../../src/pipeline/abort.js';

const KNOBS: ChatKnobs = { chunks: 6, parallelTools: true };
const TOOLS = [
  {
    type: 'function',
    function: {
      name: 'lookup',
      parameters: { type: 'object', properties: { q: { type: 'string' } }, required: ['q'] },
    },
  },
];

const OPTIONS: CacheOptions = {
  ttlSecondsFor: () => 60,
  maxEntryBytes: 1024 * 1024,
  cacheSampled: false,
  scopeFor: (team) => `t:${team}`,
  maxTtlSeconds: 3600,
};

let reqN = 0;
function ctxFor(
  body: Json,
  over: {
    team?: string;
    endpoint?: Endpoint;
    headers?: Record<string, string>;
    signal?: Canceller;
  } = {},
): PipelineContext {
  const stream = body.stream === true;
  return {
    reqId: `r${++reqN}`,
    endpoint: over.endpoint ?? 'chat',
    team: { name: over.team ?? 'search', models: new Set(), allModels: true },
    keyId: 'k1',
    model: body.model,
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream,
    clientWantsUsage:
      (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true,
    headers: over.headers ?? {},
    logFields: {},
    signal: over.signal ?? new Canceller(),
    log: createLogSink().log,
    candidates: [],
    deployment: undefined,
    attempts: 0,
  } as unknown as PipelineContext;
}

const chat = (over: Json = {}): Json => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'hi' }],
  temperature: 0,
  ...over,
});

/** The fake upstream's non-stream answer to `body`, as a provider returns it (upstream bytes). */
function jsonAnswer(body: Json, edit: (s: string) => string = (s) => s): JsonOutcome {
  const text = edit(renderChatCompletion(planChat(body, KNOBS), 'chatcmpl-json', 1700000000));
  const usage = (JSON.parse(text) as { usage: Usage }).usage;
  return { kind: 'json', status: 200, headers: { 'x-upstream': '1' }, body: Buffer.from(text), usage };
}

/**
 * The fake upstream's stream for `body` as the OpenAI provider relays it: usage forced on
 * upstream, its chunk hidden unless the client asked, and `usage` settling when the stream ends.
 * `failAt` throws before that chunk; a returned stream settles usage as relayStream does.
 */
function streamAnswer(body: Json, clientWantsUsage: boolean, failAt?: number): StreamOutcome {
  const frames = renderChatStream(planChat(body, KNOBS), 'chatcmpl-stream', 1700000000, true)
    .map((f) => f.slice('data: '.length, -2))
    .filter((d) => d !== '[DONE]');
  const usageData = frames.at(-1)!;
  const usage = (JSON.parse(usageData) as { usage: Usage }).usage;
  const visible = clientWantsUsage ? frames : frames.slice(0, -1);
  let settle!: (u: Usage | undefined) => void;
  const settled = new Promise<Usage | undefined>((r) => (settle = r));
  async function* chunks(): AsyncGenerator<Chunk> {
    try {
      for (let i = 0; i < visible.length; i++) {
        if (i === failAt) throw new Error('upstream cut the stream');
        yield { data: visible[i]! };
      }
    } finally {
      settle(usage);
    }
  }
  return { kind: 'stream', status: 200, headers: {}, chunks: chunks(), usage: settled };
}

/** A fake next that records its calls and answers with `answer(ctx)`. */
function fakeNext(answer: (ctx: PipelineContext) => Outcome | Promise<Outcome>) {
  const calls: PipelineContext[] = [];
  const next = async (ctx: PipelineContext): Promise<Outcome> => {
    calls.push(ctx);
    return answer(ctx);
  };
  return { next, calls };
}

function setup(options: Partial<CacheOptions> = {}, store: Store = new MemoryStore()) {
  const sink = createLogSink('debug');
  const stage = createCacheStage(
    { store, keys: createKeys(`tg:test:${Math.random()}:`), log: sink.log },
    { ...OPTIONS, ...options },
  );
  return { stage, store, sink };
}

async function drain(out: Outcome): Promise<string[]> {
  assert.equal(out.kind, 'stream');
  const datas: string[] = [];
  for await (const c of out.chunks) datas.push(c.data);
  return datas;
}

/** Lets fire-and-forget cache writes run. */
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

const bodyBytes = (out: Outcome): Buffer => {
  assert.equal(out.kind, 'json');
  assert.ok(Buffer.isBuffer(out.body));
  return out.body;
};

describe('cache stage: hits and misses', () => {
  it('stores a JSON miss and serves the identical bytes on a hit without calling next', async () => {
    const { stage } = setup();
    const answer = jsonAnswer(chat());
    const { next, calls } = fakeNext(() => answer);

    const c1 = ctxFor(chat());
    const first = await stage(c1, next);
    assert.equal(first.headers['x-tollgate-cache'], 'MISS');
    assert.equal(first.headers['x-upstream'], '1');
    assert.equal(c1.logFields.cache, 'MISS');
    await settle();

    const c2 = ctxFor(chat());
    const second = await stage(c2, next);
    assert.equal(calls.length, 1);
    assert.deepEqual(second.headers, { 'x-tollgate-cache': 'HIT' });
    assert.ok(bodyBytes(second).equals(answer.body as Buffer));
    assert.deepEqual(second.usage, answer.usage);
    assert.equal(c2.logFields.cache, 'HIT');
    assert.equal(c2.logFields.cache_saved_tokens, answer.usage!.total_tokens);
  });

  it('serialises an object body once and stores it', async () => {
    const { stage } = setup();
    const obj = JSON.parse((jsonAnswer(chat()).body as Buffer).toString()) as object;
    const { next } = fakeNext(() => ({
      kind: 'json',
      status: 200,
      headers: {},
      body: obj,
      usage: undefined,
    }));
    const first = await stage(ctxFor(chat()), next);
    assert.deepEqual(JSON.parse(bodyBytes(first).toString()), obj);
    await settle();
    const second = await stage(ctxFor(chat()), next);
    assert.equal(second.headers['x-tollgate-cache'], 'HIT');
    assert.ok(bodyBytes(second).equals(bodyBytes(first)));
  });

  it('assembles a streamed miss, passing every chunk through, and serves it as JSON on a hit', async () => {
    const { stage } = setup();
    const streamBody = chat({ stream: true });
    const { next, calls } = fakeNext((ctx) => streamAnswer(ctx.body, ctx.clientWantsUsage));

    const first = await stage(ctxFor(streamBody), next);
    assert.equal(first.headers['x-tollgate-cache'], 'MISS');
    const passed = await drain(first);
    const expected = await drain(streamAnswer(streamBody, false));
    assert.deepEqual(passed, expected);
    await settle();

    const c2 = ctxFor(chat());
    const hit = await stage(c2, next);
    assert.equal(calls.length, 1);
    assert.equal(hit.headers['x-tollgate-cache'], 'HIT');
    const completion = JSON.parse(bodyBytes(hit).toString());
    assert.equal(completion.object, 'chat.completion');
    assert.equal(completion.id, 'chatcmpl-stream');
    assert.equal(completion.system_fingerprint, 'fp_fake');
    assert.equal(completion.choices[0].message.content, 'Hello from the fake upstream Hello');
    assert.equal(completion.choices[0].finish_reason, 'stop');
    // The usage chunk was hidden from this client; the settled usage still made it into the entry.
    assert.equal(completion.usage.total_tokens, (hit as JsonOutcome).usage!.total_tokens);
    assert.ok(completion.usage.total_tokens > 0);
    assert.equal(c2.logFields.cache_saved_tokens, completion.usage.total_tokens);
  });

  for (const wantsUsage of [false, true]) {
    it(`replays a JSON entry to a stream request as SSE events (include_usage ${wantsUsage})`, async () => {
      const { stage } = setup();
      const answer = jsonAnswer(chat());
      const { next, calls } = fakeNext(() => answer);
      await stage(ctxFor(chat()), next);
      await settle();

      const body = chat({ stream: true, ...(wantsUsage ? { stream_options: { include_usage: true } } : {}) });
      const c = ctxFor(body);
      const out = await stage(c, next);
      assert.equal(calls.length, 1);
      assert.equal(out.headers['x-tollgate-cache'], 'HIT');
      assert.equal(c.logFields.cache, 'HIT');
      const events = (await drain(out)).map((d) => JSON.parse(d));
      // 1. role chunk, 2. content pieces, 3. finish chunk, 4. usage chunk only when asked; no [DONE].
      assert.deepEqual(events[0].choices[0].delta, { role: 'assistant', content: '', refusal: null });
      const text = events.map((e) => e.choices[0]?.delta?.content ?? '').join('');
      const stored = JSON.parse((answer.body as Buffer).toString());
      assert.equal(text, stored.choices[0].message.content);
      const finish = events.filter((e) => e.choices[0]?.finish_reason);
      assert.equal(finish.length, 1);
      assert.equal(finish[0].choices[0].finish_reason, 'stop');
      const usageChunks = events.filter((e) => e.usage);
      if (wantsUsage) {
        assert.equal(usageChunks.length, 1);
        assert.deepEqual(events.at(-1).choices, []);
        assert.deepEqual(events.at(-1).usage, stored.usage);
      } else {
        assert.equal(usageChunks.length, 0);
        assert.ok(events.every((e) => !('usage' in e)));
      }
      for (const e of events) {
        assert.equal(e.object, 'chat.completion.chunk');
        assert.equal(e.id, stored.id);
      }
      assert.deepEqual(await (out as StreamOutcome).usage, stored.usage);
    });
  }

  it('assembles streamed tool calls, and replays them as deltas that reassemble to the same arguments', async () => {
    const { stage } = setup();
    const body = chat({ tools: TOOLS, stream: true });
    const { next, calls } = fakeNext((ctx) => streamAnswer(ctx.body, false));
    const original = (await drain(await stage(ctxFor(body), next))).map((d) => JSON.parse(d));
    await settle();
    const originalArgs = original.map((e) => e.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? '');
    const originalId = original[0].choices[0].delta.tool_calls[0].id;

    const json = JSON.parse(bodyBytes(await stage(ctxFor(chat({ tools: TOOLS })), next)).toString());
    assert.deepEqual(json.choices[0].message.tool_calls, [
      { id: originalId, type: 'function', function: { name: 'lookup', arguments: originalArgs.join('') } },
    ]);
    assert.equal(json.choices[0].finish_reason, 'tool_calls');

    const replayed = (await drain(await stage(ctxFor(body), next))).map((d) => JSON.parse(d));
    assert.equal(calls.length, 1);
    const deltas = replayed.flatMap((e) => e.choices[0]?.delta?.tool_calls ?? []);
    assert.deepEqual(deltas[0], {
      index: 0,
      id: originalId,
      type: 'function',
      function: { name: 'lookup', arguments: '' },
    });
    assert.equal(deltas.map((d: any) => d.function.arguments).join(''), '{"q":"fake"}');
    assert.equal(replayed.at(-1).choices[0].finish_reason, 'tool_calls');
  });

  it('keeps teams apart, and shares between them only when the scope says so', async () => {
    const isolated = setup();
    const { next, calls } = fakeNext(() => jsonAnswer(chat()));
    await isolated.stage(ctxFor(chat(), { team: 'a' }), next);
    await settle();
    const other = await isolated.stage(ctxFor(chat(), { team: 'b' }), next);
    assert.equal(other.headers['x-tollgate-cache'], 'MISS');
    assert.equal(calls.length, 2);

    const shared = setup({ scopeFor: () => 'shared' });
    const s = fakeNext(() => jsonAnswer(chat()));
    await shared.stage(ctxFor(chat(), { team: 'a' }), s.next);
    await settle();
    const hit = await shared.stage(ctxFor(chat(), { team: 'b' }), s.next);
    assert.equal(hit.headers['x-tollgate-cache'], 'HIT');
    assert.equal(s.calls.length, 1);
  });

  it('caches embeddings (no temperature rule) and keeps them apart from chat', async () => {
    const { stage } = setup();
    const body = { model: 'text-embedding-3-small', input: 'hello' };
    const bytes = Buffer.from(
      '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}',
    );
    const { next, calls } = fakeNext(() => ({
      kind: 'json',
      status: 200,
      headers: {},
      body: bytes,
      usage: { prompt_tokens: 2, total_tokens: 2 },
    }));
    const first = await stage(ctxFor(body, { endpoint: 'embeddings' }), next);
    assert.equal(first.headers['x-tollgate-cache'], 'MISS');
    await settle();
    const c = ctxFor(body, { endpoint: 'embeddings' });
    const hit = await stage(c, next);
    assert.equal(hit.headers['x-tollgate-cache'], 'HIT');
    assert.ok(bodyBytes(hit).equals(bytes));
    assert.deepEqual(hit.usage, { prompt_tokens: 2, total_tokens: 2 });
    assert.equal(c.logFields.cache_saved_tokens, 2);
    assert.equal(calls.length, 1);
  });
});

describe('cache stage: what is never stored', () => {
  async function assertNotStored(
    answer: (ctx: PipelineContext) => Outcome | Promise<Outcome>,
    consume: (out: Outcome) => Promise<void> = async () => {},
    options: Partial<CacheOptions> = {},
    body: Json = chat(),
  ): Promise<void> {
    const { stage } = setup(options);
    const { next, calls } = fakeNext(answer);
    try {
      await consume(await stage(ctxFor(body), next));
    } catch {
      // The failure itself is what the caller set up.
    }
    await settle();
    // The same request without streaming: one key serves both forms.
    const ok = fakeNext(() => jsonAnswer(chat()));
    const again = await stage(ctxFor({ ...body, stream: undefined }), ok.next);
    assert.equal(again.headers['x-tollgate-cache'], 'MISS');
    assert.equal(ok.calls.length + calls.length, 2);
  }

  it('passes an error from next through untouched, and stores nothing', async () => {
    const { stage } = setup();
    const boom = new Error('upstream 500');
    const c = ctxFor(chat());
    await assert.rejects(
      stage(c, async () => {
        throw boom;
      }),
      (e) => e === boom,
    );
    assert.equal(c.logFields.cache, 'MISS');
    await assertNotStored(() => {
      throw boom;
    });
  });

  it('does not store finish_reason length or content_filter', async () => {
    // max_tokens below the fake's answer length makes it stop with `length`.
    await assertNotStored((ctx) => jsonAnswer(ctx.body), undefined, {}, chat({ max_tokens: 2 }));
    const filtered = (s: string): string =>
      s.replace('"finish_reason":"stop"', '"finish_reason":"content_filter"');
    await assertNotStored(() => jsonAnswer(chat(), filtered));
  });

  it('does not store a non-200 JSON answer', async () => {
    await assertNotStored(() => ({
      kind: 'json',
      status: 202,
      headers: {},
      body: jsonAnswer(chat()).body,
      usage: undefined,
    }));
  });

  it('does not store a stream whose iterator throws mid-way, and the error reaches the consumer', async () => {
    const body = chat({ stream: true });
    await assertNotStored(
      () => streamAnswer(body, false, 3),
      async (out) => {
        await assert.rejects(drain(out), /upstream cut the stream/);
      },
      {},
      body,
    );
  });

  it('does not store a stream the consumer abandons, and closes the source', async () => {
    const body = chat({ stream: true });
    let source: StreamOutcome | undefined;
    let sourceFinished = false;
    await assertNotStored(
      () => {
        source = streamAnswer(body, false);
        void source.usage.then(() => (sourceFinished = true));
        return source;
      },
      async (out) => {
        const it = (out as StreamOutcome).chunks[Symbol.asyncIterator]();
        await it.next();
        await it.next();
        await it.return!();
      },
      {},
      body,
    );
    assert.ok(sourceFinished, "the source's finally ran (upstream released)");
  });

  it('does not store an entry over maxEntryBytes (JSON or assembled stream)', async () => {
    await assertNotStored(() => jsonAnswer(chat()), undefined, { maxEntryBytes: 100 });
    const body = chat({ stream: true });
    await assertNotStored(
      () => streamAnswer(body, false),
      async (out) => void (await drain(out)),
      { maxEntryBytes: 100 },
      body,
    );
  });
});

describe('cache stage: policy', () => {
  it('bypasses sampled requests (temperature 0.7, or none = default 1) unless cacheSampled', async () => {
    for (const body of [chat({ temperature: 0.7 }), chat({ temperature: undefined })]) {
      const { stage } = setup();
      const { next, calls } = fakeNext(() => jsonAnswer(chat()));
      const c = ctxFor(body);
      const out = await stage(c, next);
      assert.equal(out.headers['x-tollgate-cache'], 'BYPASS');
      assert.equal(c.logFields.cache, 'BYPASS');
      await settle();
      assert.equal((await stage(ctxFor(body), next)).headers['x-tollgate-cache'], 'BYPASS');
      assert.equal(calls.length, 2);

      const sampled = setup({ cacheSampled: true });
      const s = fakeNext(() => jsonAnswer(chat()));
      await sampled.stage(ctxFor(body), s.next);
      await settle();
      assert.equal((await sampled.stage(ctxFor(body), s.next)).headers['x-tollgate-cache'], 'HIT');
      assert.equal(s.calls.length, 1);
    }
  });

  it('bypasses when ttlSecondsFor turns caching off for the team and model', async () => {
    const { stage } = setup({
      ttlSecondsFor: (team, model) => (team === 'search' && model === 'gpt-4o' ? 60 : undefined),
    });
    const { next, calls } = fakeNext(() => jsonAnswer(chat()));
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'BYPASS');
    await settle();
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'BYPASS');
    assert.equal(calls.length, 2);
  });

  it('Cache-Control: no-cache skips the read but still writes', async () => {
    const { stage } = setup();
    const { next, calls } = fakeNext(() => jsonAnswer(chat()));
    await stage(ctxFor(chat()), next);
    await settle();
    const c = ctxFor(chat(), { headers: { 'cache-control': 'no-cache' } });
    const fresh = await stage(c, next);
    assert.equal(calls.length, 2);
    assert.equal(fresh.headers['x-tollgate-cache'], 'BYPASS');

    const empty = setup();
    const e = fakeNext(() => jsonAnswer(chat()));
    await empty.stage(ctxFor(chat(), { headers: { 'cache-control': 'max-age=0, No-Cache' } }), e.next);
    await settle();
    assert.equal((await empty.stage(ctxFor(chat()), e.next)).headers['x-tollgate-cache'], 'HIT');
    assert.equal(e.calls.length, 1);
  });

  it('Cache-Control: no-store neither reads nor writes', async () => {
    const { stage } = setup();
    const { next, calls } = fakeNext(() => jsonAnswer(chat()));
    await stage(ctxFor(chat()), next);
    await settle();
    const noStore = { headers: { 'cache-control': 'no-store' } };
    assert.equal((await stage(ctxFor(chat(), noStore), next)).headers['x-tollgate-cache'], 'BYPASS');
    assert.equal(calls.length, 2);

    const empty = setup();
    const e = fakeNext(() => jsonAnswer(chat()));
    await empty.stage(ctxFor(chat(), noStore), e.next);
    await settle();
    assert.equal((await empty.stage(ctxFor(chat()), e.next)).headers['x-tollgate-cache'], 'MISS');
  });

  it('x-tollgate-cache-ttl sets a per-request TTL, clamped to maxTtlSeconds, and 0 stores nothing', async () => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const { stage } = setup({ maxTtlSeconds: 30 }, store);
    const { next, calls } = fakeNext(() => jsonAnswer(chat()));
    // 1. a 5 s entry: still there after 4 s, gone after 6 s.
    await stage(ctxFor(chat(), { headers: { 'x-tollgate-cache-ttl': '5' } }), next);
    await settle();
    now += 4_000;
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'HIT');
    now += 2_000;
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'MISS');
    assert.equal(calls.length, 2);
    await settle();
    // 2. that miss stored with the configured 60 s; asking for 3600 s is clamped to 30 s.
    now += 61_000;
    await stage(ctxFor(chat(), { headers: { 'x-tollgate-cache-ttl': '3600' } }), next);
    await settle();
    now += 29_000;
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'HIT');
    now += 2_000;
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'MISS');
    assert.equal(calls.length, 4);
    // 3. ttl 0: served (reads still allowed) but not stored.
    const zero = setup({}, new MemoryStore());
    const z = fakeNext(() => jsonAnswer(chat()));
    const out = await zero.stage(ctxFor(chat(), { headers: { 'x-tollgate-cache-ttl': '0' } }), z.next);
    assert.equal(out.headers['x-tollgate-cache'], 'MISS');
    await settle();
    assert.equal((await zero.stage(ctxFor(chat()), z.next)).headers['x-tollgate-cache'], 'MISS');
    assert.equal(z.calls.length, 2);
  });

  it('ignores a TTL header that is not whole seconds', async () => {
    let now = 0;
    const { stage } = setup({}, new MemoryStore({ now: () => now }));
    const { next } = fakeNext(() => jsonAnswer(chat()));
    await stage(ctxFor(chat(), { headers: { 'x-tollgate-cache-ttl': '-5' } }), next);
    await settle();
    now += 59_000;
    assert.equal((await stage(ctxFor(chat()), next)).headers['x-tollgate-cache'], 'HIT');
  });

  it('serves the request as a BYPASS when the store is unavailable', async () => {
    const down = {
      kind: 'redis',
      cacheGet: async () => {
        throw new StoreUnavailableError('redis is away');
      },
      cacheSet: async () => {
        throw new StoreUnavailableError('redis is away');
      },
    } as unknown as Store;
    const { stage, sink } = setup({}, down);
    const answer = jsonAnswer(chat());
    const { next, calls } = fakeNext(() => answer);
    const c = ctxFor(chat());
    const out = await stage(c, next);
    assert.equal(out.headers['x-tollgate-cache'], 'BYPASS');
    assert.equal(c.logFields.cache, 'BYPASS');
    assert.ok(bodyBytes(out).equals(answer.body as Buffer));
    assert.equal(calls.length, 1);
    assert.ok(
      sink.lines.some((l) => l.level === 'debug') && sink.lines.every((l) => l.level === 'debug'),
      'an unavailable store is logged below warn',
    );
  });

  it('logs a failed write at warn, without failing the request', async () => {
    const flaky = new MemoryStore();
    flaky.cacheSet = async () => {
      throw new Error('disk on fire');
    };
    const { stage, sink } = setup({}, flaky);
    const { next } = fakeNext(() => jsonAnswer(chat()));
    const out = await stage(ctxFor(chat()), next);
    assert.equal(out.headers['x-tollgate-cache'], 'MISS');
    await sink.waitFor((l) => l.level === 'warn' && l.msg === 'cache write failed', 1000);
  });
});

describe('cache stage: single flight', () => {
  it('calls next once for 5 identical concurrent non-stream requests; all get the body', async () => {
    const { stage } = setup();
    const answer = jsonAnswer(chat());
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { next, calls } = fakeNext(async () => {
      await gate;
      return answer;
    });
    const ctxs = Array.from({ length: 5 }, () => ctxFor(chat()));
    const pending = ctxs.map((c) => stage(c, next));
    await settle();
    release();
    const outs = await Promise.all(pending);
    assert.equal(calls.length, 1);
    for (const out of outs) assert.ok(bodyBytes(out).equals(answer.body as Buffer));
    assert.deepEqual(
      ctxs.map((c) => c.logFields.cache),
      ['MISS', 'HIT', 'HIT', 'HIT', 'HIT'],
    );
  });

  it('lets each follower call next itself when the leader fails (errors are not shared)', async () => {
    const { stage } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const boom = new Error('leader failed');
    let n = 0;
    const { next, calls } = fakeNext(async (ctx) => {
      if (++n === 1) {
        await gate;
        throw boom;
      }
      return jsonAnswer(ctx.body);
    });
    const pending = Array.from({ length: 4 }, () => stage(ctxFor(chat()), next));
    await settle();
    release();
    const results = await Promise.allSettled(pending);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'fulfilled', 'fulfilled', 'fulfilled'],
    );
    assert.equal(calls.length, 4);
  });

  it('shares nothing when the leader produced nothing cacheable', async () => {
    const { stage } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { next, calls } = fakeNext(async (ctx) => {
      await gate;
      return jsonAnswer(ctx.body, (s) => s.replace('"finish_reason":"stop"', '"finish_reason":"length"'));
    });
    const pending = Array.from({ length: 3 }, () => stage(ctxFor(chat()), next));
    await settle();
    release();
    await Promise.all(pending);
    assert.equal(calls.length, 3);
  });

  it('stops waiting when the follower client goes away', async () => {
    const { stage } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { next, calls } = fakeNext(async () => {
      await gate;
      return jsonAnswer(chat());
    });
    const leader = stage(ctxFor(chat()), next);
    await settle();
    const abort = new Canceller();
    const follower = stage(ctxFor(chat(), { signal: abort }), next);
    await settle();
    abort.abort(new ClientAbortedError());
    await assert.rejects(follower, (e) => e instanceof ClientAbortedError);
    release();
    assert.equal((await leader).headers['x-tollgate-cache'], 'MISS');
    assert.equal(calls.length, 1);
  });

  it('does not make stream requests wait on a flight', async () => {
    const { stage } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { next, calls } = fakeNext(async (ctx) => {
      if (!ctx.stream) await gate;
      return ctx.stream ? streamAnswer(ctx.body, false) : jsonAnswer(chat());
    });
    const leader = stage(ctxFor(chat()), next);
    await settle();
    const streamed = await stage(ctxFor(chat({ stream: true })), next);
    assert.equal(streamed.headers['x-tollgate-cache'], 'MISS');
    await drain(streamed);
    release();
    await leader;
    assert.equal(calls.length, 2);
  });
});
