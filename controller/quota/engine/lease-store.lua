-- The lease store's operations, one atomic script (see store.ts for the model and
-- memory-store.ts for the same algorithm in TypeScript; keep the two in step).
--
-- KEYS[1]  the provider's main hash; every other key shares its hash tag (one cluster slot)
-- ARGV[1]  operation   ARGV[2] key prefix   ARGV[3] clock override in ms ('' = Redis TIME)
-- ARGV[4]  record grace ms   ARGV[5] gc batch   ARGV[6] pump batch   ARGV[7] settled grace ms
-- ARGV[8..] operation arguments

local op, P = ARGV[1], ARGV[2]
local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local GRACE, GC_BATCH, PUMP_BATCH, SETTLED_GRACE = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]),
  tonumber(ARGV[7])
local A = 8
local UNSCHEDULED_RETRY_MS = 250
local DEFAULT_CLOSE_MS, MAX_CLOSE_MS = 60000, 7 * 86400000
local RATE_BACKOFF, TOKEN_HEADER_TOLERANCE = 0.97, 1000
local PACE_FREE_SHARE, PACE_BURST_SHARE, PACE_MAX_WINDOW_MS, PACE_TTL_MS = 0.25, 0.02, 60000, 150000
local KM, KC, KR, KX, KG, KE = KEYS[1], P .. ':c', P .. ':r', P .. ':x', P .. ':g', P .. ':e'
local KP = P .. ':pc'
local INF = 1e300

local function count(field, delta) redis.call('HINCRBY', KM, field, delta) end
local function load(id)
  local raw = redis.call('HGET', KR, id)
  if raw then return cjson.decode(raw) end
  return nil
end
local function save(rec) redis.call('HSET', KR, rec.req.id, cjson.encode(rec)) end
local function tier_of(priority)
  if priority <= 0 then return 1 end
  return 0
end

-- Adapted amounts (read once per call: most providers have none) ------------------------------
local adapted = nil
local function adapted_amounts()
  if adapted == nil then
    adapted = {}
    if redis.call('EXISTS', KE) == 1 then
      local all = redis.call('HGETALL', KE)
      for i = 1, #all, 2 do adapted[all[i]] = tonumber(all[i + 1]) end
    end
  end
  return adapted
end
local function amount(plan)
  local eff = adapted_amounts()[plan.key]
  if eff and eff < plan.amount then return eff end
  return plan.amount
end

-- Windows ------------------------------------------------------------------------------------
local function wkey(plan) return P .. ':w:' .. plan.key end
local roll

-- Rolls the window forward to now; returns its total and floor (first counted bucket). The clock
-- does not move within a call, so a window is rolled once and then read from `windows`.
local windows = {}
local function window(plan)
  local cached = windows[plan.key]
  if cached then return cached[1], cached[2] end
  local total, floor = roll(plan)
  windows[plan.key] = { total, floor }
  return total, floor
end

