// Public types of the fake OpenAI upstream: server options, the scripting vocabulary tests use to
// inject failures, and the shape of what the server records. Kept apart from server.ts so that
// tests and the demo can import types without pulling in the implementation.

export interface FakeUpstreamOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to 127.0.0.1. */
  host?: string;
  /** When set, every request must carry `Authorization: Bearer <apiKey>` or gets OpenAI's 401. */
  apiKey?: string;
  /** Delay before the response headers, for every answer. Default 0. */
  latencyMs?: number;
  /** Number of generated content pieces (= completion tokens per choice). Default 5. */
  chunks?: number;
  /** Delay between stream chunks. Default 0. */
  chunkDelayMs?: number;
  /** Embedding length when the request has no `dimensions`. Default 8. */
  embeddingDimensions?: number;
  /**
   * Keep every request in `requests`. Default true; turn it off for long benchmark runs, where the
   * log would grow without bound.
   */
  recordRequests?: boolean;
}

export interface RecordedRequest {
  method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Lowercased names; repeated headers joined with `, `. */
  headers: Record<string, string>;
  /** Parsed JSON body, or undefined when the body was empty or not valid JSON. */
  body: unknown;
  rawBody: string;
  /** Date.now() when the request arrived. */
  at: number;
}

export interface ClientAbortInfo {
  path: string;
  /** Date.now() when the server saw the connection go away. */
  at: number;
}

interface ScriptedBase {
  /** Overrides the server/request latency for this answer only. */
  latencyMs?: number;
}

/** An OpenAI-style error. Unset message/type/code/param get OpenAI's defaults for the status. */
export interface ScriptedError extends ScriptedBase {
  kind: 'error';
  status: number;
  /** Sent verbatim instead of the generated `{"error":{...}}` (strings as-is, anything else as JSON). */
  body?: unknown;
  /** Added to (and overriding) the default headers, e.g. `retry-after`, `retry-after-ms`. */
  headers?: Record<string, string>;
  type?: string;
  code?: string | null;
  message?: string;
  param?: string | null;
}

/** Destroys the connection (TCP reset) before any byte of the response is sent. */
export interface ScriptedReset extends ScriptedBase {
  kind: 'reset';
}

/** Never answers; the request stays open until the client gives up or the server closes. */
export interface ScriptedStall {
  kind: 'stall';
}

/** A success answer. Without `body` the normal generated response is sent (with `status`/`headers`). */
export interface ScriptedOk extends ScriptedBase {
  kind: 'ok';
  body?: unknown;
  status?: number;
  headers?: Record<string, string>;
}

/** Exactly these bytes; content-type defaults to application/json unless `headers` sets one. */
export interface ScriptedRaw extends ScriptedBase {
  kind: 'raw';
  status?: number;
  headers?: Record<string, string>;
  text: string;
}

/**
 * A chat completion stream, whatever the request's `stream` flag. Frames are counted in `data:`
 * events including the final `[DONE]`; `cutAfter: k` closes the connection after k frames, `stallAfter: k`
 * stops after k frames and keeps the connection open. `events` replaces the generated frames with
 * these payloads (each sent as `data: X\n\n`; no `[DONE]` is added, include it if you want one).
 */
export interface ScriptedStream extends ScriptedBase {
  kind: 'stream';
  chunks?: number;
  chunkDelayMs?: number;
  cutAfter?: number;
  stallAfter?: number;
  events?: string[];
  headers?: Record<string, string>;
}

export type ScriptedAnswer =
  ScriptedError | ScriptedReset | ScriptedStall | ScriptedOk | ScriptedRaw | ScriptedStream;

/** Per-request overrides, from the body's `x_fake` object or `x-fake-*` headers. */
export interface FakeOverrides {
  latencyMs?: number;
  chunks?: number;
  chunkDelayMs?: number;
  parallel_tools?: boolean;
}

export interface FakeUpstream {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:41234/v1`. */
  readonly url: string;
  readonly port: number;
  /** Requests in arrival order (empty when `recordRequests` is false). */
  readonly requests: RecordedRequest[];
  /** Every client abort seen since start or the last reset(). */
  readonly aborts: ClientAbortInfo[];
  /** Requests received and not yet finished or closed. */
  readonly inFlight: number;
  /** Scripted answers not yet consumed. */
  readonly pendingScripts: number;
  /** Queue answers, consumed one per POST request, in order; afterwards normal behaviour resumes. */
  script(...answers: ScriptedAnswer[]): void;
  /** Clears recorded requests, aborts and the script queue. */
  reset(): void;
  /**
   * Resolves with the time of the next client abort not yet returned by an earlier call (aborts that
   * happened before the call count), or rejects after timeoutMs (default 2000).
   */
  waitForAbort(timeoutMs?: number): Promise<number>;
  /** Stops listening and destroys every open connection, so nothing keeps the process alive. */
  close(): Promise<void>;
  on(event: 'clientAborted', listener: (info: ClientAbortInfo) => void): this;
  on(event: 'request', listener: (request: RecordedRequest) => void): this;
  once(event: 'clientAborted', listener: (info: ClientAbortInfo) => void): this;
  once(event: 'request', listener: (request: RecordedRequest) => void): this;
  off(event: 'clientAborted', listener: (info: ClientAbortInfo) => void): this;
  off(event: 'request', listener: (request: RecordedRequest) => void): this;
}
