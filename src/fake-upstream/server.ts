// A small node:http server that impersonates the OpenAI API (chat completions, embeddings, models)
// and Anthropic's Messages API (/v1/messages) for integration tests, the demo and the benchmark. Tests
// can script failures (errors, resets, stalls, cut streams), read back what was sent, and observe
// client aborts.
import { EventEmitter } from 'node:events';
import { createServer } from 'node:http';
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  OutgoingHttpHeaders,
  Server,
  ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Answer, Extra, StreamAnswer } from './answer.js';
import {
  MESSAGES_PATH,
  anthropicAuthAnswer,
  anthropicErrorAnswer,
  anthropicHeaders,
  messageId,
  messagesAnswer,
  planMessages,
  renderMessagesStream,
} from './anthropic.js';
import { PromptCache } from './prompt-cache.js';
import {
  INVALID_JSON_ERROR,
  MODELS_BODY,
  buildEmbeddings,
  errorBody,
  invalidKeyError,
  invalidUrl,
  isRecord,
  modelBody,
  planChat,
  randomId,
  renderChatCompletion,
  renderChatStream,
  requestId,
  validateChat,
} from './responses.js';
import type { ErrorFields } from './responses.js';
import { scriptedAnswer } from './scripted.js';
import type {
  ClientAbortInfo,
  FakeUpstream,
  FakeUpstreamOptions,
  RecordedRequest,
  ScriptedAnswer,
} from './types.js';

export type {
  ClientAbortInfo,
  FakeOverrides,
  FakeUpstream,
  FakeUpstreamOptions,
  RecordedRequest,
  ScriptedAnswer,
  ScriptedError,
  ScriptedEvent,
  ScriptedOk,
  ScriptedRaw,
  ScriptedReset,
  ScriptedStall,
  ScriptedStream,
} from './types.js';

type Events = { clientAborted: [ClientAbortInfo]; request: [RecordedRequest] };

interface Settings {
  port: number;
  host: string;
  apiKey: string | undefined;
  latencyMs: number;
  chunks: number;
  chunkDelayMs: number;
  embeddingDimensions: number;
  recordRequests: boolean;
}

interface Knobs {
  latencyMs: number;
  chunks: number;
  chunkDelayMs: number;
  parallelTools: boolean;
}

/** Per-request state shared between the handler and the response's 'close' listener. */
interface Ctx {
  path: string;
  started: number;
  closed: boolean;
  /** Set when the server itself drops the connection, so that it is not reported as a client abort. */
  selfClosed: boolean;
}

