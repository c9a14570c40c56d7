// An upstream's event stream as the async iterator of chunks the pipeline pulls from, fed by the
// body's 'data' events. It replaces an async generator looping `for await` over the body: that
// cost every chunk the body's own async iterator (a promise and a read() cycle), the generator's
// promise and iterator result, and two more microtask hops, and at 2,000 concurrent streams the
// garbage alone was a fifth of the relay's CPU. Here a buffer's events are parsed as it arrives
// and queued; next() hands the queue out, waiting only when it is empty.
//
// What a provider adds (hooks.event) maps one event to the chunks it hands on and says when the
// stream's last event has come ([DONE], message_stop). The rest is the relay contract both
// providers share:
// - the body is read to its end after the last event (data ignored), so the keep-alive socket
//   can be reused, and a connection dropped then does not fail the whole answer; a body that
//   ends before the last event is a failure (hooks.unfinishedMessage), never a silent success;
// - a body error or a throwing hook fails the stream with the error mapped by res.mapError, after
//   the chunks queued before it;
// - `usage` settles once, with hooks.usage(), when the stream is over, however it ends (end,
//   failure, return());
// - backpressure: past HIGH_WATER queued chunks the body is paused until the consumer catches up;
// - nothing is read before the first next(), as a generator's body would not run.
import { errors } from '../../errors.js';
import type { Chunk, Usage } from '../../pipeline/types.js';
import { byteBudget, type UpstreamResponse } from '../upstream-client.js';
import { SseParser, type SseEvent } from './parse.js';

export interface SseSourceHooks {
  /**
   * Maps one event, pushing the chunks to hand on into `out`. Returns true when it was the
   * stream's last event. May throw (an upstream error event): the stream then fails with it.
   */
  event(ev: SseEvent, out: Chunk[]): boolean;
  /** The usage the stream reported, asked once when it is over, one way or another. */
  usage(): Usage | undefined;
  /** What the body ended before the last event is called: the error the consumer then gets. */
  unfinishedMessage: string;
}

/** Chunks queued before the body is paused: a client that reads slowly holds back the upstream. */
const HIGH_WATER = 64;

interface Waiter {
  resolve: (r: IteratorResult<Chunk>) => void;
  reject: (e: Error) => void;
}

export class SseSource implements AsyncIterableIterator<Chunk> {
  /** Settles when the stream is over; undefined when no usage was seen. */
  readonly usage: Promise<Usage | undefined>;
  private settleUsage!: (u: Usage | undefined) => void;
  private readonly parser = new SseParser();
  private readonly count: (bytes: Uint8Array) => void;
  private queue: Chunk[] = [];
  /** Index of the next chunk to hand out: shifting a long array per chunk would copy it. */
  private head = 0;
  private waiter: Waiter | undefined;
  private started = false;
  private paused = false;
  /** The last event has come: further data is read and ignored. */
  private finished = false;
  /** The body has ended or failed, or the consumer stopped: no more chunks will be queued. */
  private over = false;
  /** The error to throw once the queue is handed out. */
  private failure: Error | undefined;
  /** The consumer has seen the end (done or the failure): every further next() is done. */
  private closed = false;

  private readonly onData = (bytes: Buffer): void => this.data(bytes);
  private readonly onEnd = (): void => {
    if (this.over) return;
    this.stop(
      this.finished ? undefined : errors.upstreamBadResponse(this.providerName, this.hooks.unfinishedMessage),
    );
  };
  private readonly onError = (err: unknown): void => {
    if (this.over) return;
    // After the last event the answer is whole: a connection dropped while reading out the rest
    // does not turn it into a failure.
    this.stop(this.finished ? undefined : this.res.mapError(err));
  };

  constructor(
    private readonly res: UpstreamResponse,
    private readonly providerName: string,
    maxBytes: number,
    private readonly hooks: SseSourceHooks,
  ) {
    this.count = byteBudget(maxBytes, providerName);
    this.usage = new Promise((resolve) => (this.settleUsage = resolve));
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Chunk>> {
    if (!this.started) this.start();
    if (this.head < this.queue.length) return Promise.resolve({ done: false, value: this.take() });
    if (this.closed) return Promise.resolve({ done: true, value: undefined });
    if (this.over) {
      const end = this.end();
      return end ? Promise.reject(end) : Promise.resolve({ done: true, value: undefined });
    }
    if (this.waiter)
      return Promise.reject(new Error('SseSource: next() called while a previous call is pending'));
    // An empty queue is never paused: take() resumed the body when the queue fell below half.
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** The consumer stops early: the body is dropped unless its last event came (then read out). */
  return(): Promise<IteratorResult<Chunk>> {
    if (!this.over) {
      // A later next() must not start reading a body that is gone.
      this.started = true;
      this.over = true;
      this.res.done();
      if (this.finished) this.drainToEnd();
      else this.detachAndDestroy();
      this.settleUsage(this.hooks.usage());
    }
    this.queue = [];
    this.head = 0;
    this.closed = true;
    return Promise.resolve({ done: true, value: undefined });
  }

  private start(): void {
    this.started = true;
    const body = this.res.body;
    body.on('data', this.onData);
    body.on('end', this.onEnd);
    body.on('error', this.onError);
  }

  private data(bytes: Buffer): void {
    if (this.finished || this.over) return;
    const before = this.queue.length;
    try {
      this.count(bytes);
      for (const ev of this.parser.push(bytes)) {
        if (this.hooks.event(ev, this.queue)) {
          this.finished = true;
          break;
        }
      }
    } catch (err) {
      this.stop(this.res.mapError(err));
      return;
    }
    if (this.queue.length > before) this.wake();
    if (!this.over && !this.paused && this.queue.length - this.head >= HIGH_WATER) {
      this.paused = true;
      this.res.body.pause();
    }
  }

  /** No more chunks: the body ended (failure undefined) or failed. Queued chunks still go out. */
  private stop(failure: Error | undefined): void {
    this.over = true;
    this.failure = failure;
    this.res.done();
    if (failure !== undefined) this.detachAndDestroy();
    this.settleUsage(this.hooks.usage());
    this.wake();
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      const end = this.end();
      if (end) w.reject(end);
      else w.resolve({ done: true, value: undefined });
    }
  }

  /** The first queued chunk (there is one); resumes a paused body once the queue has room. */
  private take(): Chunk {
    const value = this.queue[this.head++]!;
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
    }
    if (this.paused && this.queue.length - this.head < HIGH_WATER / 2) {
      this.paused = false;
      this.res.body.resume();
    }
    return value;
  }

  /** Hands the first queued chunk to a waiting next(). */
  private wake(): void {
    const w = this.waiter;
    if (!w || this.head >= this.queue.length) return;
    this.waiter = undefined;
    w.resolve({ done: false, value: this.take() });
  }

  /** The end, as the consumer sees it: the failure (once), or undefined for done. */
  private end(): Error | undefined {
    this.closed = true;
    const failure = this.failure;
    this.failure = undefined;
    return failure;
  }

  private detachAndDestroy(): void {
    const body = this.res.body;
    body.off('data', this.onData);
    body.off('end', this.onEnd);
    // An error after destroy() (undici's abort) has nobody to reach: keep a listener so it is not thrown.
    body.off('error', this.onError);
    body.on('error', ignore);
    body.destroy();
  }

  /** Reads the rest of a finished body without keeping it, so its socket goes back to the pool. */
  private drainToEnd(): void {
    if (this.paused) {
      this.paused = false;
      this.res.body.resume();
    }
  }
}

function ignore(): void {}
