// Upstream faults the other suites do not cover, through real HTTP against two fake upstreams:
// an upstream that never answers (the first-byte timeout fires and the next candidate answers),
// invalid SSE lines in a stream, and responses larger than the provider's maxResponseBytes.
// (Errors, 429 with Retry-After, resets, cut and stalled streams, trickles and malformed JSON
// are in attempts, streaming and http-edges.)
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { readSse } from '../helpers/sse.js';
import { makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const LIMIT = 4096;

describe('upstream faults', () => {
  let a: FakeUpstream;
  let b: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('faults');

  const post = (model: string, extra: Record<string, unknown> = {}) =>
    fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], temperature: 0, ...extra }),
    });

  before(async () => {
    a = await startFakeUpstream();
    b = await startFakeUpstream();
    gw = await startGateway({
      timeouts: { connectMs: 500, firstByteMs: 400, idleMs: 2000, totalMs: 8000 },
      providers: {
        a: { type: 'openai', baseUrl: a.url, maxResponseBytes: LIMIT },
        b: { type: 'openai', baseUrl: b.url },
      },
      models: {
        'stall-then-b': { deployments: [{ provider: 'a' }, { provider: 'b' }] },
        'only-a': { deployments: [{ provider: 'a' }] },
        'only-a-2': { deployments: [{ provider: 'a' }] },
        // One model per test below: a deployment that failed cools down, and tests must not inherit it.
        'big-json': { deployments: [{ provider: 'a' }] },
        'big-stream': { deployments: [{ provider: 'a' }] },
        trickle: { deployments: [{ provider: 'a' }] },
      },
      cache: { ttlSeconds: 60 },
      routing: { retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 20, maxRetryAfterMs: 100 } },
      teams: [team.entry],
    });
  });
  after(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });
  beforeEach(() => {
    a.reset();
    b.reset();
  });

  it('times out an upstream that never sends headers and answers from the next candidate', async () => {
    a.script({ kind: 'stall' }, { kind: 'stall' }, { kind: 'stall' });
    const started = Date.now();
    const res = await post('stall-then-b');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-model'), 'b/stall-then-b');
    assert.ok(Date.now() - started < 3000, 'the first-byte timeout (400 ms) fired');
    const failed = await gw.logs.waitFor((l) => l.msg === 'attempt failed');
    assert.equal(failed?.errorClass, 'upstream_timeout');
  });

  it('answers 504 when the only deployment never sends headers, and the stream case too', async () => {
    a.script({ kind: 'stall' }, { kind: 'stall' });
    const res = await post('only-a');
    assert.equal(res.status, 504);
    const body = (await res.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'upstream_timeout');
  });

  it('keeps a trickle of one chunk a second going: the idle timeout (2 s) is per gap, not per stream', async () => {
    a.script({ kind: 'stream', chunks: 3, chunkDelayMs: 1000 });
    const started = Date.now();
    const res = await post('trickle', { stream: true });
    const events = await readSse(res.body!);
    assert.equal(events.at(-1)?.data, '[DONE]');
    assert.ok(Date.now() - started > 2500, 'the whole stream outlasted the idle timeout');
  });

  it('ignores invalid SSE lines, relays an unreadable event without failing, and caches nothing of it', async () => {
    const chunk = (content: string) =>
      JSON.stringify({
        id: 'c1',
        object: 'chat.completion.chunk',
        created: 1,
        model: 'gpt-4o-mini',
        choices: [{ index: 0, delta: { content }, finish_reason: null }],
      });
    const events = [
      chunk('Hel'),
      // No colon: a field name with an empty value, which the SSE rules ignore.
      'this line is not a field',
      { event: 'noise', data: ': still not json' },
      '{"choices": [ broken json',
      chunk('lo'),
      '[DONE]',
    ];
    const script = () => ({ kind: 'stream' as const, events });
    a.script(script(), script());
    const ask = () => post('only-a-2', { stream: true });
    const first = await ask();
    assert.equal(first.status, 200);
    const got = (await readSse(first.body!)).map((e) => e.data);
    assert.equal(got.at(-1), '[DONE]', 'the stream ends normally');
    assert.ok(got.includes(chunk('Hel')) && got.includes(chunk('lo')), 'the good chunks arrive intact');
    // An unreadable stream is never stored: the same request goes upstream again.
    const second = await ask();
    assert.equal(second.headers.get('x-tollgate-cache'), 'MISS');
    await readSse(second.body!);
    assert.equal(a.requests.length, 2);
  });

  it("fails a JSON answer larger than the provider's maxResponseBytes with 502, and never caches it", async () => {
    const big = 'x'.repeat(LIMIT * 2);
    a.script(
      { kind: 'ok', body: completion(big) },
      { kind: 'ok', body: completion(big) },
      { kind: 'ok', body: completion('small') },
    );
    const res = await post('big-json');
    assert.equal(res.status, 502);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'upstream_bad_response');
    assert.match(body.error.message, /maxResponseBytes/);
    // A small answer still passes.
    a.reset();
    a.script({ kind: 'ok', body: completion('small') });
    const ok = await post('big-json', { messages: [{ role: 'user', content: 'another' }] });
    assert.equal(ok.status, 200, await ok.clone().text());
  });

  it('ends a stream that grows past maxResponseBytes with an error event and no [DONE]', async () => {
    // Chunks apart, so the first ones are relayed before the limit is reached (a stream over it
    // before its first chunk is an ordinary failed attempt, retried).
    a.script({ kind: 'stream', chunks: 200, chunkDelayMs: 2 });
    const res = await post('big-stream', { stream: true, messages: [{ role: 'user', content: 'long' }] });
    assert.equal(res.status, 200);
    const events = (await readSse(res.body!)).map((e) => e.data);
    assert.notEqual(events.at(-1), '[DONE]');
    const last = JSON.parse(events.at(-1)!) as { error?: { code: string } };
    assert.equal(last.error?.code, 'upstream_bad_response');
  });
});

function completion(content: string): unknown {
  return {
    id: 'chatcmpl-big',
    object: 'chat.completion',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
  };
}
