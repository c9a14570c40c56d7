// Writes a stream Outcome to the client socket as server-sent events, each chunk as soon as it
// arrives, waiting for 'drain' when the socket's buffer is full (backpressure reaches the
// upstream through the async iterator). A successful stream ends with `data: [DONE]`; a
// failure after the headers went out can no longer change the status, so it is sent as one
// OpenAI-shaped error event and the stream ends WITHOUT [DONE]: never a silent, truncated success.
import type { ServerResponse } from 'node:http';
import type { GatewayError } from '../errors.js';
import type { StreamOutcome } from '../pipeline/types.js';
import { encodeSseData, SSE_DONE } from '../providers/sse/encode.js';

export interface SseWriteHooks {
  onFirstChunk(): void;
  /** Maps a mid-stream failure to the error the client sees (and logs it). */
  onError(err: unknown): GatewayError | undefined;
}

export async function writeSse(
  res: ServerResponse,
  headers: Record<string, string | number | string[]>,
  outcome: StreamOutcome,
  hooks: SseWriteHooks,
): Promise<void> {
  res.writeHead(outcome.status, {
    ...headers,
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    // Tells nginx-style proxies in front of us not to buffer the stream.
    'x-accel-buffering': 'no',
  });
  // The headers and the first chunk in one write: the pipeline hands over a stream whose first
  // chunk is already read (attempts peeks it), and sending the headers on their own cost every
  // stream a syscall of its own. Released after that chunk, or after this turn when no chunk is
  // ready by then, so the headers never wait on one that is not there yet.
  res.cork();
  res.flushHeaders();
  let corked = true;
  const release = (): void => {
    if (!corked) return;
    corked = false;
    clearImmediate(fallback);
    res.uncork();
  };
  const fallback = setImmediate(release);
  let first = true;
  try {
    for await (const chunk of outcome.chunks) {
      if (res.destroyed) break;
      if (first) {
        first = false;
        hooks.onFirstChunk();
      }
      const ok = res.write(encodeSseData(chunk.data));
      release();
      if (!ok) await drained(res);
    }
    release();
    if (!res.destroyed) res.end(SSE_DONE);
  } catch (err) {
    release();
    const visible = hooks.onError(err);
    if (!res.destroyed) {
      if (visible) res.end(encodeSseData(JSON.stringify(visible.toBody())));
      else res.end();
    }
  }
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
