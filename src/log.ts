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
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // Asynchronous, buffered writes: a log line never blocks a request on stdout.
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
