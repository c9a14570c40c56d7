// One undici Pool per upstream origin, made at start-up, with keep-alive and the provider's
// timeouts: connect (connect.timeout), first byte (headersTimeout), idle between body chunks
// (bodyTimeout) and a total deadline enforced here with a Canceller (undici's `signal`), which
// also carries the client's own abort so a departed client stops the upstream request at once.
import { Pool, type Dispatcher } from 'undici';
import { Canceller, onAbort, type Cancellation } from '../pipeline/abort.js';
import type { ProviderConfig } from '../config/schema.js';
import { errors, UpstreamError } from '../errors.js';

export interface UpstreamRequest {
  path: string;
  headers: Record<string, string>;
  body: Buffer | string;
  /** The client's signal: aborting it aborts the upstream request. */
  signal: Cancellation;
  /** Per-request overrides of the pool's timeouts (a deployment's own, the request deadline). */
  connectMs?: number;
  firstByteMs?: number;
  idleMs?: number;
  totalMs?: number;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: Dispatcher.ResponseData['headers'];
  body: Dispatcher.ResponseData['body'];
  /** Stops the total-deadline timer; call when the body is fully consumed or abandoned. */
  done(): void;
  /** Maps an error thrown while reading the body to a typed UpstreamError. */
  mapError(err: unknown): UpstreamError | ClientAbortedError;
}

/** The client went away: not an upstream failure, nobody is left to answer. */
export class ClientAbortedError extends Error {
  constructor() {
    super('client closed the request');
    this.name = 'ClientAbortedError';
  }
}

const TOTAL_TIMEOUT = Symbol('total-timeout');

export class UpstreamClient {
  private readonly pool: Pool;
  /**
   * undici sets the connect timeout per pool, not per request: a deployment with a connect
   * timeout of its own gets a pool of its own (one per distinct value, made on first use).
   * `connections` caps each pool.
   */
  private readonly connectPools = new Map<number, Pool>();
  private readonly origin: string;
  private readonly basePath: string;

  constructor(private readonly provider: ProviderConfig) {
    const url = new URL(provider.baseUrl);
    this.origin = url.origin;
    this.basePath = url.pathname.replace(/\/+$/, '');
    this.pool = this.makePool(provider.timeouts.connectMs);
  }

  private makePool(connectMs: number): Pool {
    return new Pool(this.origin, {
      connections: this.provider.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      connect: { timeout: connectMs },
      headersTimeout: this.provider.timeouts.firstByteMs,
      bodyTimeout: this.provider.timeouts.idleMs,
    });
  }

  private poolFor(connectMs: number | undefined): Pool {
    if (connectMs === undefined || connectMs === this.provider.timeouts.connectMs) return this.pool;
    let pool = this.connectPools.get(connectMs);
    if (!pool) this.connectPools.set(connectMs, (pool = this.makePool(connectMs)));
    return pool;
  }

  /** Pools in use (the provider's, plus one per deployment connect timeout seen so far). */
  get poolCount(): number {
    return 1 + this.connectPools.size;
  }

  async request(req: UpstreamRequest): Promise<UpstreamResponse> {
    if (req.signal.aborted) throw new ClientAbortedError();
    const controller = new Canceller();
    const stopWatching = onAbort(req.signal, () => controller.abort(new ClientAbortedError()));
    const timer = setTimeout(
      () => controller.abort(TOTAL_TIMEOUT),
      req.totalMs ?? this.provider.timeouts.totalMs,
    );
    const done = (): void => {
      clearTimeout(timer);
      stopWatching();
    };
    const mapError = (err: unknown): UpstreamError | ClientAbortedError => this.mapError(err, controller);
    try {
      const res = await this.poolFor(req.connectMs).request({
        method: 'POST',
        path: this.basePath + req.path,
        headers: req.headers,
        body: req.body,
        signal: controller,
        ...(req.firstByteMs !== undefined ? { headersTimeout: req.firstByteMs } : {}),
        ...(req.idleMs !== undefined ? { bodyTimeout: req.idleMs } : {}),
      });
      return { statusCode: res.statusCode, headers: res.headers, body: res.body, done, mapError };
    } catch (err) {
      done();
      throw mapError(err);
    }
  }

