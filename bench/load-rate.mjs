// Fixed rate: an open-loop generator sending --rate non-streaming chat requests per second, evenly
// spaced, for --duration seconds after --lead-in seconds that are not measured. Latency runs from
// the moment a request is handed to undici to the last byte of its body.
//
// Why not autocannon's overallRate: it gives each connection a per-second quota that it spends
// back to back at the start of every 1 s window, then idles (lib/httpClient.js, rateInterval), so
// "500 req/s" arrives as one burst per second and p99 measures burst queueing, not latency at
// 500 req/s. Here request i is sent at start + i/rate whatever happened to the others, so a slow
// target cannot slow the arrivals down (no coordinated omission) and queueing shows as latency.
//   node bench/load-rate.mjs --url http://127.0.0.1:8080/v1/chat/completions --key KEY --rate 500
//     [--body sampled|unique|same] [--count-cache] [--headers JSON]
// --body and --count-cache as in load-saturation.mjs (a unique body: a 33-character tag per request).
import { setTimeout } from 'node:timers';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import {
  bodyKind,
  cacheableChatBody,
  cacheTally,
  chatBody,
  checkedChat,
  emit,
  extraHeaders,
  loopbackUrl,
  nonNegativeInt,
  positiveInt,
  ratePool,
  runMain,
  SAME_TAG,
  summarize,
} from './lib.mjs';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      key: { type: 'string', default: '' },
      rate: { type: 'string', default: '500' },
      duration: { type: 'string', default: '10' },
      'lead-in': { type: 'string', default: '1' },
      connections: { type: 'string', default: '64' },
      body: { type: 'string', default: 'sampled' },
      'count-cache': { type: 'boolean', default: false },
      headers: { type: 'string' },
    },
    strict: true,
  });
  if (!values.url) throw new Error('--url is required');
  const url = loopbackUrl(values.url);
  const rate = positiveInt('rate', values.rate);
  const duration = positiveInt('duration', values.duration);
  const leadIn = nonNegativeInt('lead-in', values['lead-in']);
  // Enough sockets that a burst of slow responses never makes a due request wait for one.
  const connections = positiveInt('connections', values.connections);

  const pool = ratePool(url.origin, connections);
  const headers = { 'content-type': 'application/json', ...extraHeaders(values.headers) };
  if (values.key) headers.authorization = `Bearer ${values.key}`;
  const kind = bodyKind(values.body);
  const countCache = values['count-cache'];
  const fixedBody = kind === 'sampled' ? chatBody() : cacheableChatBody(SAME_TAG);
  // A unique tag: this run's 16 random characters and a counter, 33 characters like autocannon's ids.
  const runId = randomBytes(12).toString('base64url');
  let seq = 0;
  const nextBody = () =>
    kind === 'unique' ? cacheableChatBody(`${runId}-${String(seq++).padStart(16, '0')}`) : fixedBody;
  const path = url.pathname;
  const tally = cacheTally();
  let allResponses = 0;

  const samples = [];
  const sendLag = [];
  let errors = 0;
  let non2xx = 0;
  let badBody = 0;
  const firstError = { message: undefined };

  async function one(measured) {
    const r = await checkedChat(pool, path, headers, nextBody());
    if (r.outcome === 'error') {
      if (measured) errors++;
      firstError.message ??= r.error;
      return;
    }
    allResponses++;
    if (countCache && measured) {
      const v = r.headers['x-tollgate-cache'];
      tally[v === 'HIT' || v === 'MISS' || v === 'BYPASS' ? v : 'none']++;
    }
    if (!measured) return;
    if (r.outcome === 'non2xx') non2xx++;
    else if (r.outcome === 'badBody') badBody++;
    else samples.push(r.ms);
  }

  // Open every socket before the clock starts, so no measured request pays for a TCP handshake.
  await Promise.all(Array.from({ length: connections }, () => one(false)));

  const interval = 1000 / rate;
  const leadInCount = leadIn * rate;
  const total = leadInCount + duration * rate;
  const inFlight = new Set();
  let cpu0;
  const start = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    function tick() {
      const now = performance.now();
      // Timers fire late by up to ~1 ms: send everything that is due, each at most once.
      while (sent < total && start + sent * interval <= now) {
        const measured = sent >= leadInCount;
        // MARK lines let the orchestrator read the target's CPU time over the measured window.
        if (sent === leadInCount) {
          process.stderr.write('MARK start\n');
          cpu0 = process.cpuUsage();
        }
        if (measured) sendLag.push(now - (start + sent * interval));
        const p = one(measured);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        sent++;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    }
    tick();
  });
  const sendingS = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpu0);
  process.stderr.write('MARK end\n');

  // Bounded wait for the stragglers: undici's own 10 s timeouts end each of them anyway.
  let timedOut = false;
  await Promise.race([
    Promise.all(inFlight),
    new Promise((resolve) => setTimeout(() => resolve((timedOut = true)), 15_000).unref()),
  ]);
  await pool.destroy();

  emit({
    phase: 'rate',
    targetRate: rate,
    durationS: duration,
    sent: total - leadInCount,
    ok: samples.length,
    achievedRate: Math.round((samples.length / duration) * 10) / 10,
    sendingS: Math.round(sendingS * 100) / 100,
    latencyMs: summarize(samples),
    sendLagMs: summarize(sendLag),
    errors: errors + (timedOut ? inFlight.size : 0),
    non2xx,
    badBody,
    firstError: firstError.message,
    body: kind,
    allResponses,
    // This process's own CPU over the measured window: the orchestrator accounts for the load core with it.
    cpuS: Math.round((cpu.user + cpu.system) / 1e4) / 100,
    ...(countCache ? { cache: tally } : {}),
  });
});
