-- The lease store's operations, one atomic script (see store.ts for the model and
-- memory-store.ts for the same algorithm in TypeScript; keep the two in step).
--
-- KEYS[1]  the provider's main hash; every other key shares its hash tag (one cluster slot)
-- ARGV[1]  operation   ARGV[2] key prefix   ARGV[3] clock override in ms ('' = Redis TIME)
-- ARGV[4]  record grace ms   ARGV[5] gc batch   ARGV[6] pump batch   ARGV[7] settled grace ms
-- ARGV[8..] operation arguments: for `acquire`, the request and the limit definitions it names
--           that Redis may not hold yet; for `batch`, the operations and the definitions their
--           requests name, likewise (JSON, or '' for none)
-- Keys, under the prefix P (ARGV[2]): P:m the main hash (per-budget counters, fair-queue state,
-- closures, and each limit's window, slots, pacing and adapted amount, see prime_limits); P:r
-- lease and waiter records; P:x leases by expiry; P:g records to forget, by time; P:d limit
-- definitions; P:s:<slice> settled answers; P:qt:<tier>, P:qp:<tier>:<budget>, P:qa:<tier>:<budget>
-- the queue; channel P:grants announces grants made for waiters.
-- Replies are JSON, leaving out what the caller already knows: cjson spends ~0.7 us formatting
-- each number. Records are packed with `struct` (see encode_record).
--
-- Loaded as a Redis function library where Redis has functions (redis-store.ts prepends the
-- library header and FUNCTION_NAME), else run as a script. As a library, everything above
-- `main` is set up once at load, not on every call: as a script, creating its ~100 closures
-- costs more than a small operation. State of one call lives in the locals `begin` resets.

-- The library functions the operations use, as upvalues. While it runs, a library's global table
-- is empty and reaches Redis's globals through a metatable, so each use of a global costs two table
-- lookups and a metamethod (table lookups were a tenth of the script's instructions, callgrind of
-- redis-server). They cannot be read while the library loads, so the first call binds them.
-- Arrays are walked with numeric for loops rather than ipairs, each of whose steps is a C call.
local function library_functions()
  return tonumber, tostring, type, pairs, ipairs, unpack, math.floor, math.ceil, math.min, math.max,
    math.abs, redis.call, cjson.encode, cjson.decode, struct.pack, struct.unpack, string.sub, string.rep,
    string.find, string.match
end
local tonumber, tostring, type, pairs, ipairs, unpack, math_floor, math_ceil, math_min, math_max
local math_abs, redis_call, cjson_encode, cjson_decode, struct_pack, struct_unpack, string_sub
local string_rep, string_find, string_match

-- Set by `begin` for each call.
local op, P, now, GRACE, GC_BATCH, PUMP_BATCH, SETTLED_GRACE
local KM, KR, KX, KG, KD
local A = 8
local UNSCHEDULED_RETRY_MS = 250
local DEFAULT_CLOSE_MS, MAX_CLOSE_MS = 60000, 7 * 86400000
local RATE_BACKOFF, TOKEN_HEADER_TOLERANCE = 0.97, 1000
local PACE_FREE_SHARE, PACE_BURST_SHARE, PACE_MAX_WINDOW_MS = 0.25, 0.02, 60000
-- Settled answers, by the time slice they were settled in (see save_settled); the forget sweeps
-- run at most once per SWEEP_MS.
local SLICE_MS, SWEEP_MS = 5000, 1000
local INF = 1e300
-- A direct grant's headroom (store.ts HEADROOM_*): the requests figure when no limit bounds them,
-- and the share's rounding (to millionths, as the JSON reply would cut it at 14 digits anyway).
local HEADROOM_UNBOUNDED_REQUESTS, HEADROOM_FRACTION_STEP = 1e9, 1e6

-- The main hash holds a hundred or more fields (a window's buckets, per-budget counters). Redis
-- keeps a hash of up to hash-max-listpack-entries fields (128, or 512 as Debian ships it) as a
-- listpack, where every HMGET or HSET field is a linear scan: a tenth of the script's time (callgrind
-- of redis-server). A value longer than hash-max-listpack-value (64 bytes) makes Redis keep the hash as
-- a hash table for good, so the main hash carries one, as field 'ht'.
local HASHTABLE_NOTE = 'tokenlease: a value over 64 bytes keeps this hash a hash table, whose fields are found without a scan'

-- Write-back cache --------------------------------------------------------------------------
-- Each redis.call costs a few microseconds, most of a small operation's time. Hash fields,
-- lease records and the expiry/forget sorted sets are therefore read from Redis once per script
-- and written once at its end (`flush`): a batch of operations costs one HSET per hash touched,
-- not one per counter per operation. Anything that reads a whole hash or sorted set flushes
-- that key first.

local hcache -- key -> field -> value (false: known absent)
local hdirty -- key -> field -> true

-- map[key], made empty on first use.
local function entry(map, key)
  local t = map[key]
  if not t then
    t = {}
    map[key] = t
  end
  return t
end

local function fields_of(key) return entry(hcache, key) end

-- Reads any of `fields` not cached yet with one HMGET.
local function hprime(key, fields)
  local h = fields_of(key)
  local missing -- made only when needed: most calls find every field cached
  for i = 1, #fields do
    local f = fields[i]
    if h[f] == nil then
      missing = missing or {}
      missing[#missing + 1] = f
    end
  end
  if not missing then return end
  local values = redis_call('HMGET', key, unpack(missing))
  for i = 1, #missing do h[missing[i]] = values[i] end
end

-- hget, hnum and hset run some ninety times per call: they look the cache up themselves, calling
-- fields_of and entry only to make a table (a Lua function call costs more than the lookup).
local function hget(key, field)
  local h = hcache[key] or fields_of(key)
  local v = h[field]
  if v == nil then
    v = redis_call('HGET', key, field)
    h[field] = v
  end
  if v == false then return nil end
  return v
end

local function hnum(key, field)
  local h = hcache[key]
  local v = h and h[field]
  if v == nil then return tonumber(hget(key, field)) end
  if v == false then return nil end
  return tonumber(v)
end

local function hset(key, field, value)
  local h = hcache[key] or fields_of(key)
  h[field] = value
  local d = hdirty[key] or entry(hdirty, key)
  d[field] = true
end

local function hdel(key, field) hset(key, field, false) end

local function hincr(key, field, delta)
  local v = (hnum(key, field) or 0) + delta
  hset(key, field, v)
  return v
end

-- Runs a command with many trailing arguments in chunks (Lua's unpack has a stack limit).
local function call_chunked(command, key, args)
  local i = 1
  while i <= #args do
    local last = math_min(#args, i + 3999)
    redis_call(command, key, unpack(args, i, last))
    i = last + 1
  end
end

-- Writes one key's pending changes, `changes` mapping a field or member to its new value (false:
-- remove it), with one add and one remove command; ZADD takes the value (score) first.
local function write_changes(key, changes, add_command, remove_command)
  local value_first = add_command == 'ZADD'
  local adds, removes = {}, {}
  for member, value in pairs(changes) do
    if value == false then
      removes[#removes + 1] = member
    elseif value_first then
      adds[#adds + 1] = value
      adds[#adds + 1] = member
    else
      adds[#adds + 1] = member
      adds[#adds + 1] = value
    end
  end
  call_chunked(add_command, key, adds)
  call_chunked(remove_command, key, removes)
end

local function hflush(key)
  local d = hdirty[key]
  if not d then return end
  hdirty[key] = nil
  local h, changes = hcache[key], {}
  for f in pairs(d) do changes[f] = h[f] end
  write_changes(key, changes, 'HSET', 'HDEL')
end

-- A whole hash as field/value pairs (flushed first).
local function hgetall(key)
  hflush(key)
  return redis_call('HGETALL', key)
end

-- Sorted-set changes are kept per key until flushed: member -> score (false: remove).
local zpending
local function zset(key, member, score) entry(zpending, key)[member] = score end
local function zadd(key, score, member) zset(key, member, score) end
local function zrem(key, member) zset(key, member, false) end
local function zflush(key)
  local z = zpending[key]
  if not z then return end
  zpending[key] = nil
  write_changes(key, z, 'ZADD', 'ZREM')
end

-- Lease records, decoded once per script: id -> record (false: known absent); `recdirty` holds
-- the ids to write back (or delete, when false). Settled answers live apart (see save_settled).
local records, recdirty, rawrecords
local settled, settleddirty

-- Limit definitions ----------------------------------------------------------------------------
-- A request names each of its limits by definition id (redis-store.ts derives it from everything
-- but `need`) and says what it takes of it: {d = id, need = n}. Definitions are kept in KD, so a
-- record carries [id, need] per limit rather than the whole limit, which keeps the JSON decoded
-- and encoded per lease small. A limit reads its definition's fields through a metatable.
-- Decoded definitions, id -> metatable, kept across calls as a library (an id names its content).
local definitions = {}
local definition_count = 0
local registered -- this call: ids known to be in KD

local function remember_definition(id, json)
  if definition_count >= 1000 then
    definitions, definition_count = {}, 0
  end
  local meta = { __index = cjson_decode(json) }
  definitions[id] = meta
  definition_count = definition_count + 1
  return meta
end

local function definition(id)
  local meta = definitions[id]
  if meta then return meta end
  local raw = hget(KD, id)
  if raw then return remember_definition(id, raw) end
  return false
end

-- Stores the definitions a call's requests name (id -> JSON) unless already known.
local function register_definitions(raw)
  if raw == nil or raw == '' then return end
  local named, ids = cjson_decode(raw), {}
  for id in pairs(named) do ids[#ids + 1] = id end
  hprime(KD, ids)
  for id, json in pairs(named) do
    if not registered[id] then
      registered[id] = true
      if hget(KD, id) == nil then
        -- Kept without expiry: a record may name a definition for as long as its lease lives, and
        -- definitions are few (a new one only when a limit is edited).
        hset(KD, id, json)
      end
      if not definitions[id] then remember_definition(id, json) end
    end
  end
end

-- Do the calls' acquires name a definition Redis does not hold? redis-store.ts sends a
-- definition until Redis has taken it, then only its id; if KD has lost one since (deleted by
-- hand, a restart or failover without it), the call must not run: its limit would be left out.
local function definitions_missing(calls)
  local unknown, seen
  for ix = 1, #calls do
    local item = calls[ix]
    local w = item[1] == 'acquire' and item[2]
    if type(w) == 'table' then
      for i = 15, #w, 2 do
        local id = w[i]
        if not registered[id] then
          unknown, seen = unknown or {}, seen or {}
          if not seen[id] then
            seen[id] = true
            unknown[#unknown + 1] = id
          end
        end
      end
    end
  end
  if not unknown then return false end
  hprime(KD, unknown)
  for ix = 1, #unknown do
    local id = unknown[ix]
    if hget(KD, id) == nil then return true end
    registered[id] = true
  end
  return false
end

-- A request as it travels (redis-store.ts wireRequest): one array, no field names to decode:
-- id, budget, priority, weight, cost, agingMs, probeMs and maxProbeMs (-1: no adaptation),
-- leaseTimeoutMs, maxWaitMs, the reservation's four amounts, then per limit its definition id
-- and need. A limit whose definition is gone (its hash deleted by hand) is left out rather than
-- read as nothing.
local function request_of(w)
  local limits = {}
  for i = 15, #w, 2 do
    local meta = definition(w[i])
    if meta then limits[#limits + 1] = setmetatable({ d = w[i], need = w[i + 1] }, meta) end
  end
  local adaptation
  if w[7] >= 0 then adaptation = { probeMs = w[7], maxProbeMs = w[8] } end
  return { id = w[1], budget = w[2], priority = w[3], weight = w[4], cost = w[5], agingMs = w[6],
    adaptation = adaptation, leaseTimeoutMs = w[9], maxWaitMs = w[10], limits = limits,
    reserved = { requests = w[11], inputTokens = w[12], outputTokens = w[13], totalTokens = w[14] } }
end

-- Record encoding ------------------------------------------------------------------------------
-- Records are packed with `struct`, field by field: decoding them through cjson or cmsgpack
-- builds every table key by key (a third of a settle's time), while here each table is made by
-- one constructor. A window charge or slot names its limit by position in req.limits.
local STATES = { 'waiting', 'active', 'expired', 'timedOut' }
local STATE_CODES = { waiting = 1, active = 2, expired = 3, timedOut = 4 }
local RECORD_HEAD = '<BBBddddHc0Hc0ddddddBdddddd'

local function limit_index(req, key)
  for i = 1, #req.limits do
    local plan = req.limits[i]
    if plan.key == key then return i end
  end
  return 0
end

-- A record is packed with one struct.pack: its format, by shape (number of limits, window charges
-- and slots), is made once, and its values go through one scratch array (no table per record, and
-- one string rather than one per part and their concatenation).
local record_formats, pack_args = {}, {}
local function record_format(nlimits, nwin, nslots)
  local shape = (nlimits * 256 + nwin) * 256 + nslots
  local format = record_formats[shape]
  if not format then
    format = RECORD_HEAD .. string_rep('Hc0d', nlimits) .. 'BB' .. string_rep('BdddB', nwin) .. string_rep('B', nslots)
    record_formats[shape] = format
  end
  return format
end

local function encode_record(rec)
  local req = rec.req
  local adaptation, probe, max_probe = 0, 0, 0
  if type(req.adaptation) == 'table' then
    adaptation, probe, max_probe = 1, req.adaptation.probeMs, req.adaptation.maxProbeMs
  end
  local r, limits, win, slots = req.reserved, req.limits, rec.win, rec.slots
  local a = pack_args
  a[1], a[2], a[3], a[4], a[5], a[6], a[7] = STATE_CODES[rec.st], rec.uc and 1 or 0, adaptation, rec.enq, rec.dl,
    rec.ga, rec.ea
  a[8], a[9], a[10], a[11] = #req.id, req.id, #req.budget, req.budget
  a[12], a[13], a[14], a[15], a[16], a[17] = req.priority, req.weight, req.cost, req.agingMs, req.leaseTimeoutMs,
    req.maxWaitMs
  a[18], a[19], a[20], a[21], a[22], a[23], a[24] = #limits, probe, max_probe, r.requests, r.inputTokens,
    r.outputTokens, r.totalTokens
  local n = 24
  for ix = 1, #limits do
    local plan = limits[ix]
    a[n + 1], a[n + 2], a[n + 3] = #plan.d, plan.d, plan.need
    n = n + 3
  end
  a[n + 1], a[n + 2] = #win, #slots
  n = n + 2
  for ix = 1, #win do
    local c = win[ix]
    a[n + 1], a[n + 2], a[n + 3], a[n + 4], a[n + 5] = limit_index(req, c.k), c.b, c.c, c.w, c.p
    n = n + 5
  end
  for ix = 1, #slots do
    local slot = slots[ix]
    n = n + 1
    a[n] = limit_index(req, slot.k)
  end
  return struct_pack(record_format(#limits, #win, #slots), unpack(a, 1, n))
end

-- Decodes a record and gives its limits their definitions (a limit whose definition is gone, its
-- hash deleted by hand, is left out, with its charges and slots, rather than read as nothing).
local function decode_record(raw)
  local st, uc, adaptation, enq, dl, ga, ea, id, budget, priority, weight, cost, aging, lease_timeout, max_wait,
    nlimits, probe, max_probe, requests, input, output, total, pos = struct_unpack(RECORD_HEAD, raw)
  local plans, kept = {}, {}
  for i = 1, nlimits do
    local d, need
    d, need, pos = struct_unpack('<Hc0d', raw, pos)
    local meta = definition(d)
    if meta then
      plans[i] = setmetatable({ d = d, need = need }, meta)
      kept[#kept + 1] = plans[i]
    end
  end
  local req = { id = id, budget = budget, priority = priority, weight = weight, cost = cost, agingMs = aging,
    leaseTimeoutMs = lease_timeout, maxWaitMs = max_wait, limits = kept,
    reserved = { requests = requests, inputTokens = input, outputTokens = output, totalTokens = total } }
  if adaptation == 1 then req.adaptation = { probeMs = probe, maxProbeMs = max_probe } end
  local nwin, nslots
  nwin, nslots, pos = struct_unpack('<BB', raw, pos)
  local win, slots = {}, {}
  for _ = 1, nwin do
    local i, b, c, w, p
    i, b, c, w, p, pos = struct_unpack('<BdddB', raw, pos)
    local plan = plans[i]
    if plan then win[#win + 1] = { k = plan.key, d = plan.dimension, b = b, c = c, w = w, p = p } end
  end
  for _ = 1, nslots do
    local i
    i, pos = struct_unpack('<B', raw, pos)
    if plans[i] then slots[#slots + 1] = { k = plans[i].key } end
  end
  return { req = req, st = STATES[st], uc = uc == 1, enq = enq, dl = dl, ga = ga, ea = ea, win = win, slots = slots }
end

-- A settled answer: what was charged, and when.
local function encode_settled(answer)
  local ch = answer.ch
  return struct_pack('<ddddd', ch.requests, ch.inputTokens, ch.outputTokens, ch.totalTokens, answer.sa)
end
local function decode_settled(raw)
  local requests, input, output, total, sa = struct_unpack('<ddddd', raw)
  return { st = 'settled', sa = sa,
    ch = { requests = requests, inputTokens = input, outputTokens = output, totalTokens = total } }
end

-- Reads the records of `ids` not cached yet with one HMGET (a batch's settles).
local function prime_records(ids)
  local missing = {}
  for ix = 1, #ids do
    local id = ids[ix]
    if records[id] == nil and rawrecords[id] == nil then missing[#missing + 1] = id end
  end
  if #missing == 0 then return end
  local values = redis_call('HMGET', KR, unpack(missing))
  for i = 1, #missing do rawrecords[missing[i]] = values[i] end
end

-- Settled answers are kept SETTLED_GRACE for repeated settles, in one hash per SLICE_MS of
-- settle time: a whole slice is forgotten with one UNLINK (freed off the main thread) once all
-- of it is past its grace, with nothing to sort, sweep or decode per lease.
local slice_names
local function slice_key(slice)
  local name = slice_names[slice]
  if not name then
    name = P .. ':s:' .. tostring(slice)
    slice_names[slice] = name
  end
  return name
end
local function oldest_kept_slice() return math_floor((now - SETTLED_GRACE) / SLICE_MS) end

local function load_settled(id)
  local s = settled[id]
  if s == nil then
    s = false
    for slice = math_floor(now / SLICE_MS), oldest_kept_slice(), -1 do
      local raw = redis_call('HGET', slice_key(slice), id)
      if raw then
        local answer = decode_settled(raw)
        if now < answer.sa + SETTLED_GRACE then s = answer end
        break
      end
    end
    settled[id] = s
  end
  if s == false then return nil end
  return s
end

-- Records as this library last wrote them, by records key and id: the bytes and the record they
-- encode. A settle mostly reads back what an acquire wrote a moment before, so when the stored
-- bytes are still those, the record is taken from here rather than decoded (decoding is about a
-- tenth of a pair's script time). A call takes a record out as it loads it (it may change it) and
-- flush_records puts back what it wrote; what was only read is decoded again next time. Kept
-- across calls as a library (a script starts empty every call).
local written_raw, written_rec, written_count = {}, {}, 0
local MAX_WRITTEN = 2048 -- a few MB of the functions VM at most, past which settles decode again

local function take_written(id)
  local raws = written_raw[KR]
  local raw = raws and raws[id]
  if not raw then return nil end
  local recs = written_rec[KR]
  local rec = recs[id]
  raws[id], recs[id] = nil, nil
  written_count = written_count - 1
  return raw, rec
end

local function remember_written(fresh)
  local raws, recs = written_raw[KR], written_rec[KR]
  for id, raw in pairs(fresh) do
    if written_count >= MAX_WRITTEN or not raws then
      if written_count >= MAX_WRITTEN then written_raw, written_rec, written_count = {}, {}, 0 end
      raws, recs = {}, {}
      written_raw[KR], written_rec[KR] = raws, recs
    end
    if not raws[id] then written_count = written_count + 1 end
    raws[id], recs[id] = raw, records[id]
  end
end

-- The record of a lease or waiter, else its settled answer ({st = 'settled', ...}), else nil.
local function load(id)
  local rec = records[id]
  if rec == nil then
    local raw = rawrecords[id]
    if raw == nil then raw = redis_call('HGET', KR, id) end
    local known_raw, known = take_written(id)
    if raw and known_raw == raw then
      rec = known
    elseif raw then
      rec = decode_record(raw)
    else
      rec = false
    end
    records[id] = rec
  end
  if rec == false then return load_settled(id) end
  return rec
end
local function save(rec)
  records[rec.req.id] = rec
  recdirty[rec.req.id] = true
end
local function drop(id)
  records[id] = false
  recdirty[id] = true
end
local function save_settled(id, answer)
  drop(id)
  settled[id] = answer
  settleddirty[id] = true
end

local function flush_records()
  local changes, fresh = {}, {}
  for id in pairs(recdirty) do
    local raw = records[id] and encode_record(records[id])
    changes[id] = raw
    if raw then fresh[id] = raw end
  end
  write_changes(KR, changes, 'HSET', 'HDEL')
  remember_written(fresh)
  local answers = {}
  for id in pairs(settleddirty) do
    answers[#answers + 1] = id
    answers[#answers + 1] = encode_settled(settled[id])
  end
  if #answers > 0 then
    local key = slice_key(math_floor(now / SLICE_MS))
    call_chunked('HSET', key, answers)
    -- The sweep unlinks it in time; this only catches a slice left when calls stop.
    redis_call('PEXPIRE', key, SETTLED_GRACE + 3 * SLICE_MS)
  end
  recdirty, settleddirty = {}, {}
end

-- Writes everything the script changed.
local function flush()
  flush_records()
  for key in pairs(hdirty) do hflush(key) end
  for key in pairs(zpending) do zflush(key) end
end

local function count(field, delta) hincr(KM, field, delta) end
-- Counter kinds GetUsage reports per budget (store.ts budgetCounters).
local BUDGET_COUNTERS = { bi = true, bw = true, g = true, r = true, o = true }

-- Hash field names made of a limit's key or a budget and a fixed prefix/suffix, memoized across
-- calls as a library: a concatenation makes a new string each time, with its hashing and garbage,
-- and an operation needs a dozen of them while a provider has only a handful of keys and budgets.
-- NAMES.c[key] is 'c|' .. key, and so on; each table forgets everything past MAX_NAMES entries.
local MAX_NAMES = 10000
local function names(prefix, suffix)
  local size = 0
  return setmetatable({}, { __index = function(memo, key)
    if size >= MAX_NAMES then
      for k in pairs(memo) do memo[k] = nil end
      size = 0
    end
    local name = prefix .. key .. suffix
    rawset(memo, key, name)
    size = size + 1
    return name
  end })
end
-- Made by the first call (a library's load may not call setmetatable).
local NAMES
local function make_names()
  return {
    -- per limit key (see prime_limits)
    c = names('c|', ''), e = names('e|', ''), ed = names('e|', '|d'), p = names('p|', ''), ph = names('p|', '|h'),
    w = names('w|', '|'), wt = names('w|', '|t'), wf = names('w|', '|f'),
    -- per budget (see budgetCounters in store.ts and the fair queue)
    bi = names('bi:', ''), bw = names('bw:', ''), g = names('g:', ''), r = names('r:', ''), f = names('f:', ''),
  }
end

-- A window's bucket as a hash field, w|<key>|<index>: tostring of a number costs ~1.6 us here
-- (more than most of an operation's table work), and calls use the same few buckets for a while.
-- Kept across calls per key, the oldest forgotten past 256 indexes.
local bucket_fields = {}
local function bucket_field(key, index)
  local by_index = bucket_fields[key]
  if not by_index then
    by_index = { n = 0 }
    bucket_fields[key] = by_index
  end
  local name = by_index[index]
  if not name then
    if by_index.n >= 256 then
      by_index = { n = 0 }
      bucket_fields[key] = by_index
    end
    name = NAMES.w[key] .. tostring(index)
    by_index[index] = name
    by_index.n = by_index.n + 1
  end
  return name
end
local function tier_of(priority)
  if priority <= 0 then return 1 end
  return 0
end

-- Per limit, everything lives in the main hash KM (one HMGET reads what a call needs of all of
-- a request's limits, see prime_limits): its window as w|<key>|t (total), w|<key>|f (first
-- counted bucket) and w|<key>|<bucket> (charged in that bucket); in flight as c|<key>; pacing as
-- p|<key> and p|<key>|h; an adapted amount as e|<key> with e|<key>|t, |p, |l and |d.

-- Adapted amounts --------------------------------------------------------------------------------
local function adapted_of(plan) return hnum(KM, NAMES.e[plan.key]) end
local function amount(plan)
  local eff = adapted_of(plan)
  if eff and eff < plan.amount then return eff end
  return plan.amount
end

-- Windows ------------------------------------------------------------------------------------
local roll

-- Rolls the window forward to now; returns its total and floor (first counted bucket). The clock
-- does not move within a call, so a window is rolled once and then read from `windows`.
local window_totals, window_floors
local function window(plan)
  local key = plan.key
  local total = window_totals[key]
  if total then return total, window_floors[key] end
  local floor
  total, floor = roll(plan)
  window_totals[key], window_floors[key] = total, floor
  return total, floor
end
local function set_window(plan, total, floor) window_totals[plan.key], window_floors[plan.key] = total, floor end

roll = function(plan)
  local key = plan.key
  local pre, tf, ff = NAMES.w[key], NAMES.wt[key], NAMES.wf[key]
  local start = math_floor((now - plan.windowMs - plan.marginMs) / plan.bucketMs)
  local floor = hnum(KM, ff)
  if floor == nil then return 0, start end
  local total = hnum(KM, tf) or 0
  if floor > start then start = floor end
  if floor < start then
    if start - floor <= 64 then
      local fields = {}
      for i = floor, start - 1 do fields[#fields + 1] = bucket_field(key, i) end
      hprime(KM, fields)
      for ix = 1, #fields do
        local f = fields[ix]
        local a = hnum(KM, f)
        if a then
          total = total - a
          hdel(KM, f)
        end
      end
    else
      local all = hgetall(KM)
      for i = 1, #all, 2 do
        local field = all[i]
        if string_sub(field, 1, #pre) == pre then
          local index = tonumber(string_sub(field, #pre + 1))
          if index and index < start then
            total = total - tonumber(all[i + 1])
            hdel(KM, field)
          end
        end
      end
    end
    if total < 0 then total = 0 end
    hset(KM, tf, total)
    hset(KM, ff, start)
  end
  return total, start
end

-- Adds `amount` to the current bucket of a window.
local function charge_now(plan, add)
  local total, floor = window(plan)
  local key = plan.key
  local bucket = math_floor(now / plan.bucketMs)
  local field = bucket_field(key, bucket)
  hset(KM, field, (hnum(KM, field) or 0) + add)
  hset(KM, NAMES.wt[key], total + add)
  hset(KM, NAMES.wf[key], floor)
  set_window(plan, total + add, floor)
  return bucket, total
end

-- Pacing (see store.ts): per paced window limit, the time its steady rate has been spent up to
-- (p|<key>) and when it last held a request back (p|<key>|h); the last grant's budget and time
-- (lb1, lt1) and the last one of any other budget (lb2, lt2).
local function paced_limit(plan)
  return plan.scope == 'provider' and plan.windowMs > 0 and plan.windowMs <= PACE_MAX_WINDOW_MS
end
local function span_of(plan) return plan.windowMs + plan.marginMs + plan.bucketMs end

local LAST_GRANTS = { 'lb1', 'lt1', 'lb2', 'lt2' }
local function other_budget_at(budget)
  hprime(KM, LAST_GRANTS)
  local b1 = hget(KM, 'lb1')
  if b1 and b1 ~= budget then return hnum(KM, 'lt1') end
  return hnum(KM, 'lt2')
end
local function note_grant(budget)
  hprime(KM, LAST_GRANTS)
  local b1 = hget(KM, 'lb1')
  if b1 ~= budget then
    if b1 then
      hset(KM, 'lb2', b1)
      hset(KM, 'lt2', hget(KM, 'lt1'))
    end
    hset(KM, 'lb1', budget)
  end
  hset(KM, 'lt1', now)
end

-- Is a grant of plan.need on a window holding `total` paced: the window held a request back
-- lately, or another budget drew on it lately and it is filling?
local function paced_grant(budget, plan, limit, total)
  if not paced_limit(plan) then return false end
  local since = now - span_of(plan)
  local held = hnum(KM, NAMES.ph[plan.key])
  if held ~= nil and held >= since then return true end
  if total + plan.need <= limit * PACE_FREE_SHARE then return false end
  local other = other_budget_at(budget)
  return other ~= nil and other >= since
end

local function note_held(plan) hset(KM, NAMES.ph[plan.key], now) end

local function pace_of(plan) return hnum(KM, NAMES.p[plan.key]) or 0 end

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
local primed_limits
-- Reads what a call needs of each of `plans` (and of the buckets `charges` were made in) that it
-- has not read yet, in one HMGET.
local function prime_limits(plans, charges)
  local fields = {}
  for ix = 1, #plans do
    local plan = plans[ix]
    local key = plan.key
    if not primed_limits[key] then
      primed_limits[key] = true
      fields[#fields + 1] = NAMES.e[key]
      if plan.windowMs == 0 then
        fields[#fields + 1] = NAMES.c[key]
      else
        fields[#fields + 1] = NAMES.wt[key]
        fields[#fields + 1] = NAMES.wf[key]
        fields[#fields + 1] = bucket_field(key, math_floor(now / plan.bucketMs))
        if paced_limit(plan) then
          fields[#fields + 1] = NAMES.p[key]
          fields[#fields + 1] = NAMES.ph[key]
        end
      end
    end
  end
  for ix = 1, charges and #charges or 0 do
    local charge = charges[ix]
    fields[#fields + 1] = bucket_field(charge.k, charge.b)
  end
  if #fields > 0 then hprime(KM, fields) end
end

-- Narrows the headroom a grant now would leave (hf: smallest free share, hr: how many more requests
-- of this size fit) by a limit of `limit` holding `used` before the grant (store.ts narrowHeadroom).
local function narrow_headroom(result, limit, used, need)
  local free = limit - used - need
  if free < 0 then free = 0 end
  local share = 0
  if limit > 0 then share = free / limit end
  if share < result.hf then result.hf = share end
  if need > 0 then
    local more = math_floor(free / need)
    if more < result.hr then result.hr = more end
  end
end

local function fit(req, pace)
  local result = { fits = true, at = now, conc = false, limit = '', hf = 1, hr = HEADROOM_UNBOUNDED_REQUESTS }
  prime_limits(req.limits)
  for ix = 1, #req.limits do
    local plan = req.limits[ix]
    local limit = amount(plan)
    if plan.windowMs == 0 then
      local used = hnum(KM, NAMES.c[plan.key]) or 0
      narrow_headroom(result, limit, used, plan.need)
      if used + plan.need > limit then
        result.fits = false
        result.conc = true
        if result.limit == '' then result.limit = plan.label end
      end
    else
      local total, floor = window(plan)
      narrow_headroom(result, limit, total, plan.need)
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
        -- The buckets still counted, oldest first: when has enough of them left?
        local fields = {}
        for index = floor, math_floor(now / plan.bucketMs) do fields[#fields + 1] = bucket_field(plan.key, index) end
        hprime(KM, fields)
        local freed, at = 0, INF
        for i = 1, #fields do
          local field = fields[i]
          freed = freed + (hnum(KM, field) or 0)
          if freed >= excess then
            at = (floor + i) * plan.bucketMs + plan.windowMs + plan.marginMs
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
-- waiters by priority then arrival, and by arrival alone for aging. (Read at every grant from
-- the queue, so written straight through.)
-- (Tiers are named by string: concatenating a number formats it, slowly.)
local TIERS = { [0] = '0', [1] = '1' }
local QT = {}
local function qp(tier, budget) return P .. ':qp:' .. TIERS[tier] .. ':' .. budget end
local function qa(tier, budget) return P .. ':qa:' .. TIERS[tier] .. ':' .. budget end
local function qt(tier) return QT[tier] end

local function retag(tier, budget)
  if redis_call('EXISTS', qp(tier, budget)) == 0 then
    redis_call('ZREM', qt(tier), budget)
    return
  end
  local vt, finish = hnum(KM, 'vt') or 0, hnum(KM, NAMES.f[budget]) or 0
  if finish < vt then finish = vt end
  redis_call('ZADD', qt(tier), finish, budget)
end

local function enqueue(rec, seq)
  local req = rec.req
  local tier = tier_of(req.priority)
  redis_call('ZADD', qp(tier, req.budget), -req.priority * 1e12 + seq, req.id)
  redis_call('ZADD', qa(tier, req.budget), rec.enq, req.id)
  count('nw', 1)
  retag(tier, req.budget)
end

local function dequeue(rec)
  local req = rec.req
  local tier = tier_of(req.priority)
  if redis_call('ZREM', qp(tier, req.budget), req.id) == 0 then return end
  redis_call('ZREM', qa(tier, req.budget), req.id)
  count('nw', -1)
  count(NAMES.bw[req.budget], -1)
  retag(tier, req.budget)
end

local function waiting() return hnum(KM, 'nw') or 0 end

local function grant(rec, unclaimed)
  local req = rec.req
  rec.win = {}
  rec.slots = {}
  for ix = 1, #req.limits do
    local plan = req.limits[ix]
    if plan.windowMs == 0 then
      hincr(KM, NAMES.c[plan.key], plan.need)
      rec.slots[#rec.slots + 1] = { k = plan.key }
    else
      local limit = amount(plan)
      local total = window(plan)
      local pacing = 0
      if paced_grant(req.budget, plan, limit, total) then
        local pace = pace_of(plan)
        if pace < now then pace = now end
        hset(KM, NAMES.p[plan.key], pace + plan.need * span_of(plan) / limit)
        pacing = 1
      end
      local bucket, before = charge_now(plan, plan.need)
      rec.win[#rec.win + 1] = { k = plan.key, d = plan.dimension, b = bucket, c = plan.need, w = before, p = pacing }
    end
  end
  for ix = 1, #req.limits do
    local plan = req.limits[ix]
    if paced_limit(plan) then
      note_grant(req.budget)
      break
    end
  end
  -- Start-time fair queuing: the budget's next request starts where this one finishes.
  local finish_field = NAMES.f[req.budget]
  local vt, start = hnum(KM, 'vt') or 0, hnum(KM, finish_field) or 0
  if start < vt then start = vt end
  hset(KM, finish_field, start + req.cost / req.weight)
  hset(KM, 'vt', start)
  if waiting() > 0 then
    retag(0, req.budget)
    retag(1, req.budget)
  end
  rec.st = 'active'
  rec.uc = unclaimed
  rec.ga = now
  rec.ea = now + req.leaseTimeoutMs
  zadd(KX, rec.ea, req.id)
  -- A waiter granted from the queue no longer needs forgetting (a direct grant never did).
  if unclaimed then zrem(KG, req.id) end
  count(NAMES.bi[req.budget], 1)
  count(NAMES.g[req.budget], 1)
end

local function release(rec)
  local slots = rec.slots
  for ix = 1, slots and #slots or 0 do
    local field = NAMES.c[slots[ix].k]
    if hincr(KM, field, -1) < 0 then hset(KM, field, 0) end
  end
  zrem(KX, rec.req.id)
  count(NAMES.bi[rec.req.budget], -1)
end

-- What an outcome charges (store.ts chargeFor): an unsent call its request, an unused lease nothing.
local function charge_for(dim, input, output, outcome)
  if outcome == 'unused' then return 0 end
  if dim == 'requests' then return 1 end
  if outcome == 'notSent' then return 0 end
  if dim == 'inputTokens' then return input end
  if dim == 'outputTokens' then return output end
  if dim == 'totalTokens' then return input + output end
  return 0
end

local function plan_of(rec, key)
  for ix = 1, #rec.req.limits do
    local p = rec.req.limits[ix]
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
    local pace_field = NAMES.p[plan.key]
    local pace = hnum(KM, pace_field)
    if pace then hset(KM, pace_field, pace + delta * span_of(plan) / amount(plan)) end
  end
  local total, floor = window(plan)
  if charge.b < floor then return end
  local field = bucket_field(plan.key, charge.b)
  local current = hnum(KM, field) or 0
  local next = current + delta
  if next < 0 then next = 0 end
  hset(KM, field, next)
  hset(KM, NAMES.wt[plan.key], total + next - current)
  hset(KM, NAMES.wf[plan.key], floor)
  set_window(plan, total + next - current, floor)
end

local function lease_of(rec)
  return { id = rec.req.id, budget = rec.req.budget, enqueuedAtMs = rec.enq, grantedAtMs = rec.ga,
    expiresAtMs = rec.ea, reserved = rec.req.reserved }
end

-- Expires leases past their time and forgets old records; bounded per operation.
local function collect()
  local expired = redis_call('ZRANGEBYSCORE', KX, '-inf', now, 'LIMIT', 0, GC_BATCH)
  for ix = 1, #expired do
    local id = expired[ix]
    local rec = load(id)
    if rec and rec.st == 'active' then
      release(rec)
      rec.st = 'expired'
      rec.uc = false
      save(rec)
      zadd(KG, now + GRACE, id)
    else
      zrem(KX, id)
    end
  end
  -- Forgetting is not urgent: once per SWEEP_MS.
  if now < (hnum(KM, 'gc') or 0) then return end
  hset(KM, 'gc', now + SWEEP_MS)
  local forget = redis_call('ZRANGEBYSCORE', KG, '-inf', now, 'LIMIT', 0, GC_BATCH)
  for ix = 1, #forget do
    local id = forget[ix]
    zrem(KG, id)
    local rec = load(id)
    if rec and rec.st ~= 'active' and rec.st ~= 'settled' then
      if rec.st == 'waiting' then dequeue(rec) end
      drop(id)
    end
  end
  local oldest = oldest_kept_slice()
  local swept = hnum(KM, 'us') or (oldest - 1)
  for slice = math_max(swept + 1, oldest - 64), oldest - 1 do redis_call('UNLINK', slice_key(slice)) end
  hset(KM, 'us', oldest - 1)
end

-- The next waiter in grant order: first tier first, fairest budget, then priority with aging.
local function head()
  for tier = 0, 1 do
    local budget = redis_call('ZRANGE', qt(tier), 0, 0)[1]
    if budget then
      local oldest = redis_call('ZRANGE', qa(tier, budget), 0, 0, 'WITHSCORES')
      local id
      if oldest[1] then
        local rec = load(oldest[1])
        if rec and rec.st == 'waiting' and now - tonumber(oldest[2]) >= rec.req.agingMs then return rec end
      end
      id = redis_call('ZRANGE', qp(tier, budget), 0, 0)[1]
      if id then
        local rec = load(id)
        if rec and rec.st == 'waiting' then return rec end
        -- A missing record must not wedge the queue.
        redis_call('ZREM', qp(tier, budget), id)
        redis_call('ZREM', qa(tier, budget), id)
        count('nw', -1)
        retag(tier, budget)
        return head()
      end
      redis_call('ZREM', qt(tier), budget)
      return head()
    end
  end
  return nil
end

local CLOSED = { 'cu', 'cr' }
local function closed_until()
  hprime(KM, CLOSED)
  local cu = hnum(KM, 'cu') or 0
  if cu > now then return cu, hget(KM, 'cr') or '' end
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
          zflush(KX)
          local first = redis_call('ZRANGE', KX, 0, 0, 'WITHSCORES')
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
  return { req = req, st = 'waiting', enq = now, dl = deadline, ga = 0, ea = 0, uc = false, win = {}, slots = {} }
end

-- Adaptation ----------------------------------------------------------------------------------

-- Sets a limit's effective amount to `estimate` if lower; a probe refused soon backs off longer.
local function lower(plan, estimate, adaptation, stated)
  local current = amount(plan)
  -- Multiplicative decrease at most: one refusal never takes more than half (a limit the
  -- provider states in its headers is taken as it is).
  if not stated and estimate < math_ceil(current / 2) then estimate = math_ceil(current / 2) end
  if estimate >= current then return end
  local k = 'e|' .. plan.key
  hprime(KM, { k .. '|p', k .. '|l' })
  local probe, last_probe = hnum(KM, k .. '|p'), hnum(KM, k .. '|l') or 0
  local next_probe = adaptation.probeMs
  if probe and last_probe > 0 and now - last_probe < 2 * probe then
    next_probe = math_min(adaptation.maxProbeMs, probe * 2)
  end
  hset(KM, k, estimate)
  hset(KM, k .. '|t', now)
  hset(KM, k .. '|p', next_probe)
  hset(KM, k .. '|l', last_probe)
  hset(KM, k .. '|d', now)
end

local function observed_plan(req, dimension)
  local best
  for ix = 1, #req.limits do
    local plan = req.limits[ix]
    if plan.adaptive and plan.windowMs > 0 and plan.dimension == dimension then
      if not best or math_abs(plan.windowMs - 60000) < math_abs(best.windowMs - 60000) then best = plan end
    end
  end
  return best
end

-- A rate refusal that teaches nothing by its count (see memory-store.ts): the call's own headers
-- state the limit of the refused window, or it was lowered less than a window ago.
local function refusal_explained(req, plan, observations)
  local lowered = hnum(KM, NAMES.ed[plan.key])
  if lowered and now - lowered < span_of(plan) then return true end
  for ix = 1, #observations do
    local o = observations[ix]
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
  if close > 0 then
    local cu = hnum(KM, 'cu') or 0
    if close > cu then
      hset(KM, 'cu', close)
      hset(KM, 'cr', outcome .. ' from the provider')
    end
  end
  local adaptation = rec.req.adaptation
  if type(adaptation) ~= 'table' then return end
  if outcome == 'refusedConcurrency' then
    for ix = 1, #rec.slots do
      local slot = rec.slots[ix]
      local plan = plan_of(rec, slot.k)
      if plan and plan.adaptive then
        -- The provider refused because the account's other calls filled it: the slots still in
        -- use once this one is freed bound that from above, whatever order calls reached it in.
        local estimate = hnum(KM, NAMES.c[slot.k]) or 0
        if estimate < 1 then estimate = 1 end
        lower(plan, estimate, adaptation)
      end
    end
  elseif outcome == 'refusedRate' then
    local worst, worst_charge, worst_ratio
    for ix = 1, #rec.win do
      local charge = rec.win[ix]
      local plan = plan_of(rec, charge.k)
      if plan and plan.adaptive then
        local ratio = (charge.w + plan.need) / amount(plan)
        if not worst or ratio > worst_ratio then worst, worst_charge, worst_ratio = plan, charge, ratio end
      end
    end
    if worst and not refusal_explained(rec.req, worst, observations) then
      local estimate = math_floor(worst_charge.w * RATE_BACKOFF)
      if estimate < worst.need then estimate = worst.need end
      lower(worst, estimate, adaptation)
    end
  elseif outcome == 'ok' then
    for ix = 1, #rec.req.limits do
      local plan = rec.req.limits[ix]
      if plan.adaptive and adapted_of(plan) then
        local k = 'e|' .. plan.key
        hprime(KM, { k .. '|t', k .. '|p' })
        local eff, changed, probe = hnum(KM, k), hnum(KM, k .. '|t') or 0, hnum(KM, k .. '|p') or 0
        if eff and eff < plan.amount and now - changed >= probe then
          local step = 1
          if plan.windowMs > 0 then step = math_max(1, math_ceil(plan.amount * 0.02)) end
          hset(KM, k, math_min(plan.amount, eff + step))
          hset(KM, k .. '|t', now)
          hset(KM, k .. '|l', now)
        end
      end
    end
  end
  for ix = 1, #observations do
    local o = observations[ix]
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

-- Operations: each takes its arguments (ARGV from position A on, or one entry of a batch) and
-- returns its reply; grants it made for waiters are added to `granted`.
local granted
local ops = {}

ops.acquire = function(a)
  local req = request_of(a[1]) -- decoded by main
  pump(granted)
  local tier = tier_of(req.priority)
  local ahead = 0
  if waiting() > 0 then
    ahead = redis_call('ZCARD', qt(0))
    if tier == 1 then ahead = ahead + redis_call('ZCARD', qt(1)) end
  end
  local cu, cr = closed_until()
  local f = fit(req, req.maxWaitMs > 0)
  if ahead == 0 and cu == 0 and f.fits then
    local rec = new_record(req, now)
    grant(rec, false)
    save(rec)
    -- The caller knows the rest of the lease, its times from the call's nowMs (see redis-store.ts);
    -- hf, hr: the headroom left.
    return { kind = 'granted',
      hf = math_floor(f.hf * HEADROOM_FRACTION_STEP + 0.5) / HEADROOM_FRACTION_STEP, hr = f.hr }
  end
  local retry, limit = retry_at(f), f.limit
  if cu > 0 and cu >= f.at then retry, limit = cu, 'closed: ' .. cr end
  local earliest = f.at
  if cu > earliest then earliest = cu end
  if req.maxWaitMs <= 0 or earliest > now + req.maxWaitMs then
    count(NAMES.r[req.budget], 1)
    return { kind = 'rejected', nowMs = now, retryAtMs = retry, limit = limit }
  end
  local seq = hincr(KM, 'seq', 1)
  local rec = new_record(req, now + req.maxWaitMs)
  save(rec)
  zadd(KG, rec.dl + GRACE, req.id)
  enqueue(rec, seq)
  count(NAMES.bw[req.budget], 1)
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
  prime_limits(rec.req.limits, rec.win)
  for ix = 1, #rec.win do
    local charge = rec.win[ix]
    recharge(rec, charge, charge_for(charge.d, input, output, outcome))
  end
  local was_active = rec.st == 'active'
  if was_active then release(rec) else zrem(KG, id) end
  -- A spare lease no call used is no upstream outcome and teaches nothing (store.ts).
  if outcome ~= 'ok' and outcome ~= 'unused' then count('o:' .. rec.req.budget .. ':' .. outcome, 1) end
  if outcome ~= 'unused' then
    local observations = {}
    if a[7] ~= '' then observations = cjson_decode(a[7]) end
    adapt(rec, outcome, retry_after, reset_at, observations)
  end
  local charged = { requests = charge_for('requests', input, output, outcome),
    inputTokens = charge_for('inputTokens', input, output, outcome),
    outputTokens = charge_for('outputTokens', input, output, outcome),
    totalTokens = charge_for('totalTokens', input, output, outcome) }
  -- Only the answer to a repeated settle is kept.
  save_settled(id, { st = 'settled', ch = charged, sa = now })
  pump(granted)
  local kind = 'settledAfterExpiry'
  if was_active then kind = 'settled' end
  -- What was charged follows from the caller's own usage and outcome, and settledAtMs is the
  -- call's nowMs (see redis-store.ts).
  return { kind = kind }
end

ops.heartbeat = function(a)
  local id, extend = a[1], tonumber(a[2])
  local rec = load(id)
  if not rec or rec.st == 'waiting' or rec.st == 'timedOut' then return { kind = 'unknown' } end
  if rec.st == 'expired' then return { kind = 'expired' } end
  if rec.st == 'settled' then return { kind = 'settled' } end
  if a[3] ~= '' then
    local input, output = tonumber(a[3]), tonumber(a[4])
    prime_limits(rec.req.limits, rec.win)
    for ix = 1, #rec.win do
      local charge = rec.win[ix]
      local used = charge_for(charge.d, input, output, 'ok')
      if used > charge.c then recharge(rec, charge, used) end
    end
  end
  rec.ea = now + extend
  save(rec)
  zadd(KX, rec.ea, id)
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
  if rec and rec.req and rec.req.limits then
    count(NAMES.r[rec.req.budget], 1)
    local f = fit(rec.req, true)
    retry, limit = retry_at(f), f.limit
    local cu, cr = closed_until()
    if cu > 0 and cu >= f.at then retry, limit = cu, 'closed: ' .. cr end
  end
  return { kind = 'gone', nowMs = now, retryAtMs = retry, limit = limit }
end

ops.usage = function(a)
  local plans = cjson_decode(a[1])
  local limits = {}
  for i = 1, #plans do
    local plan = plans[i]
    local used
    if plan.windowMs == 0 then
      used = hnum(KM, NAMES.c[plan.key]) or 0
    else
      used = window(plan)
    end
    limits[i] = { key = plan.key, used = used, effective = amount(plan) }
  end
  local cu, cr = closed_until()
  local all, counters = hgetall(KM), {}
  for i = 1, #all, 2 do
    local kind = string_match(all[i], '^(%a+):')
    if BUDGET_COUNTERS[kind] then
      counters[#counters + 1] = all[i]
      counters[#counters + 1] = all[i + 1]
    end
  end
  return { nowMs = now, limits = limits, counters = counters,
    waiters = waiting(), closedUntilMs = cu, closedReason = cr }
end

-- Forgets a deleted budget: its counters, and everything of its caps (`keys`).
ops.forgetBudget = function(a)
  local budget, keys = a[1], cjson_decode(a[2])
  local exact = {}
  for ix = 1, #keys do
    local key = keys[ix]
    window_totals[key], window_floors[key] = nil, nil
    for _, field in ipairs({ 'c|' .. key, 'p|' .. key, 'p|' .. key .. '|h', 'e|' .. key, 'e|' .. key .. '|t',
      'e|' .. key .. '|p', 'e|' .. key .. '|l', 'e|' .. key .. '|d' }) do
      exact[field] = true
    end
  end
  local all = hgetall(KM)
  for i = 1, #all, 2 do
    local field = all[i]
    local _, _, b = string_find(field, '^%a+:([^:]+)')
    local forget = b == budget or exact[field]
    if not forget then
      for ix = 1, #keys do
        local key = keys[ix]
        local pre = 'w|' .. key .. '|'
        local rest = string_sub(field, #pre + 1)
        if string_sub(field, 1, #pre) == pre and (rest == 't' or rest == 'f' or tonumber(rest)) then forget = true end
      end
    end
    if forget then hdel(KM, field) end
  end
  return {}
end

ops.claim = function(a) return claim_or_cancel('claim', a) end
ops.cancel = function(a) return claim_or_cancel('cancel', a) end

-- A batch runs several operations, in order, at one Redis time, as the same calls one after
-- another would: ARGV[A] is a JSON array of [operation, arguments...].
-- Resets the state of one call and reads its arguments.
local function begin(keys, args)
  if not redis_call then
    tonumber, tostring, type, pairs, ipairs, unpack, math_floor, math_ceil, math_min, math_max, math_abs,
      redis_call, cjson_encode, cjson_decode, struct_pack, struct_unpack, string_sub, string_rep,
      string_find, string_match = library_functions()
  end
  op, P = args[1], args[2]
  if args[3] ~= '' then
    now = tonumber(args[3])
  else
    local t = redis_call('TIME')
    now = tonumber(t[1]) * 1000 + math_floor(tonumber(t[2]) / 1000)
  end
  GRACE, GC_BATCH, PUMP_BATCH, SETTLED_GRACE = tonumber(args[4]), tonumber(args[5]), tonumber(args[6]),
    tonumber(args[7])
  -- Main hash (counters, limits' state), records, expiry order, forget order, definitions.
  KM, KR, KX, KG, KD = keys[1], P .. ':r', P .. ':x', P .. ':g', P .. ':d'
  QT[0], QT[1] = P .. ':qt:0', P .. ':qt:1'
  hcache, hdirty, zpending = {}, {}, {}
  records, recdirty, rawrecords, settled, settleddirty = {}, {}, {}, {}, {}
  registered, slice_names, primed_limits = {}, {}, {}
  if not NAMES then NAMES = make_names() end
  window_totals, window_floors = {}, {}
  granted = {}
end

local function main(keys, args)
  begin(keys, args)
  local calls
  if op == 'batch' then
    calls = cjson_decode(args[A])
    register_definitions(args[A + 1])
  else
    calls = { { op, unpack(args, A) } }
    if op == 'acquire' then
      -- Decoded here rather than in ops.acquire, so that its budget's fields join the HMGET below.
      calls[1][2] = cjson_decode(args[A])
      register_definitions(args[A + 1])
    end
  end
  -- Nothing runs unless every operation is known (a batch is all or nothing), nor unless Redis
  -- holds every definition the acquires name (the caller then sends them: redis-store.ts).
  local settling = {}
  for ix = 1, #calls do
    local item = calls[ix]
    if not ops[item[1]] then return redis.error_reply('tokenlease: unknown operation ' .. tostring(item[1])) end
    if item[1] == 'settle' or item[1] == 'heartbeat' then settling[#settling + 1] = item[2] end
  end
  if definitions_missing(calls) then return redis.error_reply('tokenlease: definitions missing') end
  prime_records(settling)
  -- The main hash's fields most calls read, in one HMGET (acquiring budgets' own fields too).
  local main_fields = { 'nw', 'vt', 'cu', 'cr', 'lb1', 'lt1', 'lb2', 'lt2', 'gc', 'us', 'ht' }
  local primed_budgets = {}
  for ix = 1, #calls do
    local item = calls[ix]
    local wire = item[1] == 'acquire' and item[2]
    local budget = type(wire) == 'table' and wire[2]
    if type(budget) == 'string' and not primed_budgets[budget] then
      primed_budgets[budget] = true
      main_fields[#main_fields + 1] = NAMES.f[budget]
      main_fields[#main_fields + 1] = NAMES.bi[budget]
      main_fields[#main_fields + 1] = NAMES.g[budget]
    end
  end
  hprime(KM, main_fields)
  if not hget(KM, 'ht') then hset(KM, 'ht', HASHTABLE_NOTE) end

  collect()
  local results = {}
  for i = 1, #calls do
    local item = calls[i]
    results[i] = ops[item[1]]({ unpack(item, 2) })
  end
  flush()
  if #granted > 0 then redis_call('PUBLISH', P .. ':grants', cjson_encode(granted)) end
  -- The call's time once rather than in each result: cjson formats a number with snprintf.
  if op == 'batch' then return cjson_encode({ results = results, grantedIds = granted, nowMs = now }) end
  local result = results[1]
  result.grantedIds = granted
  if result.nowMs == nil then result.nowMs = now end
  return cjson_encode(result)
end

if redis.register_function then
  redis.register_function(FUNCTION_NAME, main) -- FUNCTION_NAME: in the header redis-store.ts adds
else
  return main(KEYS, ARGV)
end
