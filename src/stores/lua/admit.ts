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
${admitBody()}`;

/** ADMIT_LUA after its shared preamble (REAP, BUCKET_LUA): one admission, from KEYS and ARGV. */
function admitBody(): string {
  return `local nb, nt, has_slot = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local lease_id, lease_ms, ttl_ms = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local slot_id, slot_limit, slot_lease_ms = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])
local B, T = 9, 9 + 4 * nb

-- 1. Budgets: room while spent + reserved < limit.
local used, exhausted = check_budgets(B, nb)
-- 2. Rate buckets: each can pay its cost now, or how long until all can.
local b = check_buckets(2 + nb, T, nt)
-- 3. Concurrency: expired leases stop counting; a holder asking again keeps its slot.
local slot_key = KEYS[3 + nb + nt]
local holders, slot_free = 0, true
if has_slot then
  redis.call('ZREMRANGEBYSCORE', slot_key, '-inf', now_text)
  holders = redis.call('ZCARD', slot_key)
  slot_free = holders < slot_limit or redis.call('ZSCORE', slot_key, slot_id) ~= false
end

local status = 1
if exhausted ~= -1 then status = 0 elseif b.limiting ~= -1 then status = 2 elseif not slot_free then status = 3 end
local reply = {status, exhausted, fmt(b.retry_ms), b.limiting, holders}
for i = 1, nb do reply[5 + i] = used[i] end
-- Admitted: charge everything; refused: the buckets as found.
bucket_reply(reply, 5 + nb, 2 + nb, b, nt, status == 1)
if status ~= 1 then return reply end
if has_slot then
  redis.call('ZADD', slot_key, fmt(now_ms + slot_lease_ms), slot_id)
  local slot_ttl = math.max(1, math.ceil(slot_lease_ms))
  if redis.call('PTTL', slot_key) < slot_ttl then redis.call('PEXPIRE', slot_key, slot_ttl) end
  reply[5] = redis.call('ZCARD', slot_key)
end
reserve_budgets(B, nb, lease_id, lease_ms, ttl_ms)
return reply
`;
}

/**
 * Several admissions of one team, in order, in one script: what the same ADMIT calls sent one
 * after another would do, at one instant (RedisStore joins the admissions of one turn of the
 * event loop). Each runs ADMIT_LUA's own part unchanged, given its own KEYS and ARGV; the
 * preamble runs once (the clock, the reaping of expired leases, the expiry checks of `keep`),
 * and each bucket is read once and written once: its state between admissions stays in the
 * script (the same numbers a write and a read would give: fmt round-trips a double).
 * KEYS: every key of the admissions, each once; the first two are the team's lease set and
 * amounts hash. ARGV: the number of admissions, then per admission: the number of its keys,
 * their indexes in KEYS, the number of its arguments, then its arguments (ADMIT_LUA's ARGV).
 * Returns ADMIT_LUA's reply per admission.
 */
export const ADMIT_MANY_LUA = `
local KEYS = KEYS
${REAP}
${BUCKET_LUA}
-- Bucket key -> {tokens, at_ms}, or false when absent (full); the keys written, in order, and
-- what was last written to each.
local buckets, written, last = {}, {}, {}
local store_now = store
level = function(key, capacity, rate)
  local b = buckets[key]
  if b == nil then
    local state = redis.call('HMGET', key, 'tokens', 'at_ms')
    local tokens, at_ms = tonumber(state[1]), tonumber(state[2])
    b = (tokens ~= nil and at_ms ~= nil) and {tokens, at_ms} or false
    buckets[key] = b
  end
  if not b then return capacity end
  return math.min(capacity, b[1] + math.max(0, now_ms - b[2]) / 1000 * rate)
end
store = function(key, capacity, rate, tokens)
  buckets[key] = tokens < capacity and {tokens, now_ms} or false
  if last[key] == nil then written[#written + 1] = key end
  last[key] = {capacity, rate, tokens}
end
local function admit()
${admitBody()}
end
local all, out, a = ARGV, {}, 2
local joined = KEYS
for i = 1, tonumber(all[1]) do
  local keys, argv = {}, {}
  local nk = tonumber(all[a])
  for j = 1, nk do keys[j] = joined[tonumber(all[a + j])] end
  a = a + nk + 1
  local na = tonumber(all[a])
  for j = 1, na do argv[j] = all[a + j] end
  a = a + na + 1
  KEYS, ARGV = keys, argv
  out[i] = admit()
end
for _, key in ipairs(written) do
  local w = last[key]
  store_now(key, w[1], w[2], w[3])
end
return out
`;
