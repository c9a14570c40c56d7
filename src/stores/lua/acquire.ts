// The acquire script: a concurrency slot. The key is a sorted set of holder ids scored by the
// Redis-time expiry of their lease (ms), so a holder that never releases (a crashed replica, a
// release lost with the connection) stops counting when its lease runs out. Release is a plain
// ZREM and needs no script.

/**
 * KEYS[1]: the slot set. ARGV: holder id, limit, lease ms.
 * Returns { acquired (1|0), holders after the call }.
 */
export const ACQUIRE_LUA = `
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local key, id = KEYS[1], ARGV[1]
local limit, lease_ms = tonumber(ARGV[2]), tonumber(ARGV[3])

redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.17g', now_ms))
local holders = redis.call('ZCARD', key)
-- A holder asking again renews its lease instead of taking a second slot.
if holders >= limit and not redis.call('ZSCORE', key, id) then
  return {0, holders}
end
redis.call('ZADD', key, string.format('%.17g', now_ms + lease_ms), id)
-- The set lives as long as its longest lease, so an abandoned set disappears too.
local ttl_ms = math.max(1, math.ceil(lease_ms))
if redis.call('PTTL', key) < ttl_ms then
  redis.call('PEXPIRE', key, ttl_ms)
end
return {1, redis.call('ZCARD', key)}
`;