roll = function(plan)
  local k = wkey(plan)
  local start = math.floor((now - plan.windowMs - plan.marginMs) / plan.bucketMs)
  local v = redis.call('HMGET', k, 't', 'f')
  local floor = tonumber(v[2])
  if floor == nil then return 0, start end
  local total = tonumber(v[1]) or 0
  if floor > start then start = floor end
  if floor < start then
    if start - floor <= 64 then
      local fields = {}
      for i = floor, start - 1 do fields[#fields + 1] = tostring(i) end
      local amounts = redis.call('HMGET', k, unpack(fields))
      for i = 1, #fields do
        local a = tonumber(amounts[i])
        if a then total = total - a end
      end
      redis.call('HDEL', k, unpack(fields))
    else
      local all = redis.call('HGETALL', k)
      for i = 1, #all, 2 do
        local index = tonumber(all[i])
        if index and index < start then
          total = total - tonumber(all[i + 1])
          redis.call('HDEL', k, all[i])
        end
      end
    end
    if total < 0 then total = 0 end
    redis.call('HSET', k, 't', total, 'f', start)
  end
  return total, start
end

-- Adds `amount` to the current bucket of a window.
local function charge_now(plan, add)
  local total, floor = window(plan)
  local k = wkey(plan)
  local bucket = math.floor(now / plan.bucketMs)
  redis.call('HINCRBY', k, tostring(bucket), add)
  redis.call('HSET', k, 't', total + add, 'f', floor)
  redis.call('PEXPIRE', k, plan.windowMs + plan.marginMs + 2 * plan.bucketMs)
  windows[plan.key] = { total + add, floor }
  return bucket, total
end

-- Pacing (see store.ts): per paced window limit, the time its steady rate has been spent up to
-- and (field key|h) when it last held a request back, in hash KP; in KM the last grant's budget
-- and time (lb1, lt1) and the last one of any other budget (lb2, lt2).
local function paced_limit(plan)
  return plan.scope == 'provider' and plan.windowMs > 0 and plan.windowMs <= PACE_MAX_WINDOW_MS
end
local function span_of(plan) return plan.windowMs + plan.marginMs + plan.bucketMs end

local last_grants = nil
local function other_budget_at(budget)
  if last_grants == nil then
    local v = redis.call('HMGET', KM, 'lb1', 'lt1', 'lb2', 'lt2')
    last_grants = { b1 = v[1], t1 = tonumber(v[2]), b2 = v[3], t2 = tonumber(v[4]) }
  end
  if last_grants.b1 and last_grants.b1 ~= budget then return last_grants.t1 end
  return last_grants.t2
end
local function note_grant(budget)
  other_budget_at(budget)
  if last_grants.b1 ~= budget then
    last_grants.b2, last_grants.t2 = last_grants.b1, last_grants.t1
    last_grants.b1 = budget
  end
  last_grants.t1 = now
  if last_grants.b2 then
    redis.call('HSET', KM, 'lb1', last_grants.b1, 'lt1', now, 'lb2', last_grants.b2, 'lt2', last_grants.t2)
  else
    redis.call('HSET', KM, 'lb1', last_grants.b1, 'lt1', now)
  end
end

-- Is a grant of plan.need on a window holding `total` paced: the window held a request back
-- lately, or another budget drew on it lately and it is filling?
local function paced_grant(budget, plan, limit, total)
  if not paced_limit(plan) then return false end
  local since = now - span_of(plan)
  local held = tonumber(redis.call('HGET', KP, plan.key .. '|h'))
  if held ~= nil and held >= since then return true end
  if total + plan.need <= limit * PACE_FREE_SHARE then return false end
  local other = other_budget_at(budget)
  return other ~= nil and other >= since
end

local function note_held(plan)
  redis.call('HSET', KP, plan.key .. '|h', now)
  redis.call('PEXPIRE', KP, PACE_TTL_MS)
end

local function pace_of(plan) return tonumber(redis.call('HGET', KP, plan.key)) or 0 end

-- The earliest time a paced grant may happen: when the pace is no further ahead than the burst.
local function paced_at(plan, limit)
  local interval = span_of(plan) / limit
  local burst = span_of(plan) * PACE_BURST_SHARE
  if burst < interval then burst = interval end
  local at = pace_of(plan) - burst
  if at < now then return now end
  return at
end

-- The request fits at `at` at the earliest: keep the latest such time, and the limit saying so.
local function hold_until(result, at, label)
  if at >= result.at then
    result.at = at
    result.limit = label
  end
end

local function retry_at(fit)
  if fit.at >= INF or fit.at <= now then return now + UNSCHEDULED_RETRY_MS end
  return fit.at
end

-- Can the request be granted now? If not, when could it be by time alone? (`pace`: a request that
-- can wait is paced; one that cannot takes what the windows hold.) Notes the paced window limits
-- that hold it back (they are contended from then on).
local function fit(req, pace)
  local result = { fits = true, at = now, conc = false, limit = '' }
  for _, plan in ipairs(req.limits) do
    local limit = amount(plan)
    if plan.windowMs == 0 then
      local used = tonumber(redis.call('HGET', KC, plan.key)) or 0
      if used + plan.need > limit then
        result.fits = false
        result.conc = true
        if result.limit == '' then result.limit = plan.label end
      end
    else
      local total, floor = window(plan)
      local excess = total + plan.need - limit
      if excess <= 0 and pace and paced_grant(req.budget, plan, limit, total) then
        local at = paced_at(plan, limit)
        if at > now then
          result.fits = false
          note_held(plan)
          hold_until(result, at, plan.label)
        end
      end
      if excess > 0 then
        result.fits = false
        if paced_limit(plan) then note_held(plan) end
        local all = redis.call('HGETALL', wkey(plan))
        local indexes = {}
        local amounts = {}
        for i = 1, #all, 2 do
          local index = tonumber(all[i])
          if index and index >= floor then
            indexes[#indexes + 1] = index
            amounts[index] = tonumber(all[i + 1])
          end
        end
        table.sort(indexes)
        local freed, at = 0, INF
        for _, index in ipairs(indexes) do
          freed = freed + amounts[index]
          if freed >= excess then
            at = (index + 1) * plan.bucketMs + plan.windowMs + plan.marginMs
            break
          end
        end
        hold_until(result, at, plan.label)
      end
    end
  end
  return result
end

-- The queue: per tier, budgets by the virtual start time of their next request; per budget,
-- waiters by priority then arrival, and by arrival alone for aging.
local function qp(tier, budget) return P .. ':qp:' .. tier .. ':' .. budget end
local function qa(tier, budget) return P .. ':qa:' .. tier .. ':' .. budget end
local function qt(tier) return P .. ':qt:' .. tier end

local function retag(tier, budget)
  if redis.call('EXISTS', qp(tier, budget)) == 0 then
    redis.call('ZREM', qt(tier), budget)
    return
  end
  local v = redis.call('HMGET', KM, 'vt', 'f:' .. budget)
  local vt, finish = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if finish < vt then finish = vt end
  redis.call('ZADD', qt(tier), finish, budget)
end

local function enqueue(rec, seq)
  local req = rec.req
  local tier = tier_of(req.priority)
  redis.call('ZADD', qp(tier, req.budget), -req.priority * 1e12 + seq, req.id)
  redis.call('ZADD', qa(tier, req.budget), rec.enq, req.id)
  count('nw', 1)
  retag(tier, req.budget)
end

local function dequeue(rec)
  local req = rec.req
  local tier = tier_of(req.priority)
  if redis.call('ZREM', qp(tier, req.budget), req.id) == 0 then return end
  redis.call('ZREM', qa(tier, req.budget), req.id)
  count('nw', -1)
  count('bw:' .. req.budget, -1)
  retag(tier, req.budget)
end

local function waiting() return tonumber(redis.call('HGET', KM, 'nw')) or 0 end

local function grant(rec, unclaimed)
  local req = rec.req
  rec.win = {}
  rec.slots = {}
  for _, plan in ipairs(req.limits) do
    if plan.windowMs == 0 then
      redis.call('HINCRBY', KC, plan.key, plan.need)
      rec.slots[#rec.slots + 1] = { k = plan.key }
    else
      local limit = amount(plan)
      local total = window(plan)
      local pacing = 0
      if paced_grant(req.budget, plan, limit, total) then
        local pace = pace_of(plan)
        if pace < now then pace = now end
        redis.call('HSET', KP, plan.key, pace + plan.need * span_of(plan) / limit)
        redis.call('PEXPIRE', KP, PACE_TTL_MS)
        pacing = 1
      end
      local bucket, before = charge_now(plan, plan.need)
      rec.win[#rec.win + 1] = { k = plan.key, d = plan.dimension, b = bucket, c = plan.need, w = before, p = pacing }
    end
  end
  for _, plan in ipairs(req.limits) do
    if paced_limit(plan) then
      note_grant(req.budget)
      break
    end
  end
  -- Start-time fair queuing: the budget's next request starts where this one finishes.
  local v = redis.call('HMGET', KM, 'vt', 'f:' .. req.budget)
  local vt, start = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if start < vt then start = vt end
  redis.call('HSET', KM, 'f:' .. req.budget, start + req.cost / req.weight, 'vt', start)
  if waiting() > 0 then
    retag(0, req.budget)
    retag(1, req.budget)
  end
  -- Labels only serve refusal messages: a granted record need not carry them.
  for _, plan in ipairs(req.limits) do plan.label = nil end
  rec.st = 'active'
  rec.uc = unclaimed
  rec.ga = now
  rec.ea = now + req.leaseTimeoutMs
  redis.call('ZADD', KX, rec.ea, req.id)
  redis.call('ZREM', KG, req.id)
  count('bi:' .. req.budget, 1)
  count('g:' .. req.budget, 1)
end

local function release(rec)
  for _, slot in ipairs(rec.slots or {}) do
    if redis.call('HINCRBY', KC, slot.k, -1) < 0 then redis.call('HSET', KC, slot.k, 0) end
  end
  redis.call('ZREM', KX, rec.req.id)
  count('bi:' .. rec.req.budget, -1)
end

local function charge_for(dim, input, output, outcome)
  if dim == 'requests' then return 1 end
  if outcome == 'notSent' then return 0 end
  if dim == 'inputTokens' then return input end
  if dim == 'outputTokens' then return output end
  if dim == 'totalTokens' then return input + output end
  return 0
end

local function plan_of(rec, key)
  for _, p in ipairs(rec.req.limits) do
    if p.key == key then return p end
  end
  return nil
end

-- Moves a window charge to `amount`, in the bucket where it was made, if still counted.
local function recharge(rec, charge, value)
  local delta = value - charge.c
  charge.c = value
  if delta == 0 then return end
  local plan = plan_of(rec, charge.k)
  if not plan then return end
  if charge.p == 1 then
    local pace = tonumber(redis.call('HGET', KP, plan.key))
    if pace then redis.call('HSET', KP, plan.key, pace + delta * span_of(plan) / amount(plan)) end
  end
  local total, floor = window(plan)
  if charge.b < floor then return end
  local k = wkey(plan)
  local current = tonumber(redis.call('HGET', k, tostring(charge.b))) or 0
  local next = current + delta
  if next < 0 then next = 0 end
  redis.call('HSET', k, tostring(charge.b), next, 't', total + next - current, 'f', floor)
  windows[plan.key] = { total + next - current, floor }
end

local function lease_of(rec)
  return { id = rec.req.id, budget = rec.req.budget, enqueuedAtMs = rec.enq, grantedAtMs = rec.ga,
    expiresAtMs = rec.ea, reserved = rec.req.reserved }
end

-- Expires leases past their time and forgets old records; bounded per operation.
local function collect()
  local expired = redis.call('ZRANGEBYSCORE', KX, '-inf', now, 'LIMIT', 0, GC_BATCH)
  for _, id in ipairs(expired) do
    local rec = load(id)
    if rec then
      release(rec)
      rec.st = 'expired'
      rec.uc = false
      save(rec)
      redis.call('ZADD', KG, now + GRACE, id)
    else
      redis.call('ZREM', KX, id)
    end
  end
  local forget = redis.call('ZRANGEBYSCORE', KG, '-inf', now, 'LIMIT', 0, GC_BATCH)
  for _, id in ipairs(forget) do
    redis.call('ZREM', KG, id)
    local rec = load(id)
    if rec and rec.st ~= 'active' then
      if rec.st == 'waiting' then dequeue(rec) end
      redis.call('HDEL', KR, id)
    end
  end
end

-- The next waiter in grant order: first tier first, fairest budget, then priority with aging.
local function head()
  for tier = 0, 1 do
    local budget = redis.call('ZRANGE', qt(tier), 0, 0)[1]
    if budget then
      local oldest = redis.call('ZRANGE', qa(tier, budget), 0, 0, 'WITHSCORES')
      local id
      if oldest[1] then
        local rec = load(oldest[1])
        if rec and now - tonumber(oldest[2]) >= rec.req.agingMs then return rec end
      end
      id = redis.call('ZRANGE', qp(tier, budget), 0, 0)[1]
      if id then
        local rec = load(id)
        if rec then return rec end
        -- A missing record must not wedge the queue.
        redis.call('ZREM', qp(tier, budget), id)
        redis.call('ZREM', qa(tier, budget), id)
        count('nw', -1)
        retag(tier, budget)
        return head()
      end
      redis.call('ZREM', qt(tier), budget)
      return head()
    end
  end
  return nil
end

local function closed_until()
  local v = redis.call('HMGET', KM, 'cu', 'cr')
  local cu = tonumber(v[1]) or 0
  if cu > now then return cu, v[2] or '' end
  return 0, ''
end

-- Grants from the head of the queue; returns when time alone may admit the head (0: never).
local function pump(granted)
  if waiting() <= 0 then return 0 end
  local cu = closed_until()
  if cu > 0 then return cu end
  for _ = 1, PUMP_BATCH do
    local rec = head()
    if not rec then return 0 end
    if rec.dl <= now then
      dequeue(rec)
      rec.st = 'timedOut'
      save(rec)
    else
      local f = fit(rec.req, true)
      if not f.fits then
        local wake = rec.dl
        if f.at > now and f.at < wake then wake = f.at end
        if f.conc then
          local first = redis.call('ZRANGE', KX, 0, 0, 'WITHSCORES')
          if first[2] and tonumber(first[2]) < wake then wake = tonumber(first[2]) end
        end
        return wake
      end
      dequeue(rec)
      grant(rec, true)
      save(rec)
      granted[#granted + 1] = rec.req.id
    end
  end
  return now
end

local function new_record(req, deadline)
  return { req = req, st = 'waiting', enq = now, dl = deadline, ga = 0, ea = 0, uc = false, win = {}, slots = {},
    ch = req.reserved, sa = 0 }
end

-- Adaptation ----------------------------------------------------------------------------------

-- Sets a limit's effective amount to `estimate` if lower; a probe refused soon backs off longer.
local function lower(plan, estimate, adaptation, stated)
  local current = amount(plan)
  -- Multiplicative decrease at most: one refusal never takes more than half (a limit the
  -- provider states in its headers is taken as it is).
  if not stated and estimate < math.ceil(current / 2) then estimate = math.ceil(current / 2) end
  if estimate >= current then return end
  local k = plan.key
  local v = redis.call('HMGET', KE, k .. '|p', k .. '|l')
  local probe, last_probe = tonumber(v[1]), tonumber(v[2]) or 0
  local next_probe = adaptation.probeMs
  if probe and last_probe > 0 and now - last_probe < 2 * probe then
    next_probe = math.min(adaptation.maxProbeMs, probe * 2)
  end
  redis.call('HSET', KE, k, estimate, k .. '|t', now, k .. '|p', next_probe, k .. '|l', last_probe,
    k .. '|d', now)
  adapted = nil
end

local function observed_plan(req, dimension)
  local best
  for _, plan in ipairs(req.limits) do
    if plan.adaptive and plan.windowMs > 0 and plan.dimension == dimension then
      if not best or math.abs(plan.windowMs - 60000) < math.abs(best.windowMs - 60000) then best = plan end
    end
  end
  return best
end

-- A rate refusal that teaches nothing by its count (see memory-store.ts): the call's own headers
-- state the limit of the refused window, or it was lowered less than a window ago.
local function refusal_explained(req, plan, observations)
  local lowered = tonumber(redis.call('HGET', KE, plan.key .. '|d'))
  if lowered and now - lowered < span_of(plan) then return true end
  for _, o in ipairs(observations) do
    if o.limit and o.limit > 0 and observed_plan(req, o.dimension) == plan then return true end
  end
  return false
end

-- What a settled call teaches: closures, lower limits after refusals, probes after successes.
local function adapt(rec, outcome, retry_after, reset_at, observations)
  local close = 0
  if outcome == 'refusedWindow' then
    if reset_at > now then close = reset_at
    elseif retry_after > 0 then close = now + retry_after
    else close = now + DEFAULT_CLOSE_MS end
  elseif (outcome == 'refusedRate' or outcome == 'refusedConcurrency') and retry_after > 0 then
    close = now + retry_after
  end
  if close > now + MAX_CLOSE_MS then close = now + MAX_CLOSE_MS end
  local cu = tonumber(redis.call('HGET', KM, 'cu')) or 0
  if close > cu then redis.call('HSET', KM, 'cu', close, 'cr', outcome .. ' from the provider') end
  local adaptation = rec.req.adaptation
  if type(adaptation) ~= 'table' then return end
  if outcome == 'refusedConcurrency' then
    for _, slot in ipairs(rec.slots) do
      local plan = plan_of(rec, slot.k)
      if plan and plan.adaptive then
        -- The provider refused because the account's other calls filled it: the slots still in
        -- use once this one is freed bound that from above, whatever order calls reached it in.
        local estimate = tonumber(redis.call('HGET', KC, slot.k)) or 0
        if estimate < 1 then estimate = 1 end
        lower(plan, estimate, adaptation)
      end
    end
  elseif outcome == 'refusedRate' then
    local worst, worst_charge, worst_ratio
    for _, charge in ipairs(rec.win) do
      local plan = plan_of(rec, charge.k)
      if plan and plan.adaptive then
        local ratio = (charge.w + plan.need) / amount(plan)
        if not worst or ratio > worst_ratio then worst, worst_charge, worst_ratio = plan, charge, ratio end
      end
    end
    if worst and not refusal_explained(rec.req, worst, observations) then
      local estimate = math.floor(worst_charge.w * RATE_BACKOFF)
      if estimate < worst.need then estimate = worst.need end
      lower(worst, estimate, adaptation)
    end
  elseif outcome == 'ok' and next(adapted_amounts()) ~= nil then
    for _, plan in ipairs(rec.req.limits) do
      if plan.adaptive and adapted_amounts()[plan.key] then
        local k = plan.key
        local v = redis.call('HMGET', KE, k, k .. '|t', k .. '|p')
        local eff, changed, probe = tonumber(v[1]), tonumber(v[2]) or 0, tonumber(v[3]) or 0
        if eff and eff < plan.amount and now - changed >= probe then
          local step = 1
          if plan.windowMs > 0 then step = math.max(1, math.ceil(plan.amount * 0.02)) end
          redis.call('HSET', KE, k, math.min(plan.amount, eff + step), k .. '|t', now, k .. '|l', now)
          adapted = nil
        end
      end
    end
  end
  for _, o in ipairs(observations) do
    local plan = observed_plan(rec.req, o.dimension)
    if plan then
      if o.limit and o.limit > 0 then lower(plan, o.limit, adaptation, true) end
      if o.remaining then
        local total = window(plan)
        local tolerance = TOKEN_HEADER_TOLERANCE
        if plan.dimension == 'requests' then tolerance = 0 end
        local outside = amount(plan) - total - o.remaining - tolerance
        if outside > 0 then
          charge_now(plan, outside)
          count('x:provider:' .. plan.dimension, outside)
        end
      end
    end
  end
end

local function finish(result, granted)
  result.grantedIds = granted
  if #granted > 0 then redis.call('PUBLISH', P .. ':grants', cjson.encode(granted)) end
  return cjson.encode(result)
end

-- Operations: each takes its arguments (ARGV from position A on, or one entry of a batch) and
-- returns its reply; grants it made for waiters are added to `granted`.
local granted = {}
local ops = {}

ops.acquire = function(a)
  local req = a[1]
  if type(req) == 'string' then req = cjson.decode(req) end
  pump(granted)
  local tier = tier_of(req.priority)
  local ahead = redis.call('ZCARD', qt(0))
  if tier == 1 then ahead = ahead + redis.call('ZCARD', qt(1)) end
  local cu, cr = closed_until()
  local f = fit(req, req.maxWaitMs > 0)
  if ahead == 0 and cu == 0 and f.fits then
    local rec = new_record(req, now)
    grant(rec, false)
    save(rec)
    return { kind = 'granted', nowMs = now, lease = lease_of(rec) }
  end
  local retry, limit = retry_at(f), f.limit
  if cu > 0 and cu >= f.at then retry, limit = cu, 'closed: ' .. cr end
  local earliest = f.at
  if cu > earliest then earliest = cu end
  if req.maxWaitMs <= 0 or earliest > now + req.maxWaitMs then
    count('r:' .. req.budget, 1)
    return { kind = 'rejected', nowMs = now, retryAtMs = retry, limit = limit }
  end
  local seq = redis.call('HINCRBY', KM, 'seq', 1)
  local rec = new_record(req, now + req.maxWaitMs)
  save(rec)
  redis.call('ZADD', KG, rec.dl + GRACE, req.id)
  enqueue(rec, seq)
  count('bw:' .. req.budget, 1)
  local wake = pump(granted)
  if wake == 0 or wake > rec.dl then wake = rec.dl end
  return { kind = 'queued', nowMs = now, wakeAtMs = wake }
end

ops.settle = function(a)
  local id, input, output, outcome = a[1], tonumber(a[2]), tonumber(a[3]), a[4]
  local retry_after, reset_at = tonumber(a[5]) or 0, tonumber(a[6]) or 0
  local rec = load(id)
  if not rec or rec.st == 'waiting' or rec.st == 'timedOut' then return { kind = 'unknown' } end
  if rec.st == 'settled' then
    return { kind = 'alreadySettled', charged = rec.ch, settledAtMs = rec.sa }
  end
  for _, charge in ipairs(rec.win) do recharge(rec, charge, charge_for(charge.d, input, output, outcome)) end
  local was_active = rec.st == 'active'
  if was_active then release(rec) end
  if outcome ~= 'ok' then count('o:' .. rec.req.budget .. ':' .. outcome, 1) end
  local observations = {}
  if a[7] ~= '' then observations = cjson.decode(a[7]) end
  adapt(rec, outcome, retry_after, reset_at, observations)
  local charged = { requests = 1, inputTokens = charge_for('inputTokens', input, output, outcome),
    outputTokens = charge_for('outputTokens', input, output, outcome),
    totalTokens = charge_for('totalTokens', input, output, outcome) }
  -- Only the answer to a repeated settle is kept.
  save({ req = { id = id, budget = rec.req.budget }, st = 'settled', ch = charged, sa = now })
  redis.call('ZADD', KG, now + SETTLED_GRACE, id)
  pump(granted)
  local kind = 'settledAfterExpiry'
  if was_active then kind = 'settled' end
  return { kind = kind, charged = charged, settledAtMs = now }
end

ops.heartbeat = function(a)
  local id, extend = a[1], tonumber(a[2])
  local rec = load(id)
  if not rec or rec.st == 'waiting' or rec.st == 'timedOut' then return { kind = 'unknown' } end
  if rec.st == 'expired' then return { kind = 'expired' } end
  if rec.st == 'settled' then return { kind = 'settled' } end
  if a[3] ~= '' then
    local input, output = tonumber(a[3]), tonumber(a[4])
    for _, charge in ipairs(rec.win) do
      local used = charge_for(charge.d, input, output, 'ok')
      if used > charge.c then recharge(rec, charge, used) end
    end
  end
  rec.ea = now + extend
  save(rec)
  redis.call('ZADD', KX, rec.ea, id)
  return { kind = 'extended', expiresAtMs = rec.ea }
end

ops.pump = function(a)
  local wake = pump(granted)
  return { nowMs = now, wakeAtMs = wake }
end

local function claim_or_cancel(op, a)
  local id = a[1]
  local rec = load(id)
  if rec and rec.st == 'active' and rec.uc then
    rec.uc = false
    save(rec)
    return { kind = 'granted', lease = lease_of(rec) }
  end
  if rec and rec.st == 'waiting' and op == 'claim' then
    local wake = pump(granted)
    if wake == 0 then wake = rec.dl end
    return { kind = 'waiting', wakeAtMs = wake }
  end
  if rec and rec.st == 'waiting' then
    dequeue(rec)
    rec.st = 'timedOut'
    save(rec)
    pump(granted)
  end
  local retry, limit = now + UNSCHEDULED_RETRY_MS, ''
  if rec and rec.req.limits then
    count('r:' .. rec.req.budget, 1)
    local f = fit(rec.req, true)
    retry, limit = retry_at(f), f.limit
    local cu, cr = closed_until()
    if cu > 0 and cu >= f.at then retry, limit = cu, 'closed: ' .. cr end
  end
  return { kind = 'gone', nowMs = now, retryAtMs = retry, limit = limit }
end

ops.usage = function(a)
  local plans = cjson.decode(a[1])
  local limits = {}
  for i, plan in ipairs(plans) do
    local used
    if plan.windowMs == 0 then
      used = tonumber(redis.call('HGET', KC, plan.key)) or 0
    else
      used = window(plan)
    end
    limits[i] = { key = plan.key, used = used, effective = amount(plan) }
  end
  local cu, cr = closed_until()
  return { nowMs = now, limits = limits, counters = redis.call('HGETALL', KM),
    waiters = waiting(), closedUntilMs = cu, closedReason = cr }
end

ops.forgetBudget = function(a)
  local budget, keys = a[1], cjson.decode(a[2])
  for _, key in ipairs(keys) do
    redis.call('DEL', P .. ':w:' .. key)
    redis.call('HDEL', KC, key)
  end
  local all = redis.call('HGETALL', KM)
  for i = 1, #all, 2 do
    local field = all[i]
    local _, _, b = string.find(field, '^[^:]+:([^:]+)')
    if b == budget then redis.call('HDEL', KM, field) end
  end
  return {}
end

ops.claim = function(a) return claim_or_cancel('claim', a) end
ops.cancel = function(a) return claim_or_cancel('cancel', a) end

collect()

-- A batch runs several operations, in order, at one Redis time, as the same calls one after
-- another would: ARGV[A] is a JSON array of [operation, arguments...].
if op == 'batch' then
  local results = {}
  for i, item in ipairs(cjson.decode(ARGV[A])) do
    local handler = ops[item[1]]
    if not handler then return redis.error_reply('tokenlease: unknown operation ' .. tostring(item[1])) end
    results[i] = handler({ unpack(item, 2) })
  end
  if #granted > 0 then redis.call('PUBLISH', P .. ':grants', cjson.encode(granted)) end
  return cjson.encode({ results = results, grantedIds = granted })
end

local handler = ops[op]
if not handler then return redis.error_reply('tokenlease: unknown operation ' .. op) end
return finish(handler({ unpack(ARGV, A) }), granted)
