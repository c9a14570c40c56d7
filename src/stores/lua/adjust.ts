// The adjust script: reconciles reservations with what was really used. Adds each cost to its
// bucket (a negative cost refunds, capped at capacity; a positive one charges an overage and
// may drive the bucket below zero, so later takes wait for it). Never refuses.
import { BUCKET_LUA } from './bucket.js';

/**
 * KEYS: the bucket keys (one hash tag). ARGV: capacity, refill per second and cost per key.
 * Returns remaining (string) and resetMs (string) per bucket, flattened in KEYS order.
 */
export const ADJUST_LUA = `${BUCKET_LUA}
local reply = {}
for i = 1, #KEYS do
  local capacity = tonumber(ARGV[3 * i - 2])
  local rate = tonumber(ARGV[3 * i - 1])
  local cost = tonumber(ARGV[3 * i])
  local tokens = math.min(capacity, level(KEYS[i], capacity, rate) - cost)
  reply[2 * i - 1] = store(KEYS[i], capacity, rate, tokens) or fmt(tokens)
  reply[2 * i] = fmt(reset_ms(capacity, rate, tokens))
end
return reply
`;
