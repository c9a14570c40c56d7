// The optional JSONL ledger: one line per request with what it cost, appended to a file, for
// audits and for rebuilding spend should the store lose it. Lines are batched (asynchronous
// writes of whole lines, every 32 KiB or second) and flushed on close. The file is opened with
// O_APPEND and each write holds whole lines, so replicas on one host may share a file.
import pino from 'pino';
import { LineBatch } from '../log.js';

export interface Ledger {
  append(record: object): void;
  close(): void;
}

const FLUSH_INTERVAL_MS = 1_000;
const BATCH_BYTES = 32 * 1024;

export function openLedger(path: string): Ledger {
  const dest = pino.destination({
    dest: path,
    append: true,
    mkdir: true,
    sync: false,
    minLength: BATCH_BYTES,
    maxWrite: 64 * 1024,
  });
  const lines = new LineBatch(dest, BATCH_BYTES);
  const timer = setInterval(() => lines.flush(), FLUSH_INTERVAL_MS).unref();
  let closed = false;
  return {
    append(record) {
      if (!closed) lines.write(`${JSON.stringify(record)}\n`);
    },
    close() {
      if (closed) return;
      closed = true;
      clearInterval(timer);
      lines.close();
      // Waits for a write in progress, then writes the rest synchronously: nothing is lost.
      try {
        dest.flushSync();
      } catch {
        // flushSync throws while an async write is in flight; end() completes it, then closes.
      }
      dest.end();
    },
  };
}
