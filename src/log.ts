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
      formatters: { level: levelLabel },
    },
    destination ?? batchedStdout(),
  );
}

function levelLabel(label: string): { level: string } {
  return { level: label };
}

/**
 * Builds one info line of a logger from createLogger by hand, for the line written once per
 * request: pino's generic path (key walk, redaction wrapper, per-value type dispatch) was ~5% of
 * a request's CPU at saturation. The line is byte for byte what `log.info(fields, msg)` writes
 * for the same fields in the same order: level, time, the logger's bindings (pid, worker), the
 * fields, msg. Fields are added with the typed methods; undefined values are left out, as pino
 * does. Nothing in it is redacted: it must never hold a header or a key (the request line
 * never does).
 */
export class LogLine {
  private body = '';

  /** A string field (JSON-escaped). */
  str(name: string, value: string | undefined): this {
    if (value !== undefined) this.body += `,"${name}":${JSON.stringify(value)}`;
    return this;
  }

  /** A number field; a non-finite number is written as null, as JSON.stringify does. */
  num(name: string, value: number | undefined): this {
    if (value !== undefined) this.body += `,"${name}":${Number.isFinite(value) ? value : 'null'}`;
    return this;
  }

  bool(name: string, value: boolean | undefined): this {
    if (value !== undefined) this.body += `,"${name}":${value}`;
    return this;
  }

  /** Any JSON value (objects, null, or a value of unknown type). */
  any(name: string, value: unknown): this {
    if (value === undefined) return this;
    switch (typeof value) {
      case 'string':
        return this.str(name, value);
      case 'number':
        return this.num(name, value);
      case 'boolean':
        return this.bool(name, value);
      case 'function':
      case 'symbol':
        return this;
      default: {
        let json: string | undefined;
        try {
          json = JSON.stringify(value);
        } catch {
          json = '"[unserializable]"';
        }
        if (json !== undefined) this.body += `,"${name}":${json}`;
        return this;
      }
    }
  }

  /** Writes the line at level info (nothing when the logger is above info). */
  info(log: Logger, msg: string): void {
    if (!log.isLevelEnabled('info')) return;
    const l = log as unknown as Record<symbol, unknown>;
    const formatters = l[pino.symbols.formattersSym] as { level?: unknown } | undefined;
    if (formatters?.level !== levelLabel) {
      // Not a createLogger logger: let pino format it.
      log.info(JSON.parse(`{${this.body.slice(1)}}`) as object, msg);
      return;
    }
    const time = (l[pino.symbols.timeSym] as () => string)();
    const bindings = l[pino.symbols.chindingsSym] as string;
    const stream = l[pino.symbols.streamSym] as { write(line: string): unknown };
    stream.write(`{"level":"info"${time}${bindings}${this.body},"msg":${JSON.stringify(msg)}}\n`);
  }
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
 * shutdown flushes everything (main.ts), and so does a process that exits.
 */
const BATCH_BYTES = 32 * 1024;
/** sonic-boom wants minLength below its maxWrite (default 16 KiB). */
const MAX_WRITE_BYTES = 64 * 1024;

function batchedStdout(): DestinationStream {
  const dest = pino.destination({ dest: 1, sync: false, minLength: BATCH_BYTES, maxWrite: MAX_WRITE_BYTES });
  const lines = new LineBatch(dest, BATCH_BYTES);
  setInterval(() => lines.flush(), FLUSH_INTERVAL_MS).unref();
  return lines;
}

/** What LineBatch needs of its destination: pino.destination()'s SonicBoom has it. */
export interface BatchSink {
  write(data: string): boolean;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/**
 * Collects whole lines and hands them to `sink` joined, one string per `batchBytes` (counted in
 * UTF-16 units, which is all a threshold needs), or on flush. SonicBoom can batch by itself
 * (minLength), but it appends each line to one growing string and measures that whole string
 * with Buffer.byteLength on every write, which flattens it. Per request line of ~600 bytes,
 * building included: 5.6-5.9 µs through SonicBoom alone, 2.2-2.9 µs through this
 * (bench/RESULTS.md, 2026-12-07). Lines still in the batch are passed on before the
 * process exits (also on process.exit), ahead of pino's own exit flush of the sink.
 */
export class LineBatch implements DestinationStream {
  private parts: string[] = [];
  private units = 0;
  private readonly passOn = (): void => void this.pass();

  constructor(
    private readonly sink: BatchSink,
    private readonly batchBytes: number,
  ) {
    // Prepended: pino flushes and ends the sink on exit in a listener of its own.
    process.prependListener('exit', this.passOn);
    process.prependListener('beforeExit', this.passOn);
  }

  write(line: string): boolean {
    this.parts.push(line);
    this.units += line.length;
    return this.units >= this.batchBytes ? this.pass() : true;
  }

  /** Passes the batch on and flushes the sink; `cb` once the sink has written everything. */
  flush(cb?: (err?: Error) => void): void {
    this.pass();
    this.sink.flush(cb);
  }

  flushSync(): void {
    this.pass();
    this.sink.flushSync();
  }

  /** Passes the batch on and stops watching for the process's exit; the sink is the caller's. */
  close(): void {
    this.pass();
    process.removeListener('exit', this.passOn);
    process.removeListener('beforeExit', this.passOn);
  }

  private pass(): boolean {
    if (this.parts.length === 0) return true;
    const data = this.parts.length === 1 ? this.parts[0]! : this.parts.join('');
    this.parts = [];
    this.units = 0;
    return this.sink.write(data);
  }
}