interface Waiter {
  resolve: (at: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const AZURE_PATH = /^\/openai\/deployments\/[^/]+\/(chat\/completions|embeddings)$/;
const MAX_CHUNKS = 100_000;

// Static part of every response's headers; only the id and timing vary per request.
const STATIC_HEADERS = {
  'openai-version': '2020-10-01',
  'openai-organization': 'org-fake',
  'x-ratelimit-limit-requests': '10000',
  'x-ratelimit-limit-tokens': '30000000',
  'x-ratelimit-remaining-requests': '9999',
  'x-ratelimit-remaining-tokens': '29999000',
  'x-ratelimit-reset-requests': '1s',
  'x-ratelimit-reset-tokens': '6m0s',
} as const;

function nonNegInt(v: unknown, fallback: number): number {
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.floor(n) : fallback;
}

function flattenHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

function bearer(h: string | undefined): string | undefined {
  if (!h || !/^bearer /i.test(h)) return undefined;
  return h.slice(7).trim() || undefined;
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

function ignore(): void {}

class FakeUpstreamServer extends EventEmitter<Events> implements FakeUpstream {
  readonly requests: RecordedRequest[] = [];
  readonly aborts: ClientAbortInfo[] = [];
  private readonly settings: Settings;
  private readonly server: Server;
  private readonly queue: ScriptedAnswer[] = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly waiters: Waiter[] = [];
  private readonly promptCache = new PromptCache();
  private abortCursor = 0;
  private active = 0;
  private closing = false;
  private closePromise: Promise<void> | undefined;
  private boundPort = 0;

  constructor(settings: Settings) {
    super();
    this.settings = settings;
    this.server = createServer({ noDelay: true, keepAliveTimeout: 65_000 }, (req, res) =>
      this.onRequest(req, res),
    );
    // Keep-alive as generous as OpenAI's edge so that benchmark connections are reused, never recycled.
    this.server.keepAliveTimeout = 65_000;
    this.server.headersTimeout = 66_000;
    this.server.maxRequestsPerSocket = 0;
  }

  get port(): number {
    return this.boundPort;
  }

  get url(): string {
    let host = this.settings.host;
    if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
    else if (host === '::') host = '::1';
    return `http://${host.includes(':') ? `[${host}]` : host}:${this.boundPort}/v1`;
  }

  get inFlight(): number {
    return this.active;
  }

  get pendingScripts(): number {
    return this.queue.length;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.settings.port, this.settings.host, () => {
        this.server.off('error', reject);
        this.boundPort = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  script(...answers: ScriptedAnswer[]): void {
    this.queue.push(...answers);
  }

  reset(): void {
    this.requests.length = 0;
    this.queue.length = 0;
    this.aborts.length = 0;
    this.abortCursor = 0;
    this.promptCache.clear();
  }

  waitForAbort(timeoutMs = 2000): Promise<number> {
    const seen = this.aborts[this.abortCursor];
    if (seen) {
      this.abortCursor++;
      return Promise.resolve(seen.at);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(waiter);
          if (i !== -1) this.waiters.splice(i, 1);
          reject(new Error(`no client abort within ${timeoutMs}ms`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  close(): Promise<void> {
    if (!this.closePromise) {
      this.closing = true;
      for (const t of this.timers) clearTimeout(t);
      this.timers.clear();
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error('fake upstream closed'));
      }
      this.closePromise = new Promise((resolve) => {
        this.server.close(() => resolve());
        this.server.closeAllConnections();
      });
    }
    return this.closePromise;
  }

  // -------------------------------------------------------------------------------------------

  private sleep(ms: number): Promise<void> {
    // Tracked so close() can cancel them: a pending long latency must not keep a test process alive.
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  private recordAbort(path: string): void {
    const info: ClientAbortInfo = { path, at: Date.now() };
    this.aborts.push(info);
    const waiter = this.waiters.shift();
    if (waiter) {
      this.abortCursor++;
      clearTimeout(waiter.timer);
      waiter.resolve(info.at);
    }
    this.emit('clientAborted', info);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const ctx: Ctx = {
      path: q === -1 ? url : url.slice(0, q),
      started: Date.now(),
      closed: false,
      selfClosed: false,
    };
    this.active++;
    res.on('close', () => {
      this.active--;
      ctx.closed = true;
      if (!res.writableFinished && !ctx.selfClosed && !this.closing) this.recordAbort(ctx.path);
    });
    const record: RecordedRequest | undefined = this.settings.recordRequests
      ? {
          method: req.method ?? 'GET',
          path: ctx.path,
          headers: flattenHeaders(req.headers),
          body: undefined,
          rawBody: '',
          at: ctx.started,
        }
      : undefined;
    if (record) this.requests.push(record);
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      raw += chunk;
    });
    // A client that goes away mid-body errors here; the 'close' listener above does the bookkeeping.
    req.on('error', ignore);
    req.on('end', () => {
      this.dispatch(req, res, ctx, raw, record).catch((err: unknown) => this.fail(res, ctx, err));
    });
  }

  private fail(res: ServerResponse, ctx: Ctx, err: unknown): void {
    if (ctx.closed) return;
    if (res.headersSent) {
      ctx.selfClosed = true;
      res.destroy();
      return;
    }
    const message = `fake upstream failure: ${err instanceof Error ? err.message : String(err)}`;
    if (ctx.path === MESSAGES_PATH) {
      const a = anthropicErrorAnswer(500, { type: 'api_error', message });
      if (a.t === 'body') this.sendBody(res, ctx, a.status, a.body, a.headers, a.api);
      return;
    }
    this.sendBody(
      res,
      ctx,
      500,
      errorBody({ message, type: 'server_error', param: null, code: null }),
      undefined,
    );
  }

  private knobs(headers: IncomingHttpHeaders, body: unknown): Knobs {
    const s = this.settings;
    let latencyMs = nonNegInt(headers['x-fake-latency-ms'], s.latencyMs);
    let chunks = nonNegInt(headers['x-fake-chunks'], s.chunks);
    let chunkDelayMs = nonNegInt(headers['x-fake-chunk-delay-ms'], s.chunkDelayMs);
    let parallelTools = headers['x-fake-parallel-tools'] === 'true';
    if (isRecord(body) && isRecord(body.x_fake)) {
      const x = body.x_fake;
      latencyMs = nonNegInt(x.latencyMs, latencyMs);
      chunks = nonNegInt(x.chunks, chunks);
      chunkDelayMs = nonNegInt(x.chunkDelayMs, chunkDelayMs);
      if (typeof x.parallel_tools === 'boolean') parallelTools = x.parallel_tools;
    }
    return { latencyMs, chunks: Math.min(chunks, MAX_CHUNKS), chunkDelayMs, parallelTools };
  }

  private async dispatch(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: Ctx,
    raw: string,
    record: RecordedRequest | undefined,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    let body: unknown;
    let badJson = false;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        badJson = true;
      }
    }
    if (record) {
      record.body = body;
      record.rawBody = raw;
      this.emit('request', record);
    }
    const anthropic = ctx.path === MESSAGES_PATH;
    // Azure OpenAI: the same bodies under /openai/deployments/{name}/..., key in `api-key`.
    const azure = AZURE_PATH.exec(ctx.path);
    const routePath = azure ? `/v1/${azure[1]}` : ctx.path;
    // Anthropic's strict schema would reject a body `x_fake`, so /v1/messages takes headers only.
    const knobs = this.knobs(req.headers, anthropic ? undefined : body);
    const apiKey = this.settings.apiKey;
    const sentKey = anthropic
      ? firstHeader(req.headers['x-api-key'])
      : azure
        ? firstHeader(req.headers['api-key'])
        : bearer(req.headers.authorization);

    let answer: Answer;
    let latencyMs = knobs.latencyMs;
    if (apiKey !== undefined && sentKey !== apiKey) {
      answer = anthropic
        ? anthropicAuthAnswer(sentKey)
        : { t: 'body', status: 401, body: errorBody(invalidKeyError(sentKey)), headers: undefined };
    } else {
      const scripted = method === 'POST' ? this.queue.shift() : undefined;
      if (scripted && scripted.kind !== 'stall' && scripted.latencyMs !== undefined)
        latencyMs = scripted.latencyMs;
      answer = scripted
        ? scriptedAnswer(scripted, {
            anthropic,
            body,
            chunkDelayMs: knobs.chunkDelayMs,
            sentKey,
            normal: () => this.route(req, routePath, body, badJson, knobs),
            streamFrames: (chunks) => this.streamFrames(anthropic, body, knobs, chunks),
          })
        : azure && !/[?&]api-version=/.test(req.url ?? '')
          ? this.error(404, {
              message: 'Resource not found',
              type: 'invalid_request_error',
              param: null,
              code: '404',
            })
          : this.route(req, routePath, body, badJson, knobs);
    }

    if (answer.t === 'stall') return;
    if (latencyMs > 0) {
      await this.sleep(latencyMs);
      if (ctx.closed) return;
    }
    switch (answer.t) {
      case 'reset': {
        ctx.selfClosed = true;
        const sock = req.socket;
        // A TCP RST is what a crashed or overloaded upstream looks like to the client (ECONNRESET).
        if (typeof sock.resetAndDestroy === 'function' && !sock.destroyed) sock.resetAndDestroy();
        else sock.destroy();
        return;
      }
      case 'body':
        this.sendBody(res, ctx, answer.status, answer.body, answer.headers, answer.api);
        return;
      case 'stream':
        await this.sendStream(res, ctx, answer);
        return;
    }
  }

  private route(req: IncomingMessage, path: string, body: unknown, badJson: boolean, knobs: Knobs): Answer {
    const method = req.method ?? 'GET';
    if (method === 'POST' && path === '/v1/chat/completions') return this.chat(body, badJson, knobs);
    if (method === 'POST' && path === MESSAGES_PATH) {
      return messagesAnswer(req.headers, body, badJson, knobs, this.promptCache);
    }
    if (method === 'POST' && path === '/v1/embeddings') {
      if (badJson) return this.error(400, INVALID_JSON_ERROR);
      const built = buildEmbeddings(body, this.settings.embeddingDimensions);
      return built.ok
        ? { t: 'body', status: 200, body: built.body, headers: undefined }
        : this.error(400, built.error);
    }
    if (method === 'GET' && path === '/v1/models')
      return { t: 'body', status: 200, body: MODELS_BODY, headers: undefined };
    if (method === 'GET' && path.startsWith('/v1/models/')) {
      const raw = path.slice('/v1/models/'.length);
      let id = raw;
      try {
        id = decodeURIComponent(raw);
      } catch {
        // A malformed escape is just an unknown model id.
      }
      const found = modelBody(id);
      if (found) return { t: 'body', status: 200, body: found, headers: undefined };
      return this.error(404, {
        message: `The model '${id}' does not exist`,
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      });
    }
    return this.error(404, invalidUrl(method, path));
  }

  private error(status: number, e: ErrorFields, headers?: Extra): Answer {
    return { t: 'body', status, body: errorBody(e), headers };
  }

  private chat(body: unknown, badJson: boolean, knobs: Knobs): Answer {
    if (badJson) return this.error(400, INVALID_JSON_ERROR);
    const invalid = validateChat(body);
    if (invalid || !isRecord(body)) return this.error(400, invalid ?? INVALID_JSON_ERROR);
    const plan = planChat(body, knobs);
    const id = randomId('chatcmpl-', 29);
    const created = Math.floor(Date.now() / 1000);
    if (body.stream !== true) {
      return { t: 'body', status: 200, body: renderChatCompletion(plan, id, created), headers: undefined };
    }
    return {
      t: 'stream',
      status: 200,
      frames: renderChatStream(plan, id, created, includeUsage(body)),
      delayMs: knobs.chunkDelayMs,
      cutAfter: undefined,
      stallAfter: undefined,
      headers: undefined,
    };
  }

  /** Generated frames for a scripted stream, in the route's format, whatever the request asked for. */
  private streamFrames(
    anthropic: boolean,
    body: unknown,
    knobs: Knobs,
    chunks: number | undefined,
  ): string[] {
    const b = isRecord(body) ? body : {};
    const k = { ...knobs, chunks: Math.min(chunks ?? knobs.chunks, MAX_CHUNKS) };
    if (anthropic) return renderMessagesStream(planMessages(b, k, this.promptCache), messageId());
    return renderChatStream(
      planChat(b, k),
      randomId('chatcmpl-', 29),
      Math.floor(Date.now() / 1000),
      includeUsage(b),
    );
  }

  private headers(
    ctx: Ctx,
    contentType: string,
    extra: Extra,
    api: 'anthropic' | undefined,
  ): OutgoingHttpHeaders {
    if (api === 'anthropic') return anthropicHeaders(contentType, extra);
    const h: OutgoingHttpHeaders = {
      'content-type': contentType,
      'x-request-id': requestId(),
      'openai-processing-ms': String(Date.now() - ctx.started),
      ...STATIC_HEADERS,
    };
    if (extra) Object.assign(h, extra);
    return h;
  }

  private sendBody(
    res: ServerResponse,
    ctx: Ctx,
    status: number,
    body: string,
    extra: Extra,
    api?: 'anthropic',
  ): void {
    const h = this.headers(ctx, 'application/json', extra, api);
    h['content-length'] = Buffer.byteLength(body);
    res.writeHead(status, h);
    res.end(body);
  }

  private async sendStream(res: ServerResponse, ctx: Ctx, a: StreamAnswer): Promise<void> {
    const h = this.headers(ctx, 'text/event-stream; charset=utf-8', a.headers, a.api);
    h['cache-control'] = 'no-cache';
    res.writeHead(a.status, h);
    res.on('error', ignore);
    const { frames, delayMs } = a;
    const stopAt = Math.min(frames.length, a.cutAfter ?? Infinity, a.stallAfter ?? Infinity);
    // Without delays the frames would go out in one tick anyway; corking turns them into one writev
    // instead of a syscall per frame. With delays every frame is written (and flushed) on its own.
    const batch = delayMs <= 0;
    if (batch) res.cork();
    for (let i = 0; i < stopAt; i++) {
      if (!batch && i > 0) {
        await this.sleep(delayMs);
        if (ctx.closed) return;
      }
      if (!res.write(frames[i]!)) {
        if (batch) res.uncork();
        await drained(res);
        if (ctx.closed) return;
        if (batch) res.cork();
      }
    }
    if (stopAt === frames.length) {
      res.end();
      if (batch) res.uncork();
      return;
    }
    if (batch) res.uncork();
    // headersSent is already true after writeHead(); with no frame written, the headers are still ours.
    if (stopAt === 0) res.flushHeaders();
    if (a.cutAfter !== undefined && a.cutAfter === stopAt) {
      ctx.selfClosed = true;
      const sock = res.socket;
      // end() before destroy() so the frames already written reach the client ahead of the FIN.
      if (sock) sock.end(() => sock.destroy());
    }
    // stallAfter: leave the connection open with nothing more to say.
  }
}

function includeUsage(body: Record<string, unknown>): boolean {
  return isRecord(body.stream_options) && body.stream_options.include_usage === true;
}

export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const server = new FakeUpstreamServer({
    port: options.port ?? 0,
    host: options.host ?? '127.0.0.1',
    apiKey: options.apiKey,
    latencyMs: nonNegInt(options.latencyMs, 0),
    chunks: Math.min(nonNegInt(options.chunks, 5), MAX_CHUNKS),
    chunkDelayMs: nonNegInt(options.chunkDelayMs, 0),
    embeddingDimensions: Math.max(1, nonNegInt(options.embeddingDimensions, 8)),
    recordRequests: options.recordRequests ?? true,
  });
  await server.listen();
  return server;
}
