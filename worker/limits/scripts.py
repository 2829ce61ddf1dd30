"""The limiter's two steps in Lua, for Redis: `worker/limits/maths.py` line for line.

Each runs atomically on the server and reads the server's clock (TIME), so workers on
different machines share one schedule whatever their own clocks say. A test may pass
`now` (ARGV[1]) to drive them with a fake clock; workers pass an empty string.

Keys of a provider (`chatq:limit:<provider>:...`): `state` (a hash of `maths.State`'s
fields), `slots` (a sorted set of lease tokens scored by expiry), `429s` (a sorted
set of recent 429s scored by time), each expiring after a day without use; and `quota`
(why the provider's quota is spent, set by `RedisBackend.pause` to expire with the
pause), which ACQUIRE reads first, so an admitted call has checked it atomically.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "RELEASE"]

_PRELUDE = """
local function clock(given)
  if given ~= '' then return tonumber(given) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

local FIELDS = {'rate', 'last_max', 'born', 'sched_rate', 'base_time', 'base_ticket',
  'next_ticket', 'ttat', 'pause_until', 'cut_at', 'win_start', 'win_count', 'win_prev'}

local function load(key)
  local values = redis.call('HMGET', key, unpack(FIELDS))
  local s = {}
  for i, name in ipairs(FIELDS) do s[name] = tonumber(values[i]) or 0 end
  return s
end

