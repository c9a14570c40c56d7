// The budget scripts: counters (spend in micro-dollars, tokens, requests) are integer fields of
// hashes, changed only by HINCRBY, so totals are exact however many replicas add to them. A
// reservation is recorded under a lease: a sorted set of reservation ids scored by the Redis-time
// expiry, and a companion hash id -> what it reserved (JSON). A replica that dies between reserve
// and settle leaves a reservation that the next reserve on the team returns to its budget.

/** Returns expired reservations to their budgets (at most 100 per call: a call never runs long). */
export const REAP = `
local function release(amounts, leases, id)
  local rec = redis.call('HGET', amounts, id)
  if rec then
    for _, r in ipairs(cjson.decode(rec)) do
      redis.call('HINCRBY', r[1], r[2], '-' .. r[3])
    end
    redis.call('HDEL', amounts, id)
  end
  redis.call('ZREM', leases, id)
end

-- Extends a key's life to at least ttl_ms, once per key and call: a request's ~30 increments
-- touch only 3-4 hashes.
local kept = {}
local function keep(key, ttl_ms)
  if kept[key] then return end
  kept[key] = true
  local pttl = redis.call('PTTL', key)
  if pttl == -1 or pttl < ttl_ms then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end

local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local leases, amounts = KEYS[1], KEYS[2]
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms, 'LIMIT', 0, 100)) do
  release(amounts, leases, id)
end

-- n budget checks: the hash KEYS[2 + i], and from ARGV a0 + 4(i-1) + 1 its spent field, reserved
-- field, limit and amount. Room while spent + reserved < limit: returns spent + reserved per
-- check and the first without room (0-based, -1 when all have room).
local function check_budgets(a0, n)
  local used, exhausted = {}, -1
  for i = 1, n do
    local key, a = KEYS[2 + i], a0 + (i - 1) * 4
    local spent = tonumber(redis.call('HGET', key, ARGV[a + 1]) or '0')
    local reserved = tonumber(redis.call('HGET', key, ARGV[a + 2]) or '0')
    used[i] = spent + reserved
    if exhausted == -1 and used[i] >= tonumber(ARGV[a + 3]) then exhausted = i - 1 end
  end
  return used, exhausted
end

-- Reserves each check's amount under lease id (what it reserved kept beside the lease set).
local function reserve_budgets(a0, n, id, lease_ms, ttl_ms)
  local rec = {}
  for i = 1, n do
    local key, a = KEYS[2 + i], a0 + (i - 1) * 4
    local amount = ARGV[a + 4]
    if tonumber(amount) > 0 then
      redis.call('HINCRBY', key, ARGV[a + 2], amount)
      keep(key, ttl_ms)
      rec[#rec + 1] = {key, ARGV[a + 2], amount}
    end
  end
  if #rec > 0 then
    redis.call('HSET', amounts, id, cjson.encode(rec))
    redis.call('ZADD', leases, now_ms + lease_ms, id)
    -- As long as the budget hashes, not the lease: an expired reservation is returned by the
    -- next call on the team, however late; were the set to expire with its newest lease, that
    -- one's amount would stay reserved for the rest of the period.
    keep(leases, ttl_ms)
    keep(amounts, ttl_ms)
  end
end
`;

/**
 * KEYS: lease set, lease amounts hash, then one budget hash per check.
 * ARGV: lease id, lease ms, ttl ms, then per check: spent field, reserved field, limit, amount
 * (integers as decimal strings).
 * Returns { admitted (1|0), exhausted index (0-based, -1), used per check ... }.
 */
export const RESERVE_LUA = `${REAP}
local id, lease_ms, ttl_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local n = #KEYS - 2
local used, exhausted = check_budgets(3, n)
if exhausted >= 0 then
  return {0, exhausted, unpack(used)}
end
reserve_budgets(3, n, id, lease_ms, ttl_ms)
return {1, -1, unpack(used)}
`;

/**
 * KEYS: lease set, lease amounts hash, then one counter hash per increment.
 * ARGV: number of lease ids, the lease ids, ttl ms, then per increment: field, by (integer string).
 * Returns each counter's value after its increment.
 */
export const SETTLE_LUA = `${REAP}
local ids = tonumber(ARGV[1])
for i = 2, ids + 1 do release(amounts, leases, ARGV[i]) end
local ttl_ms = tonumber(ARGV[ids + 2])
local out = {}
for i = 1, #KEYS - 2 do
  local key, a = KEYS[i + 2], ids + 3 + (i - 1) * 2
  out[i] = redis.call('HINCRBY', key, ARGV[a], ARGV[a + 1])
  keep(key, ttl_ms)
end
return out
`;
