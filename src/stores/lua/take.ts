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
local capacity, rate, cost, levels = {}, {}, {}, {}
local retry_ms, limiting = 0, -1
for i = 1, n do
  capacity[i] = tonumber(ARGV[3 * i - 2])
  rate[i] = tonumber(ARGV[3 * i - 1])
  cost[i] = tonumber(ARGV[3 * i])
  levels[i] = level(KEYS[i], capacity[i], rate[i])
  local short = cost[i] - levels[i]
  if short > 0 then
    local wait_ms = math.ceil(short / rate[i] * 1000)
    -- The first bucket among equals names the wait, as in MemoryStore.
    if wait_ms > retry_ms or limiting == -1 then
      retry_ms = wait_ms
      limiting = i - 1
    end
  end
end

local reply = {}
if limiting ~= -1 then
  reply[1], reply[2], reply[3] = 0, fmt(retry_ms), limiting
  for i = 1, n do
    reply[2 + 2 * i] = fmt(levels[i])
    reply[3 + 2 * i] = fmt(reset_ms(capacity[i], rate[i], levels[i]))
  end
  return reply
end

reply[1], reply[2], reply[3] = 1, '0', -1
for i = 1, n do
  local tokens = math.min(capacity[i], levels[i] - cost[i])
  store(KEYS[i], capacity[i], rate[i], tokens)
  reply[2 + 2 * i] = fmt(tokens)
  reply[3 + 2 * i] = fmt(reset_ms(capacity[i], rate[i], tokens))
end
return reply
`;
