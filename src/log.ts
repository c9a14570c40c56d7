// pino options shared by the gateway and its CLI: JSON lines (pretty only when asked), auth
// headers and provider keys redacted wherever they might appear, writes off the hot path.
import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Nothing in our own lines holds these (the request line never includes headers); redaction is
 * the safety net for a header object or provider config logged in a future change.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'apiKey',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: isoTimeMemo,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? batchedStdout(),
  );
}

let memoMs = -1;
let memo = '';

/**
 * pino's isoTime, formatted once per millisecond: at thousands of lines a second most lines share
 * their millisecond, and `toISOString` was 2% of the gateway's CPU on the cache-hit path.
 */
export function isoTimeMemo(): string {
  const now = Date.now();
  if (now !== memoMs) {
    memoMs = now;
    memo = `,"time":"${new Date(now).toISOString()}"`;
  }
  return memo;
}

/** How long a log line may wait in the buffer before it is written. */
const FLUSH_INTERVAL_MS = 200;

/**
 * Asynchronous, batched writes to stdout: lines collect in a buffer and go out in one write
 * per 32 KiB or per 200 ms, whichever comes first. One write per request line cost about 10%
 * of the gateway's CPU at saturation, and one per 4 KiB still 3.7% on the cache-hit path
 * (bench/RESULTS.md). The price: on a crash, up to 200 ms of lines can be lost; a clean
 * shutdown flushes everything (main.ts).
 */
const BATCH_BYTES = 32 * 1024;
/** sonic-boom wants minLength below its maxWrite (default 16 KiB). */
const MAX_WRITE_BYTES = 64 * 1024;

function batchedStdout(): DestinationStream {
  const dest = pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, maxWrite: MAX_WRITE_BYTES });
  setInterval(() => dest.flush(), FLUSH_INTERVAL_MS).unref();
  return dest;
}
