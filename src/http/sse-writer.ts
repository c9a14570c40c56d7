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
  res.flushHeaders();
  let first = true;
  try {
    for await (const chunk of outcome.chunks) {
      if (res.destroyed) break;
      if (first) {
        first = false;
        hooks.onFirstChunk();
      }
      if (!res.write(encodeSseData(chunk.data))) await drained(res);
    }
    if (!res.destroyed) res.end(SSE_DONE);
  } catch (err) {
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
