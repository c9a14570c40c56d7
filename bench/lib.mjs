// Helpers shared by the benchmark's orchestrator and its load generators: the request bodies,
// percentiles and small argument checks. Plain ESM so the bench runs without a build step.

import { Pool } from 'undici';

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
 * A cacheable chat request (temperature 0) for the state suite. `tag` ends the user message, so
 * a distinct tag per request makes every request a distinct cache entry (a miss), and one fixed
 * tag makes every request after the first a hit. Same size as chatBody() give or take the tag.
 */
export function cacheableChatBody(tag) {
  const [system, user] = CHAT_MESSAGES;
  return JSON.stringify({
    model: 'gpt-4o-mini',
    messages: [system, { ...user, content: `${user.content} (ref ${tag})` }],
    temperature: 0,
  });
}

/**
 * Request bodies a load generator can send (--body):
 * - sampled: chatBody(), the same every time, temperature 0.2 (not cacheable: BYPASS); the default
 * - unique:  cacheableChatBody() with a distinct tag per request: every request a cache miss
 * - same:    cacheableChatBody() with one fixed tag: every request after the first a cache hit
 */
export const BODY_KINDS = ['sampled', 'unique', 'same'];

/** The fixed tag of --body same: as long as a unique one (33 characters), so the bodies weigh alike. */
export const SAME_TAG = 'same-body'.padEnd(33, '.');

export function bodyKind(value) {
  if (!BODY_KINDS.includes(value))
    throw new Error(`--body must be one of ${BODY_KINDS.join(', ')}, got '${value}'`);
  return value;
}

/** The x-tollgate-cache header values a load generator tallies (--count-cache). */
export function cacheTally() {
  return { HIT: 0, MISS: 0, BYPASS: 0, none: 0 };
}

/**
 * A streaming request. `x_fake` is read by the fake upstream and forwarded untouched by the
 * proxies (headers would not be: the gateway does not forward client headers upstream).
 * `latencyMs` delays the fake's answer (a model's time to first token).
 */
export function streamBody(chunks, chunkDelayMs, { latencyMs = 0, tag } = {}) {
  const [system, user] = CHAT_MESSAGES;
  return JSON.stringify({
    model: 'gpt-4o-mini',
    // A tag makes the stream a cacheable request of its own (temperature 0): a gateway's miss.
    messages:
      tag === undefined ? CHAT_MESSAGES : [system, { ...user, content: `${user.content} (ref ${tag})` }],
    temperature: tag === undefined ? 0.2 : 0,
    stream: true,
    x_fake: latencyMs > 0 ? { chunks, chunkDelayMs, latencyMs } : { chunks, chunkDelayMs },
  });
}

/** --headers '{"name":"value",...}': extra request headers a target needs (the peer's routing). */
export function extraHeaders(json) {
  if (json === undefined || json === '') return {};
  const h = JSON.parse(json);
  if (typeof h !== 'object' || h === null || Array.isArray(h))
    throw new Error('--headers must be a JSON object');
  return h;
}

/**
 * The fixed-rate generators' pool: `connections` keep-alive sockets, one request each at a time,
 * 10 s to answer (a slow answer is measured, a hung one is an error).
 */
export function ratePool(origin, connections) {
  return new Pool(origin, {
    connections,
    pipelining: 1,
    headersTimeout: 10_000,
    bodyTimeout: 10_000,
    keepAliveTimeout: 60_000,
  });
}

/**
 * POSTs one non-streaming chat request through an undici pool and checks the answer after the
 * clock stopped (a proxy that answers fast with garbage must not pass): `outcome` is ok, non2xx,
 * badBody (no message content) or error (no answer, or not JSON), with the time to the last byte.
 */
export async function checkedChat(pool, path, headers, body) {
  const t0 = performance.now();
  try {
    const res = await pool.request({ method: 'POST', path, headers, body });
    const text = await res.body.text();
    const ms = performance.now() - t0;
    if (res.statusCode < 200 || res.statusCode >= 300) return { outcome: 'non2xx', ms, headers: res.headers };
    const content = JSON.parse(text)?.choices?.[0]?.message?.content;
    const ok = typeof content === 'string' && content.length > 0;
    return { outcome: ok ? 'ok' : 'badBody', ms, headers: res.headers };
  } catch (err) {
    return { outcome: 'error', error: err instanceof Error ? err.message : String(err) };
  }
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

/**
 * The bench's tollgate config as YAML, every stage on: a Redis store (`closed`: a Redis failure
 * shows as 503s, counted as errors; keys under `redis.prefix`), the cache, RPM/TPM per team, per
 * key and per team+model, a concurrency cap, USD and token budgets, all far above the load.
 * `connections`: the upstream pool, one connection per stream in flight.
 */
export function everyStageConfigYaml({ fakeOrigin, keyHash, redis, team, connections, shutdownTimeoutMs }) {
  const huge = 'rpm: 100000000, tpm: 1000000000000';
  const yaml = [
    `server: { logLevel: info, shutdownTimeoutMs: ${shutdownTimeoutMs} }`,
    'store:',
    '  type: redis',
    `  redis: { url: '${redis.url}', keyPrefix: '${redis.prefix}', onUnavailable: closed }`,
    'cache: { enabled: true, ttlSeconds: 300 }',
    'providers:',
    `  fake: { type: openai, baseUrl: ${fakeOrigin}/v1, connections: ${connections} }`,
    'models:',
    '  gpt-4o-mini: { deployments: [{ provider: fake }] }',
    'teams:',
    `  - name: ${team}`,
    `    keys: [{ id: k_${team}, sha256: ${keyHash} }]`,
    "    models: ['*']",
    '    limits:',
    '      rpm: 100000000',
    '      tpm: 1000000000000',
    '      concurrency: 1000000',
    `      perKey: { ${huge} }`,
    `      models: { gpt-4o-mini: { ${huge} } }`,
    '    budgets: [{ period: day, usd: 1000000 }, { period: month, tokens: 1000000000000 }]',
  ];
  return `${yaml.join('\n')}\n`;
}
