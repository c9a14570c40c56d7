// Hostile HTTP input through raw sockets (node:net), because a normal client refuses to send most
// of it: nothing a client controls reaches a response header raw (no header injection, no
// response splitting), no path variant reaches the admin API without the admin key, oversized and
// slow requests are cut off while other clients are served, pipelined requests are answered in
// order, and ambiguous body framing (request smuggling) is refused before anything goes upstream.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { startFakeUpstream } from '../../src/fake-upstream/server.js';
import type { FakeUpstream } from '../../src/fake-upstream/types.js';
import { hashKey } from '../../src/teams/keys.js';
import { baseConfig, makeTeam, startGateway, type StartedGateway } from '../helpers/start-gateway.js';

const PROVIDER_KEY = 'sk-test-provider-secret-0123456789';
const ADMIN_KEY = 'tg-admin-hostile-0123456789abcdefghij';

// --- raw HTTP/1.1 over a socket -------------------------------------------------------------

interface Exchange {
  /** Every byte the server sent, as latin1 (one char per byte). */
  raw: string;
  /** The server closed the connection (rather than our timeout ending the wait). */
  closedByServer: boolean;
  ms: number;
}

interface ExchangeOptions {
  /** Stop waiting once this holds for what has arrived (for keep-alive answers). */
  until?: (raw: string) => boolean;
  timeoutMs?: number;
}

/** Writes `bytes` (a string is sent as latin1, byte for byte) on a new connection and collects the answer. */
function exchange(port: number, bytes: string, options: ExchangeOptions = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    let settled = false;
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ raw, closedByServer, ms: performance.now() - started });
    };
    const timer = setTimeout(() => finish(false), options.timeoutMs ?? 3_000);
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      raw += chunk;
      if (options.until?.(raw)) finish(false);
    });
    socket.on('error', () => finish(true));
    socket.on('end', () => finish(true));
    socket.write(bytes, 'latin1');
  });
}

interface RawResponse {
  status: number;
  /** Header lines as received, names lower-cased. */
  headers: [string, string][];
  head: string;
  body: string;
}

/** Splits the bytes a server sent into complete HTTP/1.1 responses, in order. */
function parseResponses(raw: string): RawResponse[] {
  const out: RawResponse[] = [];
  let at = 0;
  for (;;) {
    const headEnd = raw.indexOf('\r\n\r\n', at);
    if (headEnd < 0) return out;
    const head = raw.slice(at, headEnd);
    const [statusLine = '', ...lines] = head.split('\r\n');
    const headers = lines.map((l): [string, string] => {
      const colon = l.indexOf(':');
      return [l.slice(0, colon).toLowerCase(), l.slice(colon + 1).trim()];
    });
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
    const value = (name: string) => headers.find(([n]) => n === name)?.[1];
    let rest = headEnd + 4;
    let body = '';
    if (value('transfer-encoding') === 'chunked') {
      for (;;) {
        const sizeEnd = raw.indexOf('\r\n', rest);
        if (sizeEnd < 0) return out;
        const size = parseInt(raw.slice(rest, sizeEnd), 16);
        if (raw.length < sizeEnd + 2 + size + 2) return out;
        body += raw.slice(sizeEnd + 2, sizeEnd + 2 + size);
        rest = sizeEnd + 2 + size + 2;
        if (size === 0) break;
      }
    } else {
      const length = Number(value('content-length') ?? 0);
      if (raw.length < rest + length) return out;
      body = raw.slice(rest, rest + length);
      rest += length;
    }
    out.push({ status, headers, head, body });
    at = rest;
  }
}

function headerValues(res: RawResponse, name: string): string[] {
  return res.headers.filter(([n]) => n === name).map(([, v]) => v);
}

/** Exactly one response came back, in OpenAI's error shape with this status and code. */
function assertOneOpenAIError(ex: Exchange, status: number, code: string): RawResponse {
  const responses = parseResponses(ex.raw);
  assert.equal(responses.length, 1, `one response expected, got: ${JSON.stringify(ex.raw.slice(0, 400))}`);
  const res = responses[0]!;
  assert.equal(res.status, status, res.head);
  const json = JSON.parse(res.body);
  assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(json.error.code, code);
  return res;
}

