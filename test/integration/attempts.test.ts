// Retries, fallbacks and cooldowns through real HTTP against two fake upstreams ("a" and "b"):
// what is retried, how long the gateway waits, where it falls back to, and when it stops.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { readSse } from '../helpers/sse.js';
import { makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

describe('attempts: retries, fallbacks, cooldowns', () => {
  let a: FakeUpstream;
  let b: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('ops');

  const post = async (model: string, extra: Record<string, unknown> = {}) => {
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });
    return res;
  };

  before(async () => {
    a = await startFakeUpstream();
    b = await startFakeUpstream();
    gw = await startGateway({
      timeouts: { connectMs: 500, firstByteMs: 2000, idleMs: 2000, totalMs: 5000 },
      providers: {
        a: { type: 'openai', baseUrl: a.url },
        b: { type: 'openai', baseUrl: b.url },
      },
      models: {
        // One model per test: cooldowns are per deployment, and tests must not inherit them.
        'only-a-1': { deployments: [{ provider: 'a' }] },
        'only-a-2': { deployments: [{ provider: 'a' }] },
        'only-a-3': { deployments: [{ provider: 'a' }] },
        'only-a-4': { deployments: [{ provider: 'a' }] },
        'both-1': { deployments: [{ provider: 'a' }, { provider: 'b' }] },
        'both-2': { deployments: [{ provider: 'a' }, { provider: 'b' }] },
        'both-3': { deployments: [{ provider: 'a' }, { provider: 'b' }] },
        small: {
          deployments: [
            { provider: 'a', contextWindow: 50 },
            { provider: 'b', contextWindow: 100_000 },
          ],
        },
        tiny: { deployments: [{ provider: 'a', contextWindow: 20 }] },
        // The body's bytes put these near their windows: the guard counts exactly.
        near: {
          deployments: [
            { provider: 'a', model: 'gpt-4o', contextWindow: 2_000 },
            { provider: 'b', model: 'gpt-4o', contextWindow: 4_000 },
          ],
        },
        quota: { deployments: [{ provider: 'a', rpm: 1 }] },
        ctx: { deployments: [{ provider: 'a' }], contextFallbacks: ['big-ctx'] },
        'big-ctx': { deployments: [{ provider: 'b', contextWindow: 1_000_000 }] },
      },
      routing: {
        retry: { maxAttempts: 4, baseDelayMs: 10, maxDelayMs: 50, maxRetryAfterMs: 1000 },
        cooldown: { failures: 2, windowMs: 10_000, cooldownMs: 400 },
      },
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

  it('retries a 500 and succeeds, saying how many attempts it took', async () => {
    a.script({ kind: 'error', status: 500 });
    const res = await post('only-a-1');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-attempts'), '2');
    assert.equal(a.requests.length, 2);
  });

  it("waits for the upstream's Retry-After before trying again", async () => {
    a.script({ kind: 'error', status: 429, headers: { 'retry-after-ms': '300' } });
    const t0 = Date.now();
    const res = await post('only-a-2');
    assert.equal(res.status, 200);
    const gap = a.requests[1]!.at - a.requests[0]!.at;
    assert.ok(gap >= 290, `retried after ${gap} ms`);
    assert.ok(Date.now() - t0 < 1500);
  });

  it('never retries a 400: the upstream sees it once', async () => {
    a.script({ kind: 'error', status: 400, message: 'bad field' });
    const res = await post('both-1');
    assert.equal(res.status, 400);
    assert.equal(a.requests.length, 1);
    assert.equal(b.requests.length, 0);
  });

  it('falls back when a deployment keeps failing, cools it down, then probes it again', async () => {
    a.script({ kind: 'error', status: 503 }, { kind: 'error', status: 503 });
    const res = await post('both-2');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-model'), 'b/both-2');
    assert.equal(res.headers.get('x-tollgate-attempts'), '3');
    assert.equal(a.requests.length, 2);
    assert.equal(b.requests.length, 1);
    // Two failures within the window: a cools down (400 ms here) and is skipped...
    const during = await post('both-2');
    assert.equal(during.headers.get('x-tollgate-model'), 'b/both-2');
    assert.equal(a.requests.length, 2);
    // ...then the next request after the cooldown probes it again.
    await new Promise((r) => setTimeout(r, 450));
    const probe = await post('both-2');
    assert.equal(probe.headers.get('x-tollgate-model'), 'a/both-2');
  });

  it('moves on at once past a long Retry-After and lets that deployment rest for it', async () => {
    a.script({ kind: 'error', status: 429, headers: { 'retry-after': '30' } });
    const t0 = Date.now();
    const first = await post('both-3');
    assert.equal(first.headers.get('x-tollgate-model'), 'b/both-3');
    assert.ok(Date.now() - t0 < 500, 'did not wait 30 s');
    // Cooling down: the next request goes straight to b.
    const second = await post('both-3');
    assert.equal(second.headers.get('x-tollgate-model'), 'b/both-3');
    assert.equal(a.requests.length, 1);
  });

  it('retries a stream that fails before its first byte, but not one that already started', async () => {
    a.script({ kind: 'reset' });
    const ok = await post('only-a-3', { stream: true });
    const events = await readSse(ok.body!);
    assert.equal(events.at(-1)?.data, '[DONE]');
    assert.equal(a.requests.length, 2);
    a.reset();
    a.script({ kind: 'stream', chunks: 5, cutAfter: 2 });
    const cut = await post('only-a-3', { stream: true });
    const cutEvents = await readSse(cut.body!);
    assert.ok(!cutEvents.some((e) => e.data === '[DONE]'));
    assert.ok(cutEvents.at(-1)!.data.includes('"error"'));
    assert.equal(a.requests.length, 1, 'no retry after the first byte');
  });

  it('skips a deployment whose context window is too small, and answers 400 when none fits', async () => {
    const res = await post('small', { max_tokens: 60 });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-model'), 'b/small');
    assert.equal(a.requests.length, 0);
    const none = await post('tiny', { max_tokens: 60 });
    assert.equal(none.status, 400);
    const body = (await none.json()) as { error: { code: string; param: string } };
    assert.equal(body.error.code, 'context_length_exceeded');
    assert.equal(a.requests.length, 0, 'no money spent');
  });

  it('counts a prompt near a window exactly, and skips the deployment it does not fit before any call', async () => {
    const ask = (words: number) =>
      fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${team.key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'near',
          max_tokens: 100,
          messages: [{ role: 'user', content: 'hello world '.repeat(words) }],
        }),
      });
    // 1,000 tokens of prompt: the bytes say "maybe not" for a 2,000 window; counted, it fits.
    const fits = await ask(500);
    assert.equal(fits.status, 200);
    assert.equal(fits.headers.get('x-tollgate-model'), 'a/gpt-4o');
    const fitsLine = await gw.logs.waitFor(
      (l) => l.msg === 'request' && l.reqId === fits.headers.get('x-request-id'),
    );
    assert.ok((fitsLine.counted_prompt_tokens as number) >= 1_000);
    // 2,000 tokens: counted, it does not fit a's window; b (4,000) takes it, a never sees it.
    a.reset();
    const bigger = await ask(1_000);
    assert.equal(bigger.status, 200);
    assert.equal(bigger.headers.get('x-tollgate-model'), 'b/gpt-4o');
    assert.equal(a.requests.length, 0);
  });

  it('moves to a context-window fallback when the upstream says the prompt is too long, and only then', async () => {
    const normal = await post('ctx');
    assert.equal(normal.headers.get('x-tollgate-model'), 'a/ctx');
    assert.equal(b.requests.length, 0, 'a context fallback is not a general fallback');
    a.script({ kind: 'error', status: 400, code: 'context_length_exceeded', param: 'messages' });
    const res = await post('ctx');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('x-tollgate-model'), 'b/big-ctx');
    assert.equal(a.requests.length, 2);
  });

  it('answers 429 with the soonest recovery as Retry-After when every candidate is over its quota', async () => {
    assert.equal((await post('quota')).status, 200);
    const res = await post('quota');
    assert.equal(res.status, 429);
    const ms = Number(res.headers.get('retry-after-ms'));
    assert.ok(ms > 50_000 && ms <= 60_000, String(ms));
    assert.equal(res.headers.get('retry-after'), String(Math.ceil(ms / 1000)));
    assert.equal(a.requests.length, 1);
  });

  it('logs a line per failed attempt (deployment, status, error class); the request line carries the one that answered', async () => {
    a.script({ kind: 'error', status: 502 });
    await post('only-a-4');
    const lines = gw.logs.lines.filter((l) => l.msg === 'attempt failed' && l.deployment === 'a/only-a-4');
    assert.equal(lines.length, 1);
    assert.equal(lines[0]!.status, 502);
    assert.equal(typeof lines[0]!.errorClass, 'string');
    // The attempt that answered is described by the request's own line.
    const request = await gw.logs.waitFor((l) => l.msg === 'request' && l.model === 'only-a-4');
    assert.equal(request.deployment, 'a/only-a-4');
    assert.equal(request.attempts, 2);
    assert.equal(typeof request.attempt_ms, 'number');
  });
});
