// The take script: pays several buckets all-or-nothing, atomically (see bucket.ts for the
// representation). Either every bucket can pay its cost now and all are charged, or none is
// charged and the answer says how long the caller must wait and which bucket made it wait.
import { BUCKET_LUA } from './bucket.js';

/**
 * KEYS: the bucket keys (one hash tag, so Cluster runs them on one node).
 * ARGV: capacity, refill per second and cost for each key, in KEYS order.
 * Returns { admitted (1|0), retryAfterMs (string), limiting (0-based, -1 when admitted),
 * then remaining (string) and resetMs (string) per bucket }.
 */
export const TAKE_LUA = `${BUCKET_LUA}
local n = #KEYS
local b = check_buckets(0, 0, n)
local admitted = b.limiting == -1
local reply = {admitted and 1 or 0, admitted and '0' or fmt(b.retry_ms), b.limiting}
bucket_reply(reply, 3, 0, b, n, admitted)
return reply
`;