/** No response carries a header line that the request tried to inject, nor a second status line. */
function assertNothingInjected(ex: Exchange, expectedResponses = 1): void {
  const responses = parseResponses(ex.raw);
  assert.equal(responses.length, expectedResponses, JSON.stringify(ex.raw.slice(0, 400)));
  for (const res of responses) {
    assert.ok(!res.headers.some(([n]) => n.includes('injected')), `injected header in:\n${res.head}`);
    assert.ok(!/\r\n\s*x-injected/i.test(res.head), res.head);
  }
  // A split response would show up as a status line at a line start where a body or the next
  // response should be (a model name echoed JSON-escaped inside a body is no line start).
  assert.equal(ex.raw.match(/(^|\r\n|\n)HTTP\/1\.1 \d{3} /g)?.length ?? 0, expectedResponses);
}

const chatBody = (model = 'gpt-4o-mini', extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }], ...extra });

/** A POST as raw bytes (one char per byte); the body is sent as UTF-8, `headers` are complete lines. */
function post(path: string, body: string, headers = ''): string {
  const bytes = Buffer.from(body, 'utf8').toString('latin1');
  return (
    `POST ${path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n${headers}` +
    `Content-Length: ${bytes.length}\r\nConnection: close\r\n\r\n${bytes}`
  );
}

/** Polls until `condition` holds; fails the test after `timeoutMs`. */
async function waitFor(condition: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail('timed out waiting');
    await sleep(10);
  }
}