local function save(key, s, ttl)
  local args = {}
  for _, name in ipairs(FIELDS) do
    args[#args + 1] = name
    args[#args + 1] = string.format('%.17g', s[name])
  end
  redis.call('HSET', key, unpack(args))
  redis.call('EXPIRE', key, ttl)
end

local function opt(value)
  local n = tonumber(value)
  if n == nil or n <= 0 then return nil end
  return n
end

-- maths.effective_rate
local function effective_rate(s, ceiling, now, start, doubling)
  if s.rate > 0 then
    if ceiling then return math.min(s.rate, ceiling) end
    return s.rate
  end
  if ceiling then return ceiling end
  if not start then return nil end
  local doublings = math.floor((now - s.born) / doubling)
  if doublings > 20 then return nil end
  return start * 2 ^ doublings
end

-- maths._roll
local function roll(s, now, window)
  local elapsed = now - s.win_start
  if elapsed < window then return end
  local windows = math.floor(elapsed / window)
  if windows == 1 then s.win_prev = s.win_count else s.win_prev = 0 end
  s.win_count = 0
  s.win_start = s.win_start + windows * window
end

-- maths.measured_rate
local function measured_rate(s, now, window)
  roll(s, now, window)
  local weight = math.max(0, 1 - (now - s.win_start) / window)
  return (s.win_prev * weight + s.win_count) / window
end

local function due(s, ticket)
  return s.base_time + (ticket - s.base_ticket) / s.sched_rate
end

-- maths._advance
local function advance(s, now)
  if now > s.base_time then
    s.base_ticket = s.base_ticket + (now - s.base_time) * s.sched_rate
    s.base_time = now
  end
end

-- maths._schedule
local function schedule(s, ceiling, now, start, doubling)
  local rate = effective_rate(s, ceiling, now, start, doubling) or 0
  if rate ~= s.sched_rate then
    if s.sched_rate > 0 then
      advance(s, now)
    else
      s.base_ticket = s.next_ticket
      s.base_time = math.max(now, s.pause_until)
    end
    s.sched_rate = rate
  end
  if rate > 0 then return rate end
  return nil
end

local function num(x) return string.format('%.17g', x) end
"""

#: KEYS: state, slots, quota. ARGV: now, concurrency, ceiling (calls/s), tpm, tokens,
#: lease, token, max_wait, ticket (-1: none), window, token_burst, start, doubling, ttl.
#: Returns {status, wait, ticket (-1: none), at}, or {'quota', seconds left, -1, 0, why}
#: while the quota pause's key lives (on the server's clock, whatever `now` says).
ACQUIRE = (
    _PRELUDE
    + """
-- maths.quota, before anything else: a spent quota takes no ticket and changes nothing
local why = redis.call('GET', KEYS[3])
if why then
  local left = redis.call('PTTL', KEYS[3])
  if left > 0 then return {'quota', num(left / 1000), -1, num(0), why} end
end

local now = clock(ARGV[1])
local concurrency, ceiling, tpm = opt(ARGV[2]), opt(ARGV[3]), opt(ARGV[4])
local tokens, lease, token = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local max_wait, ticket = tonumber(ARGV[8]), tonumber(ARGV[9])
local window, burst = tonumber(ARGV[10]), tonumber(ARGV[11])
local start, doubling, ttl = opt(ARGV[12]), tonumber(ARGV[13]), tonumber(ARGV[14])
if ticket < 0 then ticket = nil end

local s = load(KEYS[1])
local function answer(status, wait, held, at)
  save(KEYS[1], s, ttl)
  return {status, num(wait), held or -1, num(at or 0)}
end

if s.born == 0 then s.born = now end
local rate = schedule(s, ceiling, now, start, doubling)
if rate then
  if ticket == nil or ticket >= s.next_ticket then
    if due(s, s.next_ticket) < now then
      s.base_ticket = s.next_ticket
      s.base_time = now
    end
    ticket = s.next_ticket
    if due(s, ticket) - now > max_wait then return answer('late', due(s, ticket) - now) end
    s.next_ticket = s.next_ticket + 1
  end
  local wait = due(s, ticket) - now
  if wait > max_wait then return answer('late', wait) end
  if wait > 0.001 then
    if s.rate == 0 and start and not ceiling then  -- maths._doubles_in
      wait = math.min(wait, doubling - math.fmod(now - s.born, doubling))
    end
    return answer('reserved', wait, ticket)
  end
else
  ticket = nil
end
if now < s.pause_until then return answer('paused', s.pause_until - now, ticket) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', num(now))
if concurrency and redis.call('ZCARD', KEYS[2]) >= concurrency then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return answer('busy', tonumber(first[2]) - now, ticket)
end
if tpm then
  local ahead = s.ttat - now - burst
  if ahead > 0 then
    if ahead > max_wait then return answer('late', ahead) end
    return answer('tokens', ahead, ticket)
  end
  s.ttat = math.max(s.ttat, now) + tokens * 60 / tpm
end
redis.call('ZADD', KEYS[2], num(now + lease), token)
redis.call('EXPIRE', KEYS[2], ttl)
roll(s, now, window)
s.win_count = s.win_count + 1
return answer('granted', 0, ticket, now)
"""
)

#: KEYS: state, slots, 429s. ARGV: now, token, outcome, granted_at, estimated, actual
#: (-1: unknown), retry_after (-1: none), ceiling, tpm, decrease, recover, probe, floor,
#: window, start, doubling, keep (seconds of 429s kept), ttl.
RELEASE = (
    _PRELUDE
    + """
local now = clock(ARGV[1])
local token, outcome, granted_at = ARGV[2], ARGV[3], tonumber(ARGV[4])
local estimated, actual, retry_after = tonumber(ARGV[5]), tonumber(ARGV[6]), opt(ARGV[7])
local ceiling, tpm = opt(ARGV[8]), opt(ARGV[9])
local decrease, recover, probe = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local floor, window = tonumber(ARGV[13]), tonumber(ARGV[14])
local start, doubling = opt(ARGV[15]), tonumber(ARGV[16])
local keep, ttl = tonumber(ARGV[17]), tonumber(ARGV[18])

local s = load(KEYS[1])
redis.call('ZREM', KEYS[2], token)
if outcome == 'ok' then
  if tpm and actual >= 0 then
    local base = math.max(s.ttat, now)
    s.ttat = math.max(now, base + (actual - estimated) * 60 / tpm)
  end
  if s.rate > 0 then
    local gain = math.max(0, s.last_max - s.rate) / recover + probe * s.last_max
    s.rate = s.rate + gain / s.rate
    if ceiling then s.rate = math.min(s.rate, ceiling) end
  end
elseif outcome == 'limited' then
  redis.call('ZADD', KEYS[3], num(now), num(now) .. ':' .. token)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', num(now - keep))
  redis.call('EXPIRE', KEYS[3], ttl)
  if granted_at > s.cut_at then
    local basis = effective_rate(s, ceiling, now, start, doubling)
    if s.rate == 0 and not ceiling then
      basis = math.min(basis or math.huge, measured_rate(s, now, window))
    end
    s.last_max = math.max(basis, floor)
    s.rate = math.max(floor, decrease * basis)
    s.cut_at = now
  end
end
if retry_after then s.pause_until = math.max(s.pause_until, now + retry_after) end
schedule(s, ceiling, now, start, doubling)
if s.sched_rate > 0 and s.pause_until > s.base_time then
  advance(s, now)
  s.base_time = math.max(s.base_time, s.pause_until)
end
save(KEYS[1], s, ttl)
return 1
"""
)
