// The fake upstream (dist/fake-upstream) with a request counter, for the state suite: whether a
// cache hit really skipped the upstream is read here, at the upstream, not from the gateway's
// own headers. Same flags as dist/fake-upstream/main.js, plus --stats-port (0: a free port).
// The counting rides on node:http's diagnostics channels, so the fake itself is unchanged and
// pays one counter increment per request. Prints the fake's "listening" line, then
//   fake stats on http://127.0.0.1:PORT
// where GET / answers {"requests":N,"chat":N,"finished":N,"inFlight":N} (every request seen,
// the chat-completions POSTs among them, the responses finished, and those still open).
//   node bench/fake-counted.mjs --port 0 --stats-port 0 --latency-ms 0 --chunks 5 --chunk-delay-ms 0
import { subscribe } from 'node:diagnostics_channel';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { runFakeUpstreamCli } from '../dist/fake-upstream/main.js';
import { nonNegativeInt } from './lib.mjs';

const HOST = '127.0.0.1';
const argv = process.argv.slice(2);
const at = argv.indexOf('--stats-port');
const statsPort = at === -1 ? 0 : nonNegativeInt('stats-port', argv[at + 1]);
if (at !== -1) argv.splice(at, 2);
// Only loopback: refuse --host anything else before the fake binds it.
const { values } = parseArgs({ args: argv, options: { host: { type: 'string' } }, strict: false });
if (values.host !== undefined && values.host !== HOST) {
  process.stderr.write(`fake-counted: --host must be ${HOST}\n`);
  process.exit(2);
}

const counts = { requests: 0, chat: 0, finished: 0 };
let stats;
subscribe('http.server.request.start', ({ request, server }) => {
  if (server === stats) return;
  counts.requests++;
  if (request.method === 'POST' && request.url?.startsWith('/v1/chat/completions')) counts.chat++;
});
subscribe('http.server.response.finish', ({ server }) => {
  if (server !== stats) counts.finished++;
});

stats = createServer((_req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ ...counts, inFlight: counts.requests - counts.finished }));
});
stats.listen(statsPort, HOST, async () => {
  await runFakeUpstreamCli(argv);
  process.stdout.write(`fake stats on http://${HOST}:${stats.address().port}\n`);
});
// runFakeUpstreamCli exits the process on SIGTERM/SIGINT; the stats server goes with it.
