// The id a request holds shared state under: its concurrency slot and its budget reservation.
// Not the request id: a client may send its own x-request-id (and reuse it, for a retry or a
// fan-out), and two requests in flight under one id would share a slot (the concurrency limit
// passed) and overwrite each other's reservation (the budget undercounted). Unique across
// replicas: a random per-process prefix and a counter.
import { randomUUID } from 'node:crypto';
import type { PipelineContext } from './types.js';

const PROCESS = randomUUID();
let issued = 0;

/** The request's holder id, made on first use. */
export function holderId(ctx: PipelineContext): string {
  return (ctx.holderId ??= `${PROCESS}.${(++issued).toString(36)}`);
}

/** A holder id of its own, for an admission made before its request arrives (limits/ahead.ts). */
export function newHolderId(): string {
  return `${PROCESS}.${(++issued).toString(36)}`;
}
