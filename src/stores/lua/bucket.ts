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
-- The clock as written into every bucket this call stores: formatted once (each string.format
-- costs about as much as a redis.call in a script).
local now_text = fmt(now_ms)

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

-- Reads n buckets, KEYS[k0 + i] with ARGV capacity, refill per second, cost from a0 + 3(i-1) + 1,
-- and says whether all can pay now: limiting is the 0-based bucket that must wait longest
-- (-1 when all can pay; the first among equals, as in MemoryStore), retry_ms that wait.
local function check_buckets(k0, a0, n)
  local b = {capacity = {}, rate = {}, cost = {}, levels = {}, retry_ms = 0, limiting = -1}
  for i = 1, n do
    local a = a0 + (i - 1) * 3
    b.capacity[i], b.rate[i], b.cost[i] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
    b.levels[i] = level(KEYS[k0 + i], b.capacity[i], b.rate[i])
    local short = b.cost[i] - b.levels[i]
    if short > 0 then
      local wait_ms = math.ceil(short / b.rate[i] * 1000)
      if wait_ms > b.retry_ms or b.limiting == -1 then
        b.retry_ms = wait_ms
        b.limiting = i - 1
      end
    end
  end
  return b
end

-- Returns the tokens as written (formatted), or nil when the bucket was deleted (full).
local function store(key, capacity, rate, tokens)
  if tokens >= capacity then
    redis.call('DEL', key)
    return nil
  end
  local text = fmt(tokens)
  redis.call('HSET', key, 'tokens', text, 'at_ms', now_text)
  if rate > 0 then
    local ttl_ms = math.min(reset_ms(capacity, rate, tokens) + ${BUCKET_TTL_MARGIN_MS}, ${BUCKET_TTL_MAX_MS})
    redis.call('PEXPIRE', key, ttl_ms)
  else
    -- A bucket that never refills is a fixed quota: it stays until something deletes it.
    redis.call('PERSIST', key)
  end
  return text
end

-- Puts remaining and resetMs of each checked bucket into reply from index r + 1: charged when
-- pay is true (and then stored), as found otherwise.
local function bucket_reply(reply, r, k0, b, n, pay)
  for i = 1, n do
    local tokens, text = b.levels[i], nil
    if pay then
      tokens = math.min(b.capacity[i], b.levels[i] - b.cost[i])
      text = store(KEYS[k0 + i], b.capacity[i], b.rate[i], tokens)
    end
    reply[r + 2 * i - 1] = text or fmt(tokens)
    reply[r + 2 * i] = fmt(reset_ms(b.capacity[i], b.rate[i], tokens))
  end
end
`;
