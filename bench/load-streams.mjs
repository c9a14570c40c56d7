// Streams: opens --streams concurrent streaming chat requests, each asking the fake upstream for
// --chunks content chunks --chunk-delay-ms apart (through the body's x_fake field), and checks
// every one of them event by event: the role chunk, exactly --chunks content chunks, the final
// chunk with finish_reason, then `data: [DONE]`. A stream is stalled when any silence (including
// the wait for its first event) exceeds --stall-ms, or it has not ended by the deadline.
//
// When all the streams are open at once (each has had its first event, none has ended) it writes
// `ALL_OPEN` on stderr: the orchestrator samples the target's RSS at that moment.
//
// --warm-path opens the --streams connections first (one GET each, in batches), so the phase
// measures streams and not a burst of TCP handshakes: 2,000 connects at once overflow a listen
// backlog (511 in Node) and the dropped SYNs come back a second later, which looks like a slow
// proxy. --first-chunk-ms asks the fake to wait before answering, as a model's time to first
// token does, so that streams opened over a second are all open together. --unique gives each
// stream a cacheable body of its own (a gateway's cache misses and assembles every stream).
//   node bench/load-streams.mjs --url http://127.0.0.1:8080/v1/chat/completions --key KEY --streams 1000
//     [--headers JSON] [--warm-path /v1/models] [--first-chunk-ms MS] [--unique] [--timeline FILE]
// --timeline writes each stream's launch, response-headers, first-event and end times (ms since
// the phase began) to FILE as JSON, to see where in the ramp a slow first chunk sits.
import { writeFileSync } from 'node:fs';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import {
  emit,
  extraHeaders,
  loopbackUrl,
  nonNegativeInt,
  positiveInt,
  runMain,
  streamBody,
  summarize,
} from './lib.mjs';

