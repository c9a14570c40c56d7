// Paired fixed rate: one open-loop generator at --rate requests per second that alternates
// between two targets every --slice-ms (A, B, A, B, ...), with unique cacheable bodies (the miss
// path), and reports each target's latencies over all of its slices. On a host whose speed moves
// for seconds at a time, two targets measured in separate 10 s phases take different weather;
// interleaved half-second slices take the same, so the difference is the targets'.
//   node bench/load-paired.mjs --url-a http://127.0.0.1:8080/v1/chat/completions \
//     --url-b http://127.0.0.1:8081/v1/chat/completions --key KEY --rate 500 --duration 30
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout } from 'node:timers';
import { parseArgs } from 'node:util';
import {
  cacheableChatBody,
  checkedChat,
  emit,
  loopbackUrl,
  nonNegativeInt,
  positiveInt,
  ratePool,
  runMain,
  summarize,
} from './lib.mjs';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      'url-a': { type: 'string' },
      'url-b': { type: 'string' },
      key: { type: 'string', default: '' },
      rate: { type: 'string', default: '500' },
      duration: { type: 'string', default: '30' },
      'lead-in': { type: 'string', default: '5' },
      'slice-ms': { type: 'string', default: '500' },
      connections: { type: 'string', default: '64' },
    },
    strict: true,
  });
  if (!values['url-a'] || !values['url-b']) throw new Error('--url-a and --url-b are required');
  const urls = [loopbackUrl(values['url-a']), loopbackUrl(values['url-b'])];
  const rate = positiveInt('rate', values.rate);
  const duration = positiveInt('duration', values.duration);
  const leadIn = nonNegativeInt('lead-in', values['lead-in']);
  const sliceMs = positiveInt('slice-ms', values['slice-ms']);
  const connections = positiveInt('connections', values.connections);
  const pools = urls.map((u) => ratePool(u.origin, connections));
  const headers = { 'content-type': 'application/json' };
  if (values.key) headers.authorization = `Bearer ${values.key}`;
  const runId = randomBytes(12).toString('base64url');
  let seq = 0;
  const nextBody = () => cacheableChatBody(`${runId}-${String(seq++).padStart(16, '0')}`);

  const out = [0, 1].map(() => ({ samples: [], sent: 0, errors: 0, non2xx: 0, badBody: 0 }));
  async function one(which, measured) {
    const o = out[which];
    if (measured) o.sent++;
    const r = await checkedChat(pools[which], urls[which].pathname, headers, nextBody());
    if (measured) {
      if (r.outcome === 'ok') o.samples.push(r.ms);
      else o[r.outcome === 'error' ? 'errors' : r.outcome]++;
    }
  }

  // Every socket of both pools open before the clock starts.
  await Promise.all([0, 1].flatMap((w) => Array.from({ length: connections }, () => one(w, false))));

  const interval = 1000 / rate;
  const total = (leadIn + duration) * rate;
  const inFlight = new Set();
  const start = performance.now();
  let sent = 0;
  await new Promise((resolve) => {
    function tick() {
      const now = performance.now();
      while (sent < total && start + sent * interval <= now) {
        const at = sent * interval;
        const which = Math.floor(at / sliceMs) % 2;
        const p = one(which, at >= leadIn * 1000);
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
        sent++;
      }
      if (sent >= total) return resolve();
      setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
    }
    tick();
  });
  await Promise.race([Promise.all(inFlight), new Promise((r) => setTimeout(r, 15_000).unref())]);
  await Promise.all(pools.map((p) => p.destroy()));
  const report = (o) => ({
    sent: o.sent,
    ok: o.samples.length,
    latencyMs: summarize(o.samples),
    errors: o.errors,
    non2xx: o.non2xx,
    badBody: o.badBody,
  });
  emit({ phase: 'paired', rate, durationS: duration, sliceMs, a: report(out[0]), b: report(out[1]) });
});
