// Streaming through real sockets: chunks are relayed as they arrive, failures mid-stream end
// with an error event and no [DONE], and a departing client aborts the upstream at once.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { readSse } from '../helpers/sse.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

describe('streaming chat completions', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  const team = makeTeam('search');

  const post = (body: Record<string, unknown>, signal?: AbortSignal, requestId?: string): Promise<Response> =>
    fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${team.key}`,
        'content-type': 'application/json',
        ...(requestId ? { 'x-request-id': requestId } : {}),
      },
      body: JSON.stringify({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        ...body,
      }),
      ...(signal ? { signal } : {}),
    });

  before(async () => {
    fake = await startFakeUpstream();
    gw = await startGateway(
      baseConfig(fake.url, [team], {
        timeouts: { connectMs: 1000, firstByteMs: 2000, idleMs: 300, totalMs: 10000 },
      }),
    );
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  it('delivers the first chunk while the upstream is still generating', async () => {
    // 1. The upstream sends 6 chunks 150 ms apart: about 1 s in all.
    const started = Date.now();
    const res = await post({ x_fake: { chunks: 6, chunkDelayMs: 150 } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    let firstAt = 0;
    const events = await readSse(res.body!, (e) => {
      if (!firstAt) firstAt = e.at;
    });
    const endedAt = Date.now();
    // 2. The first chunk reached us long before the stream ended: nothing was buffered.
    assert.ok(firstAt - started < 400, `first chunk after ${firstAt - started} ms`);
    assert.ok(endedAt - firstAt >= 600, `stream spread over ${endedAt - firstAt} ms`);
    // 3. Events arrive spread out, not in one burst.
    const contentEvents = events.filter((e) => e.data.includes('"content"'));
    assert.ok(contentEvents.length >= 6);
    assert.equal(events.at(-1)?.data, '[DONE]');
  });

  it('ends a stream cut by the upstream with an error event and no [DONE]', async () => {
    fake.script({ kind: 'stream', chunks: 10, cutAfter: 3 });
    const res = await post({});
    const events = await readSse(res.body!);
    assert.notEqual(events.at(-1)?.data, '[DONE]');
    const last = JSON.parse(events.at(-1)!.data) as { error: { type: string; code: string } };
    assert.equal(last.error.type, 'server_error');
    assert.equal(last.error.code, 'upstream_unavailable');
    assert.ok(!events.some((e) => e.data === '[DONE]'));
  });

  it('ends a stream that goes idle past the idle timeout with a timeout error event', async () => {
    fake.script({ kind: 'stream', chunks: 10, stallAfter: 2 });
    const res = await post({});
    const events = await readSse(res.body!);
    const last = JSON.parse(events.at(-1)!.data) as { error: { code: string } };
    assert.equal(last.error.code, 'upstream_timeout');
    assert.ok(!events.some((e) => e.data === '[DONE]'));
  });

  it('keeps a slow but steady stream (chunks within the idle timeout) going to the end', async () => {
    const res = await post({ x_fake: { chunks: 4, chunkDelayMs: 200 } });
    const events = await readSse(res.body!);
    assert.equal(events.at(-1)?.data, '[DONE]');
  });

  it('treats a stream that ends without [DONE] as a failure, never a silent success', async () => {
    fake.script({
      kind: 'stream',
      events: [
        '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}',
      ],
    });
    const res = await post({});
    const events = await readSse(res.body!);
    assert.equal(events.length, 2);
    assert.equal(
      (JSON.parse(events[1]!.data) as { error: { code: string } }).error.code,
      'upstream_bad_response',
    );
  });

  it('relays an error event sent by the upstream mid-stream and stops', async () => {
    fake.script({
      kind: 'stream',
      events: [
        '{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}',
        '{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}',
        '[DONE]',
      ],
    });
    const res = await post({});
    const events = await readSse(res.body!);
    assert.equal(events.length, 2);
    assert.equal((JSON.parse(events[1]!.data) as { error: { type: string } }).error.type, 'server_error');
  });

  it('aborts the upstream request within 100 ms of the client disconnecting', async () => {
    // 1. A long stream: 50 chunks, 100 ms apart.
    const ac = new AbortController();
    const res = await post({ x_fake: { chunks: 50, chunkDelayMs: 100 } }, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    // 2. The client goes away mid-stream.
    const abortPromise = fake.waitForAbort(2000);
    const t0 = Date.now();
    ac.abort();
    // 3. The fake upstream sees its socket close soon after.
    const seenAt = await abortPromise;
    assert.ok(seenAt - t0 < 100, `upstream closed ${seenAt - t0} ms after the client left`);
    // 4. The request is still logged, marked aborted, with what it knew.
    const line = await gw.logs.waitFor((l) => l.msg === 'request' && l.aborted === true);
    assert.equal(line.team, 'search');
  });

  it('aborts the upstream when the client leaves before the upstream answered', async () => {
    fake.script({ kind: 'stall' });
    const ac = new AbortController();
    const pending = post({ stream: false }, ac.signal, 'left-early').catch(() => undefined);
    while (fake.inFlight === 0) await new Promise((r) => setTimeout(r, 5));
    const abortPromise = fake.waitForAbort(2000);
    const t0 = Date.now();
    ac.abort();
    const seenAt = await abortPromise;
    await pending;
    assert.ok(seenAt - t0 < 100, `upstream closed ${seenAt - t0} ms after the client left`);
    // The departure is logged quietly as a client abort, not as a gateway error.
    const line = await gw.logs.waitFor((l) => l.msg === 'request' && l.reqId === 'left-early');
    assert.equal(line.status, 499);
    assert.equal(line.error, 'client_aborted');
    assert.ok(!gw.logs.lines.some((l) => l.msg === 'internal error'));
  });

  it('respects backpressure: a client that stops reading stops the upstream, and nothing is lost', async () => {
    // 1. A stream far larger than the socket buffers of both hops (100,000 chunks, ~25 MB).
    const res = await post({ x_fake: { chunks: 100_000, chunkDelayMs: 0 } });
    // 2. The client reads nothing for a while: the upstream must be held back, not drained
    //    into the gateway's memory.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(fake.inFlight, 1, 'the upstream finished although the client read nothing');
    // 3. Once the client reads, every chunk arrives, in order, then [DONE].
    const events = await readSse(res.body!);
    const content = events.filter((e) => e.data.includes('"content":"') && !e.data.includes('"role"'));
    assert.equal(content.length, 100_000);
    assert.equal(events.at(-1)?.data, '[DONE]');
  });

  it('logs usage for a stream even when the client did not ask for it', async () => {
    const res = await post({ x_fake: { chunks: 3 } });
    const rid = res.headers.get('x-request-id');
    await readSse(res.body!);
    const line = await gw.logs.waitFor((l) => l.msg === 'request' && l.reqId === rid);
    assert.equal(line.completion_tokens, 3);
    assert.equal(typeof line.ttft_ms, 'number');
  });
});
