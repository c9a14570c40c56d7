// A stream's chunks on their way out, watched by the stages it passes: the cache assembles them,
// the limits and the accounting count them, the attempts stage ends its deployment's in-flight
// count. Each used to wrap the stream in an async generator of its own: six generators deep, every
// chunk cost each of them a promise, an iterator result and a microtask hop (about 20 objects a
// chunk, and GC was 17% of a streaming gateway's CPU). A ChunkPipe wraps the source once; stages
// add synchronous taps to it, and a chunk costs the one promise its consumer awaits.
import type { Chunk } from './types.js';

/** What a stage does with a stream's chunks. Taps must not throw. */
export interface ChunkTap {
  /** A chunk the consumer has taken, called before it asks for the next one. */
  chunk?(chunk: Chunk): void;
  /**
   * Once, when the stream is over: `completed` when the source ran to its end; `error` when it
   * failed; neither when the consumer stopped early (return()). The source has finished by then
   * (its own cleanup ran first, as an inner generator's finally would).
   */
  end?(completed: boolean, error: unknown): void;
  /** When the consumer first asks for a chunk. */
  start?(): void;
}

export class ChunkPipe implements AsyncIterableIterator<Chunk> {
  private readonly source: AsyncIterator<Chunk>;
  private readonly taps: ChunkTap[] = [];
  private peeked: IteratorResult<Chunk> | undefined;
  /** The chunk handed out last, whose taps run when the next one is asked for: the client never waits on them. */
  private handed: Chunk | undefined;
  private started = false;
  private over = false;

  private constructor(source: AsyncIterable<Chunk>) {
    this.source = source[Symbol.asyncIterator]();
  }

  /** `chunks` as a pipe: the same pipe when it already is one, so taps never nest. */
  static of(chunks: AsyncIterable<Chunk>): ChunkPipe {
    return chunks instanceof ChunkPipe ? chunks : new ChunkPipe(chunks);
  }

  /** Adds a tap; taps run in the order added (the innermost stage's first). */
  tap(t: ChunkTap): this {
    this.taps.push(t);
    return this;
  }

  /** Reads the first chunk ahead (it is handed out first, untouched); rejects as the source does. */
  async peek(): Promise<IteratorResult<Chunk>> {
    this.peeked ??= await this.source.next();
    return this.peeked;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<Chunk>> {
    if (!this.started) {
      this.started = true;
      for (const t of this.taps) t.start?.();
    }
    this.flushHanded();
    if (this.over) return Promise.resolve({ done: true, value: undefined });
    const peeked = this.peeked;
    if (peeked) {
      this.peeked = undefined;
      return Promise.resolve(this.received(peeked));
    }
    // Not an async function: one promise per chunk (the source's, chained once) instead of three.
    return this.source.next().then(this.onResult, this.onFailure);
  }

  private readonly onResult = (r: IteratorResult<Chunk>): IteratorResult<Chunk> => this.received(r);

  private readonly onFailure = (err: unknown): never => {
    this.end(false, err);
    throw err;
  };

  private received(r: IteratorResult<Chunk>): IteratorResult<Chunk> {
    if (r.done) this.end(true, undefined);
    else this.handed = r.value;
    return r;
  }

  /** The consumer stops early: the source is closed (its cleanup runs), then the taps end. */
  async return(): Promise<IteratorResult<Chunk>> {
    this.flushHanded();
    if (!this.over) {
      try {
        await this.source.return?.();
      } finally {
        this.end(false, undefined);
      }
    }
    return { done: true, value: undefined };
  }

  private flushHanded(): void {
    const chunk = this.handed;
    if (chunk === undefined) return;
    this.handed = undefined;
    for (const t of this.taps) t.chunk?.(chunk);
  }

  private end(completed: boolean, error: unknown): void {
    if (this.over) return;
    this.over = true;
    for (const t of this.taps) t.end?.(completed, error);
  }
}
