// Public types of the fake upstream (OpenAI, plus Anthropic's Messages API on /v1/messages): server
// options, the scripting vocabulary tests use to inject failures, and the shape of what the server
// records. Kept apart from server.ts so that tests and the demo can import types without pulling in
// the implementation.

export interface FakeUpstreamOptions {
  /** 0 (the default) picks a free port. */
  port?: number;
  /** Defaults to 127.0.0.1. */
  host?: string;
  /**
   * When set, every request must carry `Authorization: Bearer <apiKey>` or gets OpenAI's 401;
   * `/v1/messages` wants `x-api-key: <apiKey>` instead and answers Anthropic's 401.
   */
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

/**
 * An error in the shape of the route: OpenAI's `{"error":{...}}`, or on `/v1/messages` Anthropic's
 * `{"type":"error","error":{"type","message"},"request_id"}` (there `code` and `param` are unused). Unset
 * fields get the provider's usual values for the status.
 */
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

/** One raw SSE event of `ScriptedStream.events`: `event: <event>\n` when set, then `data: <data>\n\n`. */
export interface ScriptedEvent {
  event?: string;
  /** Strings as-is, anything else as JSON. */
  data: unknown;
}

/**
 * A stream in the route's format (chat completion chunks, or Anthropic's named events on
 * `/v1/messages`), whatever the request's `stream` flag. Frames are counted in SSE events, including
 * OpenAI's final `[DONE]`; `cutAfter: k` closes the connection after k frames, `stallAfter: k` stops
 * after k frames and keeps the connection open. `events` replaces the generated frames with these
 * events (a string is sent as `data: X\n\n`; no `[DONE]` is added, include it if you want one).
 */
export interface ScriptedStream extends ScriptedBase {
  kind: 'stream';
  chunks?: number;
  chunkDelayMs?: number;
  cutAfter?: number;
  stallAfter?: number;
  events?: (string | ScriptedEvent)[];
  /**
   * After k frames, send a mid-stream error event and end the stream cleanly. Anthropic:
   * `event: error` with `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`;
   * OpenAI: `data: {"error":{...server_error...}}`. Counted as a frame by `cutAfter`/`stallAfter`.
   */
  errorAfter?: number;
  /** Type and message of the `errorAfter` error. */
  error?: { type?: string; message?: string };
  headers?: Record<string, string>;
}

export type ScriptedAnswer =
  ScriptedError | ScriptedReset | ScriptedStall | ScriptedOk | ScriptedRaw | ScriptedStream;

/**
 * Per-request overrides, from the body's `x_fake` object or `x-fake-*` headers (on `/v1/messages` only
 * the headers: Anthropic's strict schema rejects unknown body fields, `x_fake` included).
 */
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
  /** Clears recorded requests, aborts, the script queue and the Anthropic prompt cache. */
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
