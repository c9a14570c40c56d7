// The workers' stdout, relayed by the primary to its own in whole lines. Workers writing to one
// inherited stdout would interleave: each writes its log lines in batches of up to 32 KiB
// (log.ts), and a pipe (docker's log driver, systemd's journal) keeps writes atomic only up to
// PIPE_BUF (4 KiB), so a batch cut short by a full pipe lets another worker's bytes into the
// middle of a line. Here every worker has a pipe of its own, and the primary, the one writer to
// the real stdout, passes on only complete lines.
import type { Readable } from 'node:stream';

/** Where lines go: pino's SonicBoom destination has this shape (write returns false when full). */
export interface LineSink {
  write(data: string): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/**
 * A line longer than this without a newline is passed on as it is: a worker's output that is not
 * log lines (a stack trace printed by a library) must not grow the primary's memory.
 */
const MAX_PARTIAL_BYTES = 1024 * 1024;

export interface LogRelay {
  /** Relays `stream` until it ends; its last line is completed with a newline if it lacks one. */
  add(stream: Readable): void;
  /** Resolves when every added stream has ended (a worker that exited has nothing left to say). */
  ended(): Promise<void>;
}

export function createLogRelay(sink: LineSink): LogRelay {
  const open = new Set<Readable>();
  const paused = new Set<Readable>();
  const waiting: (() => void)[] = [];

  // Backpressure: when the sink is full, every worker's pipe waits until it drains (each worker
  // then buffers in its own logger, as a single process does when stdout is slow).
  const pass = (from: Readable, text: string): void => {
    if (sink.write(text) || paused.has(from)) return;
    if (paused.size === 0) {
      sink.once('drain', () => {
        for (const stream of paused) stream.resume();
        paused.clear();
      });
    }
    paused.add(from);
    from.pause();
  };

  return {
    add(stream) {
      open.add(stream);
      let partial: Buffer[] = [];
      let partialBytes = 0;
      stream.on('data', (chunk: Buffer) => {
        const end = chunk.lastIndexOf(0x0a);
        if (end === -1 && partialBytes + chunk.length <= MAX_PARTIAL_BYTES) {
          partial.push(chunk);
          partialBytes += chunk.length;
          return;
        }
        const cut = end === -1 ? chunk.length : end + 1;
        // Cut after a newline, so no UTF-8 sequence is split (past the cap, one may be).
        const text = Buffer.concat([...partial, chunk.subarray(0, cut)]).toString('utf8');
        const rest = chunk.subarray(cut);
        partial = rest.length > 0 ? [rest] : [];
        partialBytes = rest.length;
        pass(stream, text);
      });
      stream.once('close', () => {
        if (partialBytes > 0) pass(stream, `${Buffer.concat(partial).toString('utf8')}\n`);
        open.delete(stream);
        paused.delete(stream);
        if (open.size === 0) for (const resolve of waiting.splice(0)) resolve();
      });
    },
    ended() {
      if (open.size === 0) return Promise.resolve();
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}