function get(path: string, headers = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: gateway\r\n${headers}Connection: close\r\n\r\n`;
}

// --- the gateway under attack ---------------------------------------------------------------

describe('hostile HTTP input', () => {
  let fake: FakeUpstream;
  let gw: StartedGateway;
  let port: number;
  const team = makeTeam('search');
  const auth = `Authorization: Bearer ${team.key}\r\n`;

  before(async () => {
    fake = await startFakeUpstream({ apiKey: PROVIDER_KEY });
    const config = baseConfig(fake.url, [team], {
      admin: { keySha256: [hashKey(ADMIN_KEY)] },
      routing: { retry: { maxAttempts: 1 } },
    });
    // A wildcard route: the deployment id (x-tollgate-model) then holds the client's model name.
    (config.models as Record<string, unknown>)['*'] = { deployments: [{ provider: 'fake' }] };
    gw = await startGateway(config);
    port = Number(new URL(gw.url).port);
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });
  beforeEach(() => fake.reset());

  describe('header injection and response splitting', () => {
    // Raw bytes in a header value that HTTP forbids: a lenient parser would take the first two as
    // line ends (a second header, smuggled) and hand the rest to code that may echo it.
    const forbidden: [string, string][] = [
      ['a bare CR', 'a\rX-Injected: yes'],
      ['a bare LF', 'a\nX-Injected: yes'],
      ['an obs-fold continuation line', 'a\r\n X-Injected: yes'],
      ['NUL', 'a\x00X-Injected: yes'],
      ['ESC', 'a\x1bX-Injected: yes'],
      ['DEL', 'a\x7fX-Injected: yes'],
    ];
    const headerNames = ['X-Request-Id', 'X-Tollgate-Feature', 'X-Tollgate-Cache-Ttl', 'Authorization'];
    for (const name of headerNames) {
      for (const [what, value] of forbidden) {
        it(`refuses ${what} in ${name} with a 400 in OpenAI's shape, nothing injected`, async () => {
          const headers =
            name === 'Authorization' ? `${name}: Bearer ${value}\r\n` : `${auth}${name}: ${value}\r\n`;
          const ex = await exchange(port, post('/v1/chat/completions', chatBody(), headers));
          assertOneOpenAIError(ex, 400, 'invalid_request');
          assertNothingInjected(ex);
          assert.ok(ex.closedByServer, 'the connection is closed after a malformed request');
          assert.equal(fake.requests.length, 0);
        });
      }
    }

    it('lets no CR or LF in the request target into a header', async () => {
      // A bare CR is refused. A bare LF ends the request line for Node's parser (RFC 9112 lets a
      // recipient take LF as a line end), so the rest is read as a request header, never echoed.
      const cr = await exchange(port, get('/v1/models\rX-Injected: yes', auth));
      assertOneOpenAIError(cr, 400, 'invalid_request');
      assertNothingInjected(cr);
      for (const target of ['/v1/models\nX-Injected: yes', '/v1/models\r\nX-Injected: yes']) {
        assertNothingInjected(await exchange(port, get(target, auth)));
      }
    });

    it('keeps a percent-encoded CRLF in the path encoded: a 404, no header made of it', async () => {
      const ex = await exchange(port, get('/v1/models%0D%0AX-Injected:%20yes', auth));
      const res = assertOneOpenAIError(ex, 404, 'unknown_url');
      assertNothingInjected(ex);
      // The path shows up only JSON-escaped in the body, exactly as sent.
      assert.ok(res.body.includes('/v1/models%0D%0AX-Injected:%20yes'));
    });

    it('echoes an x-request-id only when it is short and printable; any other is replaced', async () => {
      const ok = parseResponses(
        (await exchange(port, get('/healthz', 'X-Request-Id: trace-1.2:3@a/b+c=d\r\n'))).raw,
      );
      assert.deepEqual(headerValues(ok[0]!, 'x-request-id'), ['trace-1.2:3@a/b+c=d']);
      // Values the HTTP parser accepts but that are no id: bytes beyond ASCII, separators, a
      // second header's worth of text, a long value.
      for (const given of ['caf\xe9\xff', 'a, b', 'a; X-Injected=yes', 'a b', 'a\tb', 'x'.repeat(129)]) {
        const ex = await exchange(port, get('/healthz', `X-Request-Id: ${given}\r\n`));
        const [res] = parseResponses(ex.raw);
        assert.equal(res?.status, 200);
        const [echoed] = headerValues(res, 'x-request-id');
        assert.match(
          echoed ?? '',
          /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
          JSON.stringify(given),
        );
        assertNothingInjected(ex);
      }
    });

    it('never echoes the feature, cache-TTL, route or key headers, even with odd but legal bytes', async () => {
      const marker = 'zq-hostile-marker';
      const headers =
        `X-Tollgate-Feature: ${marker}-feature\xe9\xff; X-Injected: yes\r\n` +
        `X-Tollgate-Cache-Ttl: 60 ${marker}-ttl\xff\r\n` +
        `X-Tollgate-Route: ${marker}-route\xff\r\n`;
      const served = await exchange(port, post('/v1/chat/completions', chatBody(), auth + headers));
      assert.equal(parseResponses(served.raw)[0]?.status, 200);
      const refused = await exchange(
        port,
        post('/v1/chat/completions', chatBody(), `Authorization: Bearer tg-${marker}\xe9\xff\r\n${headers}`),
      );
      assertOneOpenAIError(refused, 401, 'invalid_api_key');
      for (const ex of [served, refused]) {
        assertNothingInjected(ex);
        assert.ok(!parseResponses(ex.raw)[0]!.head.includes(marker), parseResponses(ex.raw)[0]!.head);
      }
    });

    // The model name travels in JSON, where "\r\n" is just an escape: on a wildcard route it became
    // part of x-tollgate-model, and Node's refusal of it failed the reply after the upstream answered.
    const hostileModels: [string, string, string][] = [
      ['CRLF and a header', 'evil\r\nX-Injected: yes', 'fake/evil%0D%0AX-Injected: yes'],
      [
        'a whole second response',
        'm\r\n\r\nHTTP/1.1 200 OK\r\nX-Injected: yes',
        'fake/m%0D%0A%0D%0AHTTP/1.1 200 OK%0D%0AX-Injected: yes',
      ],
      ['characters beyond Latin-1', '模型', 'fake/%E6%A8%A1%E5%9E%8B'],
      ['a percent sign', 'gpt%0d', 'fake/gpt%250d'],
    ];
    for (const [what, model, shown] of hostileModels) {
      for (const stream of [false, true]) {
        it(`answers a model name with ${what} (${stream ? 'stream' : 'JSON'}), percent-encoded in x-tollgate-model`, async () => {
          const ex = await exchange(port, post('/v1/chat/completions', chatBody(model, { stream }), auth));
          assertNothingInjected(ex);
          const [res] = parseResponses(ex.raw);
          assert.equal(res!.status, 200, res!.head);
          assert.deepEqual(headerValues(res!, 'x-tollgate-model'), [shown]);
          assert.equal(decodeURIComponent(shown), `fake/${model}`);
          if (stream) assert.ok(res!.body.endsWith('data: [DONE]\n\n'));
          else assert.equal(JSON.parse(res!.body).object, 'chat.completion');
        });
      }
    }
  });

  describe('path traversal toward the admin API', () => {
    const variants = [
      '/v1/../admin/teams',
      '/v1/%2e%2e/admin/teams',
      '/v1/%2E%2E/admin/teams',
      '/v1/..%2fadmin/teams',
      '/v1/%252e%252e/admin/teams',
      '/v1/..\\admin/teams',
      '/v1/%5c..%5cadmin/teams',
      '/%2e%2e/admin/teams',
      '//admin/teams',
      '/./admin/teams',
      '/admin/../admin/teams',
      '/admin/./teams',
      '/admin//teams',
      '/ADMIN/teams',
      '/Admin/Teams',
      '/admin%2fteams',
      '/admin\\teams',
      '\\admin\\teams',
      '/admin/teams%00',
      '/admin/teams%2500',
      '/admin/teams;x',
      '/admin/teams%3bx',
      '/admin/teams%20',
      '/admin/teams/',
    ];
    // A status that refuses, in OpenAI's shape, and no admin data: the team list names the team.
    const assertRefused = (ex: Exchange, path: string): void => {
      const [res] = parseResponses(ex.raw);
      assert.ok(res, `no response for ${path}`);
      assert.ok([400, 401, 403, 404].includes(res.status), `${path}: ${res.status} ${res.body}`);
      const json = JSON.parse(res.body);
      assert.deepEqual(Object.keys(json.error).sort(), ['code', 'message', 'param', 'type'], path);
      assert.ok(!res.body.includes('"object":"list"') && !res.body.includes('"object":"team"'), res.body);
    };

    it('the admin API itself answers 401 without a key, 403 to a team key, data to the admin key', async () => {
      assertOneOpenAIError(await exchange(port, get('/admin/teams')), 401, 'invalid_api_key');
      assertOneOpenAIError(await exchange(port, get('/admin/teams', auth)), 403, 'permission_denied');
      const [res] = parseResponses(
        (await exchange(port, get('/admin/teams', `Authorization: Bearer ${ADMIN_KEY}\r\n`))).raw,
      );
      assert.equal(res!.status, 200);
      assert.ok(res!.body.includes('"object":"team"') && res!.body.includes('"search"'));
    });

    for (const [who, header] of [
      ['no key', ''],
      ['a team key', auth],
    ] as const) {
      it(`refuses every traversal or encoded variant with ${who}`, async () => {
        for (const path of variants) assertRefused(await exchange(port, get(path, header)), path);
      });
    }

    it('routes no variant to an admin handler even with the admin key: paths are not normalised', async () => {
      // Were `..`, `%2e`, `//` or case folded before routing, a guard keyed on the path could be
      // walked around; here the admin key itself would get data, which shows the folding.
      const admin = `Authorization: Bearer ${ADMIN_KEY}\r\n`;
      for (const path of variants) {
        const ex = await exchange(port, get(path, admin));
        assertRefused(ex, path);
        if (path.startsWith('/v1/')) assertOneOpenAIError(ex, 404, 'unknown_url');
      }
    });
  });

  describe('oversized headers', () => {
    for (const [what, request] of [
      ['one 64 KiB header', get('/healthz', `X-Big: ${'a'.repeat(64 * 1024)}\r\n`)],
      [
        '2,000 small headers',
        get('/healthz', Array.from({ length: 2000 }, (_, i) => `X-H${i}: value\r\n`).join('')),
      ],
      ['a 64 KiB request target', get(`/v1/models?q=${'a'.repeat(64 * 1024)}`, auth)],
    ] as const) {
      it(`answers ${what} with 431 and closes, and keeps serving`, async () => {
        const ex = await exchange(port, request);
        assertOneOpenAIError(ex, 431, 'request_headers_too_large');
        assert.ok(ex.closedByServer);
        const [next] = parseResponses((await exchange(port, get('/v1/models', auth))).raw);
        assert.equal(next?.status, 200);
      });
    }
  });

  describe('HTTP/1.1 pipelining', () => {
    it('answers three requests written at once, in order, even when the first upstream call is slow', async () => {
      // The chat is slow and /v1/models is immediate: a server that answered as handlers finish
      // would put the models list before the completion.
      fake.script({ kind: 'ok', latencyMs: 300 });
      const body = chatBody();
      const bytes =
        'GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Request-Id: pipe-1\r\n\r\n' +
        `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n${auth}X-Request-Id: pipe-2\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
        `GET /v1/models HTTP/1.1\r\nHost: gateway\r\n${auth}X-Request-Id: pipe-3\r\n\r\n`;
      const ex = await exchange(port, bytes, { until: (raw) => parseResponses(raw).length >= 3 });
      const responses = parseResponses(ex.raw);
      assert.deepEqual(
        responses.map((r) => [r.status, headerValues(r, 'x-request-id')[0]]),
        [
          [200, 'pipe-1'],
          [200, 'pipe-2'],
          [200, 'pipe-3'],
        ],
      );
      assert.deepEqual(JSON.parse(responses[0]!.body), { status: 'ok' });
      assert.equal(JSON.parse(responses[1]!.body).object, 'chat.completion');
      assert.equal(JSON.parse(responses[2]!.body).object, 'list');
      assert.equal(fake.requests.length, 1);
    });

    it('never writes an error for a malformed pipelined request into a stream under way', async () => {
      fake.script({ kind: 'stream', chunks: 6, chunkDelayMs: 100 });
      const socket = net.connect(port, '127.0.0.1');
      let raw = '';
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (raw += d));
      const closed = new Promise((resolve) => socket.on('close', resolve));
      socket.write(
        post('/v1/chat/completions', chatBody('gpt-4o-mini', { stream: true }), auth).replace(
          'Connection: close\r\n',
          '',
        ),
      );
      await waitFor(() => raw.includes('data: '));
      socket.write('NOT HTTP\x01\r\n\r\n');
      await Promise.race([closed, sleep(3_000)]);
      socket.destroy();
      // The stream is cut (the connection cannot be parsed any further), but its body holds
      // only SSE events: no status line of a second response inside it.
      assert.equal(raw.match(/(^|\r\n|\n)HTTP\/1\.1 \d{3} /g)?.length, 1, raw);
      const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
      assert.ok(!body.includes('invalid_request') && !body.includes('Bad Request'), body);
    });
  });

  describe('request smuggling', () => {
    const body = chatBody();
    const chunked = `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    // Each is followed, on the same connection, by a second request: a server that framed the body
    // differently from a proxy in front of it would answer that one too (or run part of the body).
    const smuggled = `GET /admin/teams HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer ${ADMIN_KEY}\r\n\r\n`;
    const attempts: [string, string, string][] = [
      [
        'Content-Length with Transfer-Encoding: chunked',
        `Content-Length: ${chunked.length}\r\nTransfer-Encoding: chunked\r\n`,
        chunked,
      ],
      [
        'CL.TE: a short Content-Length with chunked',
        'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n',
        chunked,
      ],
      [
        'TE.CL: chunked with a long Content-Length',
        `Transfer-Encoding: chunked\r\nContent-Length: ${body.length}\r\n`,
        body,
      ],
      ['two different Content-Lengths', `Content-Length: ${body.length}\r\nContent-Length: 4\r\n`, body],
      [
        'two equal Content-Lengths',
        `Content-Length: ${body.length}\r\nContent-Length: ${body.length}\r\n`,
        body,
      ],
      ['a Content-Length list', `Content-Length: ${body.length}, ${body.length}\r\n`, body],
      ['Transfer-Encoding: chunked, identity', 'Transfer-Encoding: chunked, identity\r\n', chunked],
      [
        'two Transfer-Encoding headers',
        'Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n',
        chunked,
      ],
      ['a space before the colon', 'Transfer-Encoding : chunked\r\n', chunked],
      ['Transfer-Encoding: xchunked', 'Transfer-Encoding: xchunked\r\n', chunked],
      [
        'Transfer-Encoding: xchunked with a Content-Length',
        `Transfer-Encoding: xchunked\r\nContent-Length: ${body.length}\r\n`,
        body,
      ],
      ['a Transfer-Encoding folded onto the next line', 'Transfer-Encoding:\r\n chunked\r\n', chunked],
    ];
    for (const [what, framing, payload] of attempts) {
      it(`refuses ${what} with a 400, forwards nothing, answers nothing smuggled`, async () => {
        const bytes =
          `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n${auth}Content-Type: application/json\r\n` +
          `${framing}\r\n${payload}${smuggled}`;
        const ex = await exchange(port, bytes);
        assertOneOpenAIError(ex, 400, 'invalid_request');
        assert.ok(ex.closedByServer);
        assert.ok(!ex.raw.includes('"object":"team"'), 'the smuggled admin request was answered');
        // Give a forwarded request time to arrive before counting none.
        await sleep(50);
        assert.equal(fake.requests.length, 0);
      });
    }

    it('a well-framed chunked body is accepted and the next request on the socket is its own', async () => {
      const bytes =
        `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n${auth}Content-Type: application/json\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n${chunked}GET /v1/models HTTP/1.1\r\nHost: gateway\r\n${auth}Connection: close\r\n\r\n`;
      const responses = parseResponses((await exchange(port, bytes)).raw);
      assert.deepEqual(
        responses.map((r) => r.status),
        [200, 200],
      );
      assert.equal(JSON.parse(responses[1]!.body).object, 'list');
      assert.equal(fake.requests.length, 1);
      assert.equal(fake.requests[0]!.rawBody, body);
    });
  });
});

