// Saturation: closed-loop autocannon, each of --connections keeps one non-streaming chat request
// in flight, for --duration seconds after --warmup seconds that are thrown away (they warm the
// target's JIT, its pools and this process). Prints one JSON line with the figures.
//   node bench/load-saturation.mjs --url http://127.0.0.1:8080/v1/chat/completions --key KEY
//     [--body sampled|unique|same] [--count-cache] [--headers JSON]
// --body unique gives every request its own body (autocannon's idReplacement: a 33-character id
// per request in the user message), so a gateway's cache misses every time; --body same repeats
// one cacheable body (see lib.mjs). --count-cache tallies the x-tollgate-cache header of the
// measured responses.
import autocannon from 'autocannon';
import { parseArgs } from 'node:util';
import {
  bodyKind,
  cacheableChatBody,
  cacheTally,
  chatBody,
  emit,
  extraHeaders,
  loopbackUrl,
  nonNegativeInt,
  positiveInt,
  runMain,
  SAME_TAG,
  summarize,
} from './lib.mjs';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      key: { type: 'string', default: '' },
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
      body: { type: 'string', default: 'sampled' },
      'count-cache': { type: 'boolean', default: false },
      headers: { type: 'string' },
    },
    strict: true,
  });
  if (!values.url) throw new Error('--url is required');
  const url = loopbackUrl(values.url);
  const connections = positiveInt('connections', values.connections);
  const duration = positiveInt('duration', values.duration);
  const warmup = nonNegativeInt('warmup', values.warmup);
  const kind = bodyKind(values.body);
  const countCache = values['count-cache'];

  const headers = { 'content-type': 'application/json', ...extraHeaders(values.headers) };
  if (values.key) headers.authorization = `Bearer ${values.key}`;
  const bodies = {
    sampled: chatBody,
    unique: () => cacheableChatBody('[<id>]'),
    same: () => cacheableChatBody(SAME_TAG),
  };
  const opts = {
    url: url.href,
    method: 'POST',
    headers,
    body: bodies[kind](),
    connections,
    pipelining: 1,
    timeout: 10,
    // autocannon replaces [<id>] with a fixed-length id, unique to each request.
    idReplacement: kind === 'unique',
  };
  // Every response of the run, warm-up included: what the orchestrator divides store calls by.
  let allResponses = 0;
  const tally = cacheTally();
  /** autocannon only hands out response headers to a request's onResponse. */
  const counting = (measured) =>
    countCache
      ? {
          requests: [
            {
              onResponse: (_status, _body, _context, h) => {
                if (!measured) return;
                const v = h['x-tollgate-cache'];
                tally[v === 'HIT' || v === 'MISS' || v === 'BYPASS' ? v : 'none']++;
              },
            },
          ],
        }
      : {};

  if (warmup > 0) {
    const w = await autocannon({ ...opts, ...counting(false), duration: warmup });
    allResponses += w['2xx'] + w.non2xx;
  }

  // autocannon's own histogram has 1 ms resolution; the raw response times give sub-ms percentiles.
  const samples = [];
  // MARK lines let the orchestrator read the target's CPU time over exactly the measured window.
  process.stderr.write('MARK start\n');
  const cpu0 = process.cpuUsage();
  const instance = autocannon({ ...opts, ...counting(true), duration });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
  });
  const r = await instance;
  const cpu = process.cpuUsage(cpu0);
  process.stderr.write('MARK end\n');
  allResponses += r['2xx'] + r.non2xx;

  emit({
    phase: 'saturation',
    body: kind,
    connections,
    durationS: r.duration,
    ok: r['2xx'],
    rps: Math.round((r['2xx'] / r.duration) * 10) / 10,
    latencyMs: summarize(samples),
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    statusCodes: r.statusCodeStats,
    allResponses,
    // This process's own CPU over the measured window: the orchestrator accounts for the load core with it.
    cpuS: Math.round((cpu.user + cpu.system) / 1e4) / 100,
    ...(countCache ? { cache: tally } : {}),
  });
});
