// Waiting inside a request (a retry backoff, a place in a rate-limit queue) ends early when the
// client leaves: nobody is left to wait for.
import { ClientAbortedError } from '../providers/upstream-client.js';

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new ClientAbortedError());
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new ClientAbortedError());
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
