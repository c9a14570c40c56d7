// The finish script: finished requests' settle (budget.ts SETTLE_LUA: their reservations
// released, their spend added) together with their token reconciliation (adjust.ts), their
// concurrency slots' release and their cache entries, in one call. All the keys but the cache
// entries' are one team's, under its hash tag. RedisStore sends one call per team per turn of the
// event loop for every request of that team that finished in it; the arithmetic is the other
// scripts', unchanged.
import { BUCKET_LUA } from './bucket.js';
import { REAP } from './budget.js';

/**
 * KEYS: lease set, lease amounts hash, ni counter hashes, na bucket keys, ns slot sets, then nc
 * cache entries' keys (standalone Redis only: a cache key has no hash tag, so on a Cluster each
 * entry goes in a SET of its own).
 * ARGV: number of lease ids, the lease ids, ttl ms, ni, na, ns, nc, then per increment: field,
 * by (integer string); per bucket: capacity, refill per second, cost; per slot set: the number of
 * its ids, then the ids; per cache entry: ttl ms, value.
 * Returns each counter's value after its increment.
 */
export const FINISH_LUA = `${REAP}
${BUCKET_LUA}
local ids = tonumber(ARGV[1])
for i = 2, ids + 1 do release(amounts, leases, ARGV[i]) end
local a = ids + 2
local ttl_ms, ni, na, ns, nc = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
a = a + 4
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
a = a + 3 * na
local k = 2 + ni + na
for i = 1, ns do
  local n = tonumber(ARGV[a + 1])
  redis.call('ZREM', KEYS[k + i], unpack(ARGV, a + 2, a + 1 + n))
  a = a + 1 + n
end
k = k + ns
for i = 1, nc do
  redis.call('SET', KEYS[k + i], ARGV[a + 2], 'PX', ARGV[a + 1])
  a = a + 2
end
return out
`;
