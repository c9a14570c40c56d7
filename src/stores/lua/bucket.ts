// Lua shared by the token-bucket scripts (take.ts, adjust.ts): the clock, number formatting,
// and how a bucket is read and written. The arithmetic is MemoryStore's, operation for
// operation, so both stores answer alike. Exported as TS strings, not .lua files, so that tsc
// carries them into dist/.
//
// A bucket is a hash {tokens, at_ms}: the tokens left at at_ms (Redis server time, in ms with
// microseconds as a fraction). An absent bucket is full, so a bucket that reaches capacity is
// deleted, and every other one gets a PEXPIRE of its time-to-full plus a margin: idle buckets
// disappear on their own, exactly when they would read as full anyway.

/** Extra lifetime past time-to-full (ms): a bucket may only vanish once it is surely full. */
export const BUCKET_TTL_MARGIN_MS = 1_000;

/**
 * Upper bound on a bucket's PEXPIRE (30 days, ms): a huge overage at a tiny refill rate would
 * otherwise ask for an expiry PEXPIRE cannot take.
 */
export const BUCKET_TTL_MAX_MS = 30 * 24 * 3_600_000;

export const BUCKET_LUA = `
-- Server time, so replicas with skewed clocks agree. Effects replication (the default since
-- Redis 5) makes a write after TIME safe.
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

-- Lua numbers reach the client truncated to integers: floats travel as strings. 17 digits
-- round-trip a double exactly; Redis also stores the hash fields in this form.
local function fmt(x)
  return string.format('%.17g', x)
end

-- The tokens now: what was left plus the refill since, capped at capacity. Absent is full.
local function level(key, capacity, rate)
  local state = redis.call('HMGET', key, 'tokens', 'at_ms')
  local tokens, at_ms = tonumber(state[1]), tonumber(state[2])
  if tokens == nil or at_ms == nil then
    return capacity
  end
  return math.min(capacity, tokens + math.max(0, now_ms - at_ms) / 1000 * rate)
end

-- Milliseconds until full again (0 when full; inf when the bucket never refills).
local function reset_ms(capacity, rate, tokens)
  local missing = capacity - tokens
  if missing <= 0 then
    return 0
  end
  return math.ceil(missing / rate * 1000)
end

local function store(key, capacity, rate, tokens)
  if tokens >= capacity then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'tokens', fmt(tokens), 'at_ms', fmt(now_ms))
  if rate > 0 then
    local ttl_ms = math.min(reset_ms(capacity, rate, tokens) + ${BUCKET_TTL_MARGIN_MS}, ${BUCKET_TTL_MAX_MS})
    redis.call('PEXPIRE', key, ttl_ms)
  else
    -- A bucket that never refills is a fixed quota: it stays until something deletes it.
    redis.call('PERSIST', key)
  end
end
`;