  private mapError(err: unknown, signal: Cancellation): UpstreamError | ClientAbortedError {
    if (err instanceof UpstreamError || err instanceof ClientAbortedError) return err;
    const name = this.provider.name;
    if (signal.aborted) {
      if (signal.reason === TOTAL_TIMEOUT) return errors.upstreamTimeout(name, 'total deadline', err);
      if (signal.reason instanceof ClientAbortedError) return signal.reason;
    }
    const code = (err as { code?: string } | null)?.code;
    switch (code) {
      case 'UND_ERR_CONNECT_TIMEOUT':
        return errors.upstreamTimeout(name, 'connect', err);
      case 'UND_ERR_HEADERS_TIMEOUT':
        return errors.upstreamTimeout(name, 'no response headers in time', err);
      case 'UND_ERR_BODY_TIMEOUT':
        return errors.upstreamTimeout(name, 'the response stalled', err);
      case 'ECONNREFUSED':
        return errors.upstreamUnavailable(name, 'connection refused', err);
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return errors.upstreamUnavailable(name, 'host not found', err);
      case 'ECONNRESET':
      case 'UND_ERR_SOCKET':
      case 'UND_ERR_CLOSED':
      case 'EPIPE':
        return errors.upstreamUnavailable(name, 'connection reset', err);
      default:
        return errors.upstreamUnavailable(name, code ?? 'request failed', err);
    }
  }

  /**
   * The timeouts of one call to `target`: the deployment's own where set, and a total never
   * beyond the request's overall deadline.
   */
  timeoutsFor(
    target: { timeouts?: Partial<ProviderConfig['timeouts']> },
    deadlineAt: number | undefined,
  ): Pick<UpstreamRequest, 'connectMs' | 'firstByteMs' | 'idleMs' | 'totalMs'> {
    const t = target.timeouts;
    const total = t?.totalMs ?? this.provider.timeouts.totalMs;
    const left = deadlineAt === undefined ? total : Math.max(1, deadlineAt - Date.now());
    return {
      ...(t?.connectMs !== undefined ? { connectMs: t.connectMs } : {}),
      ...(t?.firstByteMs !== undefined ? { firstByteMs: t.firstByteMs } : {}),
      ...(t?.idleMs !== undefined ? { idleMs: t.idleMs } : {}),
      totalMs: Math.min(total, left),
    };
  }

  async close(): Promise<void> {
    await Promise.all([this.pool, ...this.connectPools.values()].map((p) => p.close()));
  }

  async destroy(): Promise<void> {
    await Promise.all([this.pool, ...this.connectPools.values()].map((p) => p.destroy()));
  }
}

/** An error body bigger than this is cut: it is only read for its message. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * Turns a non-2xx answer into the provider's mapped error (its body read up to 64 KiB, for the
 * message); a 2xx passes.
 */
export async function rejectUnlessOk(
  res: UpstreamResponse,
  map: (status: number, headers: UpstreamResponse['headers'], bodyText: string) => UpstreamError,
): Promise<void> {
  if (res.statusCode >= 200 && res.statusCode < 300) return;
  const text = await readText(res.body, MAX_ERROR_BODY_BYTES).catch(() => '');
  res.done();
  throw map(res.statusCode, res.headers, text);
}

/** A stream request must be answered with an event stream; anything else is unreadable here. */
export async function expectEventStream(res: UpstreamResponse, providerName: string): Promise<void> {
  const contentType = String(res.headers['content-type'] ?? '');
  if (contentType.includes('text/event-stream')) return;
  await res.body.dump().catch(() => undefined);
  res.done();
  throw errors.upstreamBadResponse(
    providerName,
    `expected an event stream, got '${contentType.slice(0, 60)}'`,
  );
}

/** The answer to a response over the provider's maxResponseBytes. */
export function responseTooLarge(providerName: string, limit: number): UpstreamError {
  return errors.upstreamBadResponse(
    providerName,
    `the response is larger than the provider's maxResponseBytes, ${limit} bytes`,
  );
}

/**
 * A 2xx body read whole, but never more than `limit` bytes: past it (or when Content-Length
 * says so up front) the response is abandoned and the request fails with upstream_bad_response.
 * Finishes the response either way.
 */
export async function readBody(res: UpstreamResponse, limit: number, providerName: string): Promise<Buffer> {
  try {
    if (Number(res.headers['content-length']) > limit) throw responseTooLarge(providerName, limit);
    return await collect(res.body, limit, providerName);
  } catch (err) {
    // Abandoned: the socket goes (undici then reports an AbortError, nobody's business now).
    res.body.on('error', () => {});
    res.body.destroy();
    throw res.mapError(err);
  } finally {
    res.done();
  }
}

/** The body's bytes, by 'data' events (an async iterator costs a promise per chunk). */
function collect(body: UpstreamResponse['body'], limit: number, providerName: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        reject(responseTooLarge(providerName, limit));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, size));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
  });
}

/** Counts a stream's bytes against `limit`; throws responseTooLarge past it. */
export function byteBudget(limit: number, providerName: string): (bytes: Uint8Array) => void {
  let size = 0;
  return (bytes) => {
    size += bytes.length;
    if (size > limit) throw responseTooLarge(providerName, limit);
  };
}

async function readText(body: AsyncIterable<Buffer>, limit: number): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    parts.push(chunk);
    size += chunk.length;
    if (size >= limit) break;
  }
  return Buffer.concat(parts).subarray(0, limit).toString('utf8');
}
