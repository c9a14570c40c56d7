// Worker-thread entry for TokenCounter (tokens.ts): counts large texts off the main event loop.
// Loads the encodings once at start-up, posts `ready`, then answers one job per message; a job
// that throws is answered with its error, so only a real crash ends the thread.
import { getPriority, setPriority } from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';

import { countTexts, loadEncodings, type EncodingName } from './token-count.js';

/** Given at start (workerData). */
export interface TokenWorkerData {
  /** Nice value for this thread (Linux only, where it is per thread); 0 leaves it alone. */
  nice: number;
}

/** Main thread → worker. */
export interface TokenJob {
  id: number;
  encoding: EncodingName;
  texts: string[];
}

/** Worker → main thread. */
export type TokenWorkerMessage =
  | { type: 'ready' }
  | { type: 'done'; id: number; tokens: number }
  | { type: 'failed'; id: number; error: string };

const port = parentPort;
if (!port) throw new Error('token-worker must run in a worker thread (started by TokenCounter)');

const { nice } = workerData as TokenWorkerData;
// Counting is background work: when cores are scarce, the event loop should win. Only ever raised,
// and only on Linux: elsewhere the nice value belongs to the whole process.
if (process.platform === 'linux' && nice > getPriority(0)) {
  try {
    setPriority(0, nice);
  } catch {
    // A sandbox that forbids it leaves the worker at the process's priority: slower to yield, no harm.
  }
}

const encoders = await loadEncodings();

port.on('message', (job: TokenJob) => {
  let reply: TokenWorkerMessage;
  try {
    reply = { type: 'done', id: job.id, tokens: countTexts(encoders, job.encoding, job.texts) };
  } catch (err) {
    reply = { type: 'failed', id: job.id, error: err instanceof Error ? err.message : String(err) };
  }
  port.postMessage(reply);
});

port.postMessage({ type: 'ready' } satisfies TokenWorkerMessage);
