// The floor for any Node proxy: node:http in, one undici Pool out, nothing parsed, no auth.
// Method, path and body bytes go upstream as they came (the request is piped into undici), and
// the response comes back with its status, content-type and content-length, streamed as it
// arrives (so SSE chunks are relayed one by one). Whatever tollgate costs above this is ours.
//   node bench/bare-proxy.mjs --port 8081 --upstream http://127.0.0.1:9999 [--connections 1024]
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { loopbackUrl, nonNegativeInt, positiveInt } from './lib.mjs';

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8081' },
    upstream: { type: 'string' },
    connections: { type: 'string', default: '1024' },
  },
  strict: true,
});
if (!values.upstream) throw new Error('--upstream http://127.0.0.1:PORT is required');
const upstream = loopbackUrl(values.upstream);
const port = nonNegativeInt('port', values.port);

// Sized like tollgate's provider pool in the bench config, so neither proxy queues streams.
const pool = new Pool(upstream.origin, {
  connections: positiveInt('connections', values.connections),
  pipelining: 1,
  keepAliveTimeout: 30_000,
  keepAliveMaxTimeout: 600_000,
});

function ignore() {}

const server = createServer({ keepAliveTimeout: 72_000, noDelay: true }, (req, res) => {
  const abort = new globalThis.AbortController();
  // A departed client must stop the upstream request, or a bench that aborts would leak streams.
  res.once('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  const headers = {};
  if (req.headers['content-type']) headers['content-type'] = req.headers['content-type'];
  if (req.headers['content-length']) headers['content-length'] = req.headers['content-length'];
  pool
    .stream(
      { method: req.method, path: req.url, headers, body: hasBody ? req : null, signal: abort.signal },
      ({ statusCode, headers: up }) => {
        const out = {};
        if (up['content-type']) out['content-type'] = up['content-type'];
        if (up['content-length']) out['content-length'] = up['content-length'];
        res.writeHead(statusCode, out);
        // Headers go out now, not with the first body chunk: an SSE client sees the stream open at once.
        if (!up['content-length']) res.flushHeaders();
        return res;
      },
    )
    .catch(() => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"bad gateway","type":"server_error"}}');
      } else res.destroy();
    });
  req.on('error', ignore);
  res.on('error', ignore);
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`bare proxy listening on http://127.0.0.1:${server.address().port}\n`);
});

let stopping = false;
function stop() {
  if (stopping) return;
  stopping = true;
  server.close();
  server.closeAllConnections();
  pool.destroy().finally(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
