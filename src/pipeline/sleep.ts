// Waiting inside a request (a retry backoff, a place in a rate-limit queue) ends early when the
// client leaves: nobody is left to wait for.
import { ClientAbortedError } from '../providers/upstream-client.js';
import { onAbort, type Cancellation } from './abort.js';

export function abortableSleep(ms: number, signal: Cancellation): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ClientAbortedError());
    const stop = onAbort(signal, () => {
      clearTimeout(t);
      reject(new ClientAbortedError());
    });
    const t = setTimeout(() => {
      stop();
      resolve();
    }, ms);
  });
}