runMain(async () => {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      key: { type: 'string', default: '' },
      streams: { type: 'string', default: '1000' },
      chunks: { type: 'string', default: '20' },
      'chunk-delay-ms': { type: 'string', default: '200' },
      'stall-ms': { type: 'string', default: '2000' },
      // Streams opened per second; 0 opens them all in one go. All at once overflows the listen
      // backlog (511 in Node): dropped SYNs come back after the 1 s TCP retransmit and look like
      // a slow proxy. Each open also costs two TCP handshakes and a request on the load core.
      'open-rate': { type: 'string', default: '500' },
      headers: { type: 'string' },
      'warm-path': { type: 'string' },
      'first-chunk-ms': { type: 'string', default: '0' },
      unique: { type: 'boolean', default: false },
      timeline: { type: 'string' },
    },
    strict: true,
  });
  if (!values.url) throw new Error('--url is required');
  const url = loopbackUrl(values.url);
  const n = positiveInt('streams', values.streams);
  const chunks = positiveInt('chunks', values.chunks);
  const chunkDelayMs = nonNegativeInt('chunk-delay-ms', values['chunk-delay-ms']);
  const stallMs = positiveInt('stall-ms', values['stall-ms']);
  const openRate = nonNegativeInt('open-rate', values['open-rate']);
  const firstChunkMs = nonNegativeInt('first-chunk-ms', values['first-chunk-ms']);

  // One socket per stream: a stream occupies its connection for its whole life.
  const pool = new Pool(url.origin, {
    connections: n,
    pipelining: 1,
    headersTimeout: 30_000,
    bodyTimeout: 0,
  });
  const headers = { 'content-type': 'application/json', ...extraHeaders(values.headers) };
  if (values.key) headers.authorization = `Bearer ${values.key}`;
  const run = Date.now().toString(36);
  const bodyFor = (i) =>
    streamBody(chunks, chunkDelayMs, {
      latencyMs: firstChunkMs,
      tag: values.unique ? `${run}-${i}` : undefined,
    });
  if (values['warm-path']) await warm(pool, values['warm-path'], headers, n);
  // role chunk + content chunks + finish chunk + [DONE]
  const expectedEvents = chunks + 3;
  const openMs = openRate > 0 ? (n / openRate) * 1000 : 0;
  // Generous: the nominal stream length, the ramp, and the stall allowance twice over.
  const deadlineMs = firstChunkMs + (chunks + 2) * chunkDelayMs + openMs + 2 * stallMs + 10_000;

  const streams = [];
  let open = 0;
  let maxOpen = 0;
  let allOpenAtMs;
  let ended = 0;
  const start = performance.now();
  let resolveAll;
  const allEnded = new Promise((resolve) => (resolveAll = resolve));

  function finish(s, error) {
    if (s.ended) return;
    s.ended = true;
    s.endAt = performance.now();
    if (error && !s.error) s.error = error;
    if (s.firstAt !== undefined) open--;
    if (++ended === n) resolveAll();
  }

  function onEvent(s, block) {
    const now = performance.now();
    const gap = now - (s.lastAt ?? s.t0);
    if (gap > s.maxGap) s.maxGap = gap;
    // The wait for the first event includes the fake's deliberate time to first token.
    if (gap - (s.firstAt === undefined ? firstChunkMs : 0) > stallMs) s.stalled = true;
    s.lastAt = now;
    if (s.firstAt === undefined) {
      s.firstAt = now;
      if (++open > maxOpen) maxOpen = open;
      if (open === n && allOpenAtMs === undefined) {
        allOpenAtMs = now - start;
        process.stderr.write('ALL_OPEN\n');
      }
    }
    let data = '';
    for (const line of block.split('\n')) {
      if (line.startsWith('data:')) data += (data ? '\n' : '') + line.slice(line[5] === ' ' ? 6 : 5);
    }
    if (s.c.done > 0) return void s.c.unexpected++;
    if (data === '[DONE]') return void s.c.done++;
    let ev;
    try {
      ev = JSON.parse(data);
    } catch {
      return void s.c.unexpected++;
    }
    if (ev?.error) {
      s.error ??= `error event: ${JSON.stringify(ev.error).slice(0, 200)}`;
      return void s.c.unexpected++;
    }
    const choice = ev?.choices?.[0];
    if (!choice) return void (ev?.usage ? s.c.usage++ : s.c.unexpected++);
    if (choice.finish_reason) return void s.c.finish++;
    const delta = choice.delta ?? {};
    if (delta.role) return void s.c.role++;
    if (typeof delta.content === 'string' && delta.content.length > 0) return void s.c.content++;
    s.c.unexpected++;
  }

  function launch(i) {
    const s = {
      i,
      t0: performance.now(),
      firstAt: undefined,
      lastAt: undefined,
      headersAt: undefined,
      endAt: undefined,
      maxGap: 0,
      stalled: false,
      ended: false,
      status: undefined,
      error: undefined,
      body: undefined,
      c: { role: 0, content: 0, finish: 0, usage: 0, done: 0, unexpected: 0 },
    };
    streams.push(s);
    pool.request({ method: 'POST', path: url.pathname, headers, body: bodyFor(i) }).then(
      (res) => {
        s.headersAt = performance.now();
        s.status = res.statusCode;
        s.body = res.body;
        if (s.ended) return void res.body.destroy();
        res.body.setEncoding('utf8');
        let buf = '';
        res.body.on('data', (text) => {
          buf += text;
          let cut;
          while ((cut = buf.indexOf('\n\n')) !== -1) {
            onEvent(s, buf.slice(0, cut));
            buf = buf.slice(cut + 2);
          }
        });
        res.body.on('end', () => finish(s, buf.trim() ? 'stream ended mid-event' : undefined));
        res.body.on('error', (err) => finish(s, err.message));
      },
      (err) => finish(s, err.message),
    );
  }

  // MARK lines let the orchestrator read the target's CPU time over the phase.
  process.stderr.write('MARK start\n');
  // Launch: all at once, or in 10 ms batches to hold --open-rate.
  if (openRate === 0) for (let i = 0; i < n; i++) launch(i);
  else {
    let launched = 0;
    await new Promise((resolve) => {
      function batch() {
        const due = Math.min(n, Math.floor(((performance.now() - start) / 1000) * openRate) + 1);
        while (launched < due) launch(launched++);
        if (launched >= n) return resolve();
        setTimeout(batch, 10);
      }
      batch();
    });
  }

  // Watchdog: a silent stream is stalled even if it never sends another byte to tell us so.
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (const s of streams) {
      const silence = s.lastAt === undefined ? now - s.t0 - firstChunkMs : now - s.lastAt;
      if (!s.ended && silence > stallMs) s.stalled = true;
    }
  }, 250);
  let deadlineHit = false;
  await Promise.race([
    allEnded,
    new Promise((resolve) => setTimeout(() => resolve((deadlineHit = true)), deadlineMs).unref()),
  ]);
  clearInterval(watchdog);
  process.stderr.write('MARK end\n');
  for (const s of streams) {
    if (!s.ended) {
      s.stalled = true;
      s.body?.destroy();
      finish(s, 'not finished by the deadline');
    }
  }
  const wallMs = performance.now() - start;
  await pool.destroy().catch(() => undefined);

  let lost = 0;
  let unexpected = 0;
  let completed = 0;
  let stalled = 0;
  let failed = 0;
  let maxGapMs = 0;
  let firstError;
  const ttfc = [];
  const duration = [];
  for (const s of streams) {
    const c = s.c;
    const missing =
      Math.max(0, 1 - c.role) +
      Math.max(0, chunks - c.content) +
      Math.max(0, 1 - c.finish) +
      Math.max(0, 1 - c.done);
    lost += missing;
    unexpected +=
      c.unexpected + Math.max(0, c.role - 1) + Math.max(0, c.content - chunks) + Math.max(0, c.finish - 1);
    if (s.stalled) stalled++;
    if (s.maxGap > maxGapMs) maxGapMs = s.maxGap;
    const bad = s.status !== 200 || s.error !== undefined;
    if (bad) {
      failed++;
      firstError ??= s.error ?? `HTTP ${s.status}`;
    }
    if (!bad && missing === 0 && !s.stalled) completed++;
    if (s.firstAt !== undefined) ttfc.push(s.firstAt - s.t0);
    if (s.endAt !== undefined && !bad) duration.push(s.endAt - s.t0);
  }

  if (values.timeline) {
    const at = (t) => (t === undefined ? null : Math.round((t - start) * 10) / 10);
    const rows = streams.map((s) => [at(s.t0), at(s.headersAt), at(s.firstAt), at(s.endAt)]);
    writeFileSync(values.timeline, JSON.stringify({ columns: ['launch', 'headers', 'first', 'end'], rows }));
  }

  emit({
    phase: 'streams',
    streams: n,
    chunks,
    chunkDelayMs,
    expectedEventsPerStream: expectedEvents,
    completed,
    failed,
    lostChunks: lost,
    unexpectedEvents: unexpected,
    stalled,
    maxGapMs: Math.round(maxGapMs * 10) / 10,
    maxOpen,
    allOpenAtMs: allOpenAtMs === undefined ? null : Math.round(allOpenAtMs),
    deadlineHit,
    wallMs: Math.round(wallMs),
    firstChunkMs,
    ttfcMs: summarize(ttfc),
    streamMs: summarize(duration),
    firstError,
  });
});

/**
 * Opens `n` connections of the pool just before the phase: n GETs of `path` at once (any status),
 * each on a socket of its own that the pool keeps (both sides keep idle sockets for 4-5 s).
 */
async function warm(pool, path, headers, n) {
  const { 'content-type': _ct, ...rest } = headers;
  await Promise.all(
    Array.from({ length: n }, () =>
      pool.request({ method: 'GET', path, headers: rest }).then((res) => res.body.dump()),
    ),
  );
}
