// The Anthropic provider against a tiny scripted Messages API on port 0: what goes upstream
// (path, headers, translated body) and what comes back (Outcome, usage, errors).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { ProviderConfig } from '../../../../src/config/schema.js';
import { GatewayError, UpstreamError } from '../../../../src/errors.js';
import { createAnthropicProvider } from '../../../../src/providers/anthropic/provider.js';
import type { PipelineContext, StreamOutcome } from '../../../../src/pipeline/types.js';
import type { Provider } from '../../../../src/providers/types.js';
import { Canceller } from '../../../../src/pipeline/abort.js';

const fixture = (name: string): string =>
  readFileSync(new URL(`../../../../src/providers/anthropic/fixtures/${name}`, import.meta.url), 'utf8');
const NOW = 1_700_000_000;
const TARGET = {
  id: 'anthropic/claude-sonnet-4-5-20250929',
  provider: 'anthropic',
  model: 'claude-sonnet-4-5-20250929',
};

interface Seen {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: any;
}
let seen: Seen[] = [];
let reply: { status: number; headers: Record<string, string>; body: string } = {
  status: 200,
  headers: {},
  body: '',
};
let server: Server;
let provider: Provider;

function ctx(body: Record<string, unknown>, over: Partial<PipelineContext> = {}): PipelineContext {
  return {
    reqId: 'r1',
    endpoint: 'chat',
    model: 'claude',
    body,
    rawBody: Buffer.from(JSON.stringify(body)),
    stream: body.stream === true,
    clientWantsUsage: false,
    headers: {},
    logFields: {},
    signal: new Canceller(),
    candidates: [],
    deployment: undefined,
    attempts: 0,
    ...over,
  } as unknown as PipelineContext;
}

async function collect(outcome: StreamOutcome): Promise<any[]> {
  const out: any[] = [];
  for await (const c of outcome.chunks) out.push(JSON.parse(c.data));
  return out;
}

describe('createAnthropicProvider', () => {
  before(async () => {
    server = createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body: JSON.parse(text) });
        res.writeHead(reply.status, reply.headers);
        res.end(reply.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const config: ProviderConfig = {
      name: 'anthropic',
      type: 'anthropic',
      baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
      apiKey: 'sk-ant-test',
      headers: { 'anthropic-beta': 'prompt-caching-2024-07-31' },
      timeouts: { connectMs: 1000, firstByteMs: 2000, idleMs: 2000, totalMs: 5000 },
      connections: null,
      maxResponseBytes: 1 << 20,
      apiVersion: undefined,
    };
    provider = createAnthropicProvider(config, { now: () => NOW });
  });
  after(async () => {
    await provider.close();
    await new Promise((resolve) => server.close(resolve));
  });
  beforeEach(() => {
    seen = [];
  });

  it('posts the translated body to /v1/messages with the key and version headers', async () => {
    reply = {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: fixture('text.response.json'),
    };
    const outcome = await provider.call(ctx(JSON.parse(fixture('tool-use.openai-request.json'))), TARGET);
    assert.equal(seen.length, 1);
    const [req] = seen;
    assert.equal(req!.method, 'POST');
    assert.equal(req!.url, '/v1/messages');
    assert.equal(req!.headers['x-api-key'], 'sk-ant-test');
    assert.equal(req!.headers['anthropic-version'], '2023-06-01');
    assert.equal(req!.headers['anthropic-beta'], 'prompt-caching-2024-07-31');
    assert.equal(req!.headers.authorization, undefined);
    assert.deepEqual(req!.body, JSON.parse(fixture('tool-use.anthropic-request.json')));
    assert.equal(outcome.kind, 'json');
  });

  it('answers a JSON request with a chat.completion body and OpenAI usage', async () => {
    reply = {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: fixture('text.response.json'),
    };
    const outcome = await provider.call(
      ctx({ model: 'claude', messages: [{ role: 'user', content: 'hi' }] }),
      TARGET,
    );
    assert.equal(outcome.kind, 'json');
    if (outcome.kind !== 'json') return;
    assert.deepEqual(outcome.body, JSON.parse(fixture('text.openai-response.json')));
    assert.equal(outcome.usage?.total_tokens, 40);
  });

  it('streams OpenAI chunks, hides the usage chunk from a client that did not ask, and settles usage', async () => {
    reply = {
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      body: fixture('prompt-cache.stream.sse'),
    };
    const body = { model: 'claude', messages: [{ role: 'user', content: 'hi' }], stream: true };
    const outcome = (await provider.call(ctx(body), TARGET)) as StreamOutcome;
    assert.equal(seen[0]!.body.stream, true);
    const chunks = await collect(outcome);
    assert.ok(chunks.every((c) => c.choices.length === 1 && !('usage' in c)));
    assert.equal(chunks.map((c) => c.choices[0].delta.content ?? '').join(''), 'Cached answer.');
    assert.equal((await outcome.usage)?.prompt_tokens, 2308);

    const shown = (await provider.call(ctx(body, { clientWantsUsage: true }), TARGET)) as StreamOutcome;
    const withUsage = await collect(shown);
    assert.deepEqual(withUsage[withUsage.length - 1].choices, []);
    assert.equal(withUsage[withUsage.length - 1].usage.completion_tokens, 40);
  });

  it('fails a stream that ends before message_stop with upstream_bad_response', async () => {
    const cut = fixture('text.stream.sse').split('event: message_delta')[0]!;
    reply = { status: 200, headers: { 'content-type': 'text/event-stream' }, body: cut };
    const body = { model: 'claude', messages: [{ role: 'user', content: 'hi' }], stream: true };
    const outcome = (await provider.call(ctx(body), TARGET)) as StreamOutcome;
    await assert.rejects(
      collect(outcome),
      (err: unknown) => err instanceof UpstreamError && err.code === 'upstream_bad_response',
    );
    assert.equal(await outcome.usage, undefined);
  });

  it('throws the mapped error of a non-2xx answer', async () => {
    reply = {
      status: 529,
      headers: { 'content-type': 'application/json', 'retry-after': '2' },
      body: fixture('error-overloaded.json'),
    };
    await assert.rejects(
      provider.call(ctx({ model: 'claude', messages: [{ role: 'user', content: 'hi' }] }), TARGET),
      (err: unknown) =>
        err instanceof UpstreamError && err.status === 503 && err.retryable && err.retryAfterMs === 2000,
    );
  });

  it('refuses untranslatable requests and embeddings with a 400 before calling upstream', async () => {
    await assert.rejects(
      provider.call(ctx({ model: 'claude', messages: [{ role: 'user', content: 'hi' }], n: 3 }), TARGET),
      (err: unknown) => err instanceof GatewayError && err.status === 400 && err.param === 'n',
    );
    await assert.rejects(
      provider.call(ctx({ model: 'claude', input: 'hi' }, { endpoint: 'embeddings' }), TARGET),
      (err: unknown) =>
        err instanceof GatewayError &&
        err.status === 400 &&
        err.code === 'unsupported_parameter' &&
        err.param === 'model',
    );
    assert.equal(seen.length, 0);
  });
});
