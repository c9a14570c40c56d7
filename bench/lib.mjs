// Helpers shared by the benchmark's orchestrator and its load generators: the request bodies,
// percentiles and small argument checks. Plain ESM so the bench runs without a build step.

/** A small, realistic chat request (~200 bytes of messages), the same for every target. */
export const CHAT_MESSAGES = [
  {
    role: 'system',
    content: 'You are a concise assistant for an online bookshop. Answer in one short paragraph.',
  },
  {
    role: 'user',
    content:
      'Which three science fiction novels from the 1960s would you recommend to a new reader, and why?',
  },
];

export function chatBody() {
  return JSON.stringify({ model: 'gpt-4o-mini', messages: CHAT_MESSAGES, temperature: 0.2 });
}

/**
 * A streaming request. `x_fake` is read by the fake upstream and forwarded untouched by both
 * proxies (headers would not be: the gateway does not forward client headers upstream).
 */
export function streamBody(chunks, chunkDelayMs) {
  return JSON.stringify({
    model: 'gpt-4o-mini',
    messages: CHAT_MESSAGES,
    temperature: 0.2,
    stream: true,
    x_fake: { chunks, chunkDelayMs },
  });
}

/** Nearest-rank percentile of an ascending-sorted array; undefined when empty. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return undefined;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Latency summary in ms, rounded to microseconds, from raw samples. */
export function summarize(samples) {
  const sorted = Float64Array.from(samples).sort();
  const round = (v) => (v === undefined ? null : Math.round(v * 1000) / 1000);
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    mean: sorted.length ? round(sum / sorted.length) : null,
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p97_5: round(percentile(sorted, 97.5)),
    p99: round(percentile(sorted, 99)),
    max: sorted.length ? round(sorted[sorted.length - 1]) : null,
  };
}

export function positiveInt(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got '${value}'`);
  return n;
}

export function nonNegativeInt(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--${name} must be a non-negative integer, got '${value}'`);
  return n;
}

/** Only loopback targets: the bench must never send its load anywhere else. */
export function loopbackUrl(value) {
  const url = new URL(value);
  if (url.protocol !== 'http:' || url.hostname !== '127.0.0.1') {
    throw new Error(`refusing to load ${value}: the bench only talks to http://127.0.0.1`);
  }
  return url;
}

/** Prints the result as one JSON line on stdout (what the orchestrator reads) and exits. */
export function emit(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

/** Runs main(), reporting a failure on stderr with exit code 1 so the orchestrator sees it. */
export function runMain(main) {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