describe('slow clients (slowloris)', () => {
  const HEADERS_TIMEOUT_MS = 500;
  // Far enough above the headers timeout that a header stall cut by the request timeout instead
  // (headersTimeoutMs not applied) misses HEADERS_BOUND_MS.
  const REQUEST_TIMEOUT_MS = 2_500;
  // Node looks for expired requests once a second (app.ts), plus slack for a loaded test host.
  const HEADERS_BOUND_MS = HEADERS_TIMEOUT_MS + 1_000 + 800;
  const REQUEST_BOUND_MS = REQUEST_TIMEOUT_MS + 1_000 + 800;
  const IDLE_MS = HEADERS_BOUND_MS;
  let fake: FakeUpstream;
  let gw: StartedGateway;
  let port: number;
  const team = makeTeam('search');
  const auth = `Authorization: Bearer ${team.key}\r\n`;
  // Every client here runs at once, started in before(), so the suite takes about four seconds
  // and the normal clients are served while the slow ones are being held.
  let stalledHeaders: Promise<Exchange>;
  let tricklingHeaders: Promise<Exchange>;
  let silentConnection: Promise<Exchange>;
  let stalledBody: Promise<Exchange>;
  let normalClients: Promise<Exchange[]>;
  let idleKeepAlive: Promise<Exchange>;
  let longStream: Promise<Exchange>;

  /** Sends `first`, then `each` every `everyMs` until the server closes; collects the answer. */
  function slowClient(first: string, each?: string, everyMs = 150): Promise<Exchange> {
    return new Promise((resolve) => {
      const started = performance.now();
      const socket = net.connect(port, '127.0.0.1');
      let raw = '';
      let gaveUp = false;
      socket.setEncoding('latin1');
      socket.on('data', (d: string) => (raw += d));
      socket.on('error', () => {});
      const drip = each === undefined ? undefined : setInterval(() => socket.write(each), everyMs);
      const giveUp = setTimeout(() => {
        gaveUp = true;
        socket.destroy();
      }, REQUEST_BOUND_MS + 1_000);
      socket.on('close', () => {
        clearInterval(drip);
        clearTimeout(giveUp);
        resolve({ raw, closedByServer: !gaveUp, ms: performance.now() - started });
      });
      if (first) socket.write(first);
    });
  }

  /** One request, IDLE_MS of silence on the kept-alive connection, then a second request. */
  async function keepAliveTwice(): Promise<Exchange> {
    const started = performance.now();
    const socket = net.connect(port, '127.0.0.1');
    let raw = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (raw += d));
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n');
    await sleep(IDLE_MS);
    if (!socket.destroyed)
      socket.write('GET /healthz HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n');
    await Promise.race([closed, sleep(2_000)]);
    socket.destroy();
    return { raw, closedByServer: true, ms: performance.now() - started };
  }

  before(async () => {
    fake = await startFakeUpstream({ apiKey: PROVIDER_KEY });
    gw = await startGateway(
      baseConfig(fake.url, [team], {
        server: { headersTimeoutMs: HEADERS_TIMEOUT_MS, requestTimeoutMs: REQUEST_TIMEOUT_MS },
      }),
    );
    port = Number(new URL(gw.url).port);
    stalledHeaders = slowClient('GET /v1/models HTTP/1.1\r\nHost: gateway\r\n');
    tricklingHeaders = slowClient('GET /v1/models HTTP/1.1\r\n', 'X-Drip: a\r\n');
    silentConnection = slowClient('');
    stalledBody = slowClient(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n${auth}Content-Type: application/json\r\n` +
        'Content-Length: 200\r\n\r\n{"model"',
    );
    normalClients = Promise.all([
      exchange(port, get('/v1/models', auth)),
      exchange(port, post('/v1/chat/completions', chatBody(), auth)),
    ]);
    idleKeepAlive = keepAliveTwice();
    // Eight chunks 450 ms apart: the response outlasts requestTimeoutMs and Node's next check.
    const slowStream = chatBody('gpt-4o-mini', { stream: true, x_fake: { chunks: 8, chunkDelayMs: 450 } });
    longStream = exchange(port, post('/v1/chat/completions', slowStream, auth), { timeoutMs: 8_000 });
  });
  after(async () => {
    await gw.close();
    await fake.close();
  });

  it('applies server.headersTimeoutMs and server.requestTimeoutMs to the HTTP server', () => {
    const server = gw.gateway.app.server;
    assert.equal(server.headersTimeout, HEADERS_TIMEOUT_MS);
    assert.equal(server.requestTimeout, REQUEST_TIMEOUT_MS);
  });

  for (const [what, result] of [
    ['a client that sends the request line and one header, then nothing', () => stalledHeaders],
    ['a client that keeps sending a header line every 150 ms, never the end', () => tricklingHeaders],
    ['a connection that sends nothing at all', () => silentConnection],
  ] as const) {
    it(`disconnects ${what} with a 408 after headersTimeoutMs`, async () => {
      const ex = await result();
      assert.ok(ex.closedByServer, `still open after ${Math.round(ex.ms)} ms`);
      assert.ok(
        ex.ms >= HEADERS_TIMEOUT_MS - 50 && ex.ms < HEADERS_BOUND_MS,
        `closed after ${Math.round(ex.ms)} ms`,
      );
      assertOneOpenAIError(ex, 408, 'request_timeout');
    });
  }

  it('disconnects a client whose body stalls with a 408 after requestTimeoutMs, before any upstream call', async () => {
    const ex = await stalledBody;
    assert.ok(ex.closedByServer, `still open after ${Math.round(ex.ms)} ms`);
    assert.ok(
      ex.ms >= REQUEST_TIMEOUT_MS - 50 && ex.ms < REQUEST_BOUND_MS,
      `closed after ${Math.round(ex.ms)} ms`,
    );
    assertOneOpenAIError(ex, 408, 'request_timeout');
    // Only the other clients' complete bodies went upstream, never part of this one.
    assert.ok(fake.requests.every((r) => r.body !== undefined));
  });

  it('serves normal clients at once while slow ones are held', async () => {
    const answered = await normalClients;
    for (const ex of answered) {
      assert.equal(parseResponses(ex.raw)[0]?.status, 200);
      assert.ok(ex.ms < HEADERS_TIMEOUT_MS, `${Math.round(ex.ms)} ms`);
    }
  });

  it('leaves a keep-alive connection idle for longer than headersTimeoutMs open for its next request', async () => {
    // Between requests keepAliveTimeout governs, not headersTimeout: a silent kept-alive
    // connection is not a slow request.
    const ex = await idleKeepAlive;
    assert.deepEqual(
      parseResponses(ex.raw).map((r) => r.status),
      [200, 200],
    );
  });

  it('bounds receiving the request only: a stream that outlasts requestTimeoutMs ends normally', async () => {
    const ex = await longStream;
    assert.ok(ex.ms > REQUEST_TIMEOUT_MS + 1_000, `${Math.round(ex.ms)} ms`);
    assert.ok(parseResponses(ex.raw)[0]?.body.endsWith('data: [DONE]\n\n'), ex.raw.slice(-200));
  });

  it('defaults to 10 s for headers and 60 s for the whole request, and refuses headers longer than the request', () => {
    const parse = (server: Record<string, unknown>) =>
      parseConfig(stringify(baseConfig('http://127.0.0.1:1/v1', [team], { server })), 'test', {});
    const defaults = parse({}).server;
    assert.equal(defaults.headersTimeoutMs, 10_000);
    assert.equal(defaults.requestTimeoutMs, 60_000);
    assert.throws(
      () => parse({ headersTimeoutMs: 61_000 }),
      (err: unknown) =>
        err instanceof ConfigError && err.problems.some((p) => p.startsWith('server.headersTimeoutMs')),
    );
    assert.throws(() => parse({ headersTimeoutMs: 0 }), ConfigError);
  });
});
