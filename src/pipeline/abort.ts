// Cancellation inside a request (the client left, a deadline passed) without AbortController.
// An AbortController costs ~3 µs to make and, measured in this gateway, outlives the request in
// the heap: its signals survived young-generation collections and were promoted, and one per
// request (two on a miss) drove a major GC every second at 500 req/s — the p99 (bench/RESULTS.md).
// An EventEmitter with `aborted` and `reason` is what undici accepts as a `signal` too, and dies
// young.
import { EventEmitter } from 'node:events';

/** What a stage sees of a request's cancellation: it can watch, not trigger. */
export interface Cancellation {
  readonly aborted: boolean;
  /** Why, once aborted (undici rejects a pending call with it). */
  readonly reason: unknown;
  once(event: 'abort', listener: () => void): unknown;
  off(event: 'abort', listener: () => void): unknown;
}

export class Canceller extends EventEmitter implements Cancellation {
  aborted = false;
  reason: unknown = undefined;

  /** Aborts once; later calls are ignored. Listeners run synchronously, as an AbortSignal's do. */
  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit('abort');
  }
}

/** Runs `listener` once when `c` aborts; returns a function that stops watching. */
export function onAbort(c: Cancellation, listener: () => void): () => void {
  c.once('abort', listener);
  return () => {
    c.off('abort', listener);
  };
}
