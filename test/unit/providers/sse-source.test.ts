import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { setImmediate as tick } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { errors, UpstreamError } from '../../../src/errors.js';
import type { Chunk } from '../../../src/pipeline/types.js';
import { SseSource, type SseSourceHooks } from '../../../src/providers/sse/source.js';
import type { UpstreamResponse } from '../../../src/providers/upstream-client.js';

/** An upstream response whose body the test writes, with the calls the source makes on it. */
function upstream(): { res: UpstreamResponse; body: PassThrough; doneCalls: () => number } {
  const body = new PassThrough();
  let done = 0;
  const res = {
    statusCode: 200,
    headers: {},
    body,
    done: () => void done++,
    mapError: (err: unknown) =>
      err instanceof UpstreamError ? err : errors.upstreamBadResponse('fake', 'mapped'),
  } as unknown as UpstreamResponse;
  return { res, body, doneCalls: () => done };
}

/** OpenAI-like hooks: [DONE] ends the stream, an `error` event throws, the usage asks (settles) counted. */
function hooks(): SseSourceHooks & { settled: number } {
  const h = {
    settled: 0,
    unfinishedMessage: 'the stream ended before [DONE]',
    usage: () => void h.settled++,
    event(ev: { event: string | undefined; data: string }, out: Chunk[]): boolean {
      if (ev.data === '[DONE]') return true;
      if (ev.event === 'error') throw errors.upstreamBadResponse('fake', `upstream said: ${ev.data}`);
      out.push({ data: ev.data });
      return false;
    },
  };
  return h;
}

const ev = (data: string): string => `data: ${data}\n\n`;

async function drain(source: AsyncIterable<Chunk>): Promise<{ data: string[]; error?: Error }> {
  const data: string[] = [];
  try {
    for await (const c of source) data.push(c.data);
  } catch (err) {
    return { data, error: err as Error };
  }
  return { data };
}

describe('SseSource', () => {
  it('hands out events as they arrive, several per read or one split across reads', async () => {
    const { res, body, doneCalls } = upstream();
    const h = hooks();
    const source = new SseSource(res, 'fake', 1 << 20, h);
    const got = drain(source);
    body.write(ev('a') + ev('b'));
    await tick();
    body.write('data: c');
    await tick();
    body.write('\n\n' + ev('[DONE]'));
    body.end();
    assert.deepEqual(await got, { data: ['a', 'b', 'c'] });
    assert.equal(h.settled, 1);
    assert.equal(doneCalls(), 1);
  });

  it('reads nothing before the first next()', async () => {
    const { res, body } = upstream();
    const source = new SseSource(res, 'fake', 1 << 20, hooks());
    body.write(ev('a'));
    await tick();
    assert.equal(body.listenerCount('data'), 0);
    assert.deepEqual(await source.next(), { done: false, value: { data: 'a' } });
  });

  it('fails a body that ends before the last event, after the chunks it did send', async () => {
    const { res, body } = upstream();
    const h = hooks();
    const got = drain(new SseSource(res, 'fake', 1 << 20, h));
    body.end(ev('a'));
    const r = await got;
    assert.deepEqual(r.data, ['a']);
    assert.ok(r.error instanceof UpstreamError);
    assert.match(r.error.message, /before \[DONE\]/);
    assert.equal(h.settled, 1);
  });

  it('fails with the mapped error of an error event, after the chunks queued before it', async () => {
    const { res, body } = upstream();
    const got = drain(new SseSource(res, 'fake', 1 << 20, hooks()));
    body.write(ev('a') + 'event: error\ndata: {"message":"overloaded"}\n\n' + ev('never'));
    const r = await got;
    assert.deepEqual(r.data, ['a']);
    assert.match(r.error!.message, /overloaded/);
    assert.ok(body.destroyed, 'the body of a failed stream is dropped');
  });

  it('maps a body error, and ignores one that comes after the last event', async () => {
    const failing = upstream();
    const got = drain(new SseSource(failing.res, 'fake', 1 << 20, hooks()));
    failing.body.write(ev('a'));
    await tick();
    failing.body.destroy(new Error('socket hang up'));
    const r = await got;
    assert.deepEqual(r.data, ['a']);
    assert.match(r.error!.message, /mapped/);

    const late = upstream();
    const h = hooks();
    const done = drain(new SseSource(late.res, 'fake', 1 << 20, h));
    late.body.write(ev('a') + ev('[DONE]'));
    await tick();
    late.body.destroy(new Error('reset while reading out the rest'));
    assert.deepEqual(await done, { data: ['a'] });
    assert.equal(h.settled, 1);
  });

  it('fails a body over its byte budget', async () => {
    const { res, body } = upstream();
    const got = drain(new SseSource(res, 'fake', 64, hooks()));
    body.write(ev('x'.repeat(100)));
    const r = await got;
    assert.ok(r.error instanceof UpstreamError);
    assert.deepEqual(r.data, []);
  });

  it('pauses the body while the consumer falls behind, and resumes it', async () => {
    const { res, body } = upstream();
    const source = new SseSource(res, 'fake', 1 << 20, hooks());
    const first = await Promise.all([source.next(), Promise.resolve(body.write(ev('0')))]);
    assert.equal((first[0].value as Chunk).data, '0');
    body.write(Array.from({ length: 100 }, (_, i) => ev(String(i + 1))).join(''));
    await tick();
    assert.ok(body.isPaused(), 'paused with 100 chunks queued');
    const seen: string[] = [];
    for (let i = 0; i < 70; i++) seen.push(((await source.next()).value as Chunk).data);
    assert.ok(!body.isPaused(), 'resumed once the queue went below half');
    body.end(ev('[DONE]'));
    for await (const c of source) seen.push(c.data);
    assert.equal(seen.length, 100);
    assert.equal(seen.at(-1), '100');
  });

  it('return() drops an unfinished body and settles; a finished one is read out', async () => {
    const early = upstream();
    const h = hooks();
    const source = new SseSource(early.res, 'fake', 1 << 20, h);
    early.body.write(ev('a'));
    await source.next();
    assert.deepEqual(await source.return(), { done: true, value: undefined });
    assert.ok(early.body.destroyed);
    assert.equal(h.settled, 1);
    assert.equal(early.doneCalls(), 1);
    assert.deepEqual(await source.next(), { done: true, value: undefined });

    const finished = upstream();
    const h2 = hooks();
    const s2 = new SseSource(finished.res, 'fake', 1 << 20, h2);
    finished.body.write(ev('a') + ev('[DONE]'));
    await s2.next();
    await s2.return();
    assert.ok(!finished.body.destroyed, 'its socket can go back to the pool');
    finished.body.end('data: trailing bytes are read and ignored\n\n');
    await tick();
    assert.ok(finished.body.readableEnded);
    assert.equal(h2.settled, 1);
  });

  it('return() before any read drops the body', async () => {
    const { res, body, doneCalls } = upstream();
    const h = hooks();
    await new SseSource(res, 'fake', 1 << 20, h).return();
    assert.ok(body.destroyed);
    assert.equal(h.settled, 1);
    assert.equal(doneCalls(), 1);
  });
});
