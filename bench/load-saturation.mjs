// Saturation: closed-loop autocannon, each of --connections keeps one non-streaming chat request
// in flight, for --duration seconds after --warmup seconds that are thrown away (they warm the
// target's JIT, its pools and this process). Prints one JSON line with the figures.
//   node bench/load-saturation.mjs --url http://127.0.0.1:8080/v1/chat/completions --key KEY
import autocannon from 'autocannon';
import { parseArgs } from 'node:util';
import { chatBody, emit, loopbackUrl, nonNegativeInt, positiveInt, runMain, summarize } from './lib.mjs';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      key: { type: 'string', default: '' },
      connections: { type: 'string', default: '64' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '2' },
    },
    strict: true,
  });
  if (!values.url) throw new Error('--url is required');
  const url = loopbackUrl(values.url);
  const connections = positiveInt('connections', values.connections);
  const duration = positiveInt('duration', values.duration);
  const warmup = nonNegativeInt('warmup', values.warmup);

  const headers = { 'content-type': 'application/json' };
  if (values.key) headers.authorization = `Bearer ${values.key}`;
  const opts = {
    url: url.href,
    method: 'POST',
    headers,
    body: chatBody(),
    connections,
    pipelining: 1,
    timeout: 10,
  };

  if (warmup > 0) await autocannon({ ...opts, duration: warmup });

  // autocannon's own histogram has 1 ms resolution; the raw response times give sub-ms percentiles.
  const samples = [];
  // MARK lines let the orchestrator read the target's CPU time over exactly the measured window.
  process.stderr.write('MARK start\n');
  const instance = autocannon({ ...opts, duration });
  instance.on('response', (_client, statusCode, _bytes, responseTime) => {
    if (statusCode >= 200 && statusCode < 300) samples.push(responseTime);
  });
  const r = await instance;
  process.stderr.write('MARK end\n');

  emit({
    phase: 'saturation',
    connections,
    durationS: r.duration,
    ok: r['2xx'],
    rps: Math.round((r['2xx'] / r.duration) * 10) / 10,
    latencyMs: summarize(samples),
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    statusCodes: r.statusCodeStats,
  });
});
