// The finish script: a finished request's settle (budget.ts SETTLE_LUA: its reservation released,
// its spend added) together with its token reconciliation (adjust.ts) and its concurrency slot's
// release, in one call. All the keys are the team's, under its hash tag. Three round trips after
// each response become one; the arithmetic is the other scripts', unchanged.
import { BUCKET_LUA } from './bucket.js';
import { REAP } from './budget.js';

/**
 * KEYS: lease set, lease amounts hash, ni counter hashes, na bucket keys, then the slot set when
 * a slot is released, then the cache entry's key when one is stored (standalone Redis only: a
 * cache key has no hash tag, so on a Cluster the entry goes in a SET of its own).
 * ARGV: number of lease ids, the lease ids, ttl ms, ni, na, the slot id ('' for none), the
 * cache entry's ttl ms (0 for none) and value, then per increment: field, by (integer string);
 * then per bucket: capacity, refill per second, cost.
 * Returns each counter's value after its increment.
 */
export const FINISH_LUA = `${REAP}
${BUCKET_LUA}
local ids = tonumber(ARGV[1])
for i = 2, ids + 1 do release(amounts, leases, ARGV[i]) end
local a = ids + 2
local ttl_ms, ni, na, slot_id = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), ARGV[a + 3]
local cache_ttl, cache_value = tonumber(ARGV[a + 4]), ARGV[a + 5]
a = a + 5
local out = {}
for i = 1, ni do
  local key = KEYS[2 + i]
  out[i] = redis.call('HINCRBY', key, ARGV[a + 2 * i - 1], ARGV[a + 2 * i])
  keep(key, ttl_ms)
end
a = a + 2 * ni
for i = 1, na do
  local key = KEYS[2 + ni + i]
  local capacity, rate, cost = tonumber(ARGV[a + 3 * i - 2]), tonumber(ARGV[a + 3 * i - 1]), tonumber(ARGV[a + 3 * i])
  store(key, capacity, rate, math.min(capacity, level(key, capacity, rate) - cost))
end
local k = 3 + ni + na
if slot_id ~= '' then
  redis.call('ZREM', KEYS[k], slot_id)
  k = k + 1
end
if cache_ttl > 0 then redis.call('SET', KEYS[k], cache_value, 'PX', cache_ttl) end
return out
`;
