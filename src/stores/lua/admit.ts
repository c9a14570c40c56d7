// The admission script: a request's budgets, rate buckets and concurrency slot in one atomic
// step and one round trip. Either every budget has room, every bucket can pay and a slot is free,
// and then all are charged; or nothing is charged and the answer says what refused first, in
// the order budget, rate, concurrency (a spent budget is news a client cannot retry away, so it
// wins). It is reserve.ts + take.ts + acquire.ts in one, with their arithmetic unchanged; all
// keys are a team's, so they share its hash tag and Cluster runs the script on one node.
import { BUCKET_LUA } from './bucket.js';
import { REAP } from './budget.js';

/**
 * KEYS: lease set, lease amounts hash, nb budget hashes, nt bucket keys, then the slot set when
 * there is a slot (the lease keys are passed even with no budget: they name the team's slot).
 * ARGV: nb, nt, has slot (1|0), lease id, lease ms, ttl ms, slot id, slot limit, slot lease ms,
 * then per budget check: spent field, reserved field, limit, amount (integer strings),
 * then per bucket: capacity, refill per second, cost.
 * Returns { status (1 admitted, 0 budget, 2 rate, 3 concurrency), exhausted budget index (-1),
 * retryAfterMs (string), limiting bucket index (-1), slot holders after the call,
 * then used per budget check, then remaining and resetMs (strings) per bucket }.
 */
export const ADMIT_LUA = `${REAP}
${BUCKET_LUA}
local nb, nt, has_slot = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local lease_id, lease_ms, ttl_ms = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local slot_id, slot_limit, slot_lease_ms = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local B, T = 9, 9 + 4 * nb

-- 1. Budgets: room while spent + reserved < limit.
local used, exhausted = {}, -1
for i = 1, nb do
  local key, a = KEYS[2 + i], B + (i - 1) * 4
  local spent = tonumber(redis.call('HGET', key, ARGV[a + 1]) or '0')
  local reserved = tonumber(redis.call('HGET', key, ARGV[a + 2]) or '0')
  used[i] = spent + reserved
  if exhausted == -1 and used[i] >= tonumber(ARGV[a + 3]) then exhausted = i - 1 end
end

-- 2. Rate buckets: each can pay its cost now, or how long until all can.
local capacity, rate, cost, levels = {}, {}, {}, {}
local retry_ms, limiting = 0, -1
for i = 1, nt do
  local a = T + (i - 1) * 3
  capacity[i], rate[i], cost[i] = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  levels[i] = level(KEYS[2 + nb + i], capacity[i], rate[i])
  local short = cost[i] - levels[i]
  if short > 0 then
    local wait_ms = math.ceil(short / rate[i] * 1000)
    if wait_ms > retry_ms or limiting == -1 then
      retry_ms = wait_ms
      limiting = i - 1
    end
  end
end

-- 3. Concurrency: expired leases stop counting; a holder asking again keeps its slot.
local slot_key = KEYS[3 + nb + nt]
local holders, slot_free = 0, true
if has_slot then
  redis.call('ZREMRANGEBYSCORE', slot_key, '-inf', fmt(now_ms))
  holders = redis.call('ZCARD', slot_key)
  slot_free = holders < slot_limit or redis.call('ZSCORE', slot_key, slot_id) ~= false
end

local status = 1
if exhausted ~= -1 then status = 0 elseif limiting ~= -1 then status = 2 elseif not slot_free then status = 3 end
local reply = {status, exhausted, fmt(retry_ms), limiting, holders}
for i = 1, nb do reply[5 + i] = used[i] end
local S = 5 + nb
if status ~= 1 then
  for i = 1, nt do
    reply[S + 2 * i - 1] = fmt(levels[i])
    reply[S + 2 * i] = fmt(reset_ms(capacity[i], rate[i], levels[i]))
  end
  return reply
end

-- Admitted: charge everything.
for i = 1, nt do
  local tokens = math.min(capacity[i], levels[i] - cost[i])
  store(KEYS[2 + nb + i], capacity[i], rate[i], tokens)
  reply[S + 2 * i - 1] = fmt(tokens)
  reply[S + 2 * i] = fmt(reset_ms(capacity[i], rate[i], tokens))
end
if has_slot then
  redis.call('ZADD', slot_key, fmt(now_ms + slot_lease_ms), slot_id)
  local slot_ttl = math.max(1, math.ceil(slot_lease_ms))
  if redis.call('PTTL', slot_key) < slot_ttl then redis.call('PEXPIRE', slot_key, slot_ttl) end
  reply[5] = redis.call('ZCARD', slot_key)
end
local rec = {}
for i = 1, nb do
  local key, a = KEYS[2 + i], B + (i - 1) * 4
  local amount = ARGV[a + 4]
  if tonumber(amount) > 0 then
    redis.call('HINCRBY', key, ARGV[a + 2], amount)
    keep(key, ttl_ms)
    rec[#rec + 1] = {key, ARGV[a + 2], amount}
  end
end
if #rec > 0 then
  local leases, amounts = KEYS[1], KEYS[2]
  redis.call('HSET', amounts, lease_id, cjson.encode(rec))
  redis.call('ZADD', leases, math.floor(now_ms) + lease_ms, lease_id)
  -- As long as the budget hashes, not the lease: an expired reservation is returned by the next
  -- call on the team, however late; were the set to expire with its newest lease, that one's
  -- amount would stay reserved for the rest of the period.
  keep(leases, ttl_ms)
  keep(amounts, ttl_ms)
end
return reply
`;
