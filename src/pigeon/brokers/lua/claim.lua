-- ARGV: prefix, now, token, worker_id, lease_until, limit, queues...
-- Promotes due scheduled jobs, then takes the lowest ready scores across the queues.
-- A job whose limit key is at its limit (counting this claim's) is parked in held:<key>
-- instead, and the claim reads on past it. A paused queue (in the set `paused`) is not read.
-- Returns id, envelope, attempt triples.
local now, token, worker, lease = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit = tonumber(ARGV[6])
local queues = {}
for i = 7, #ARGV do
  if redis.call('SISMEMBER', P .. 'paused', ARGV[i]) == 0 then
    queues[#queues + 1] = ARGV[i]
  end
end
for i = 7, #ARGV do
  local sched = P .. 'sched:' .. ARGV[i]
  -- bounded so one claim never stalls the server; the rest is promoted by the next
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', sched, '-inf', now, 'LIMIT', 0, 5000)) do
    redis.call('ZREM', sched, id)
    local h = load(id)
    if h and h.state == 'scheduled' then
      push_ready(id, h.q, h.prio, h.seq, 'scheduled')
    end
  end
end
local out = {}
local taken, parked = 0, 0
local window = limit
local counts = {} -- limit key -> RUNNING jobs, this claim's included
while taken < limit do
  local found = {}
  for _, q in ipairs(queues) do
    local r = redis.call('ZRANGE', P .. 'ready:' .. q, 0, window - 1, 'WITHSCORES')
    for j = 1, #r, 2 do
      found[#found + 1] = { tonumber(r[j + 1]), r[j], q, r[j + 1] }
    end
  end
  if #queues > 1 then
    table.sort(found, function(a, b)
      return a[1] < b[1]
    end)
  end
  -- The first `window` of the merged list are the first `window` across all the queues.
  local before = parked
  for k = 1, math.min(window, #found) do
    if taken == limit then
      break
    end
    local id, q = found[k][2], found[k][3]
    local key = jkey(id)
    redis.call('ZREM', P .. 'ready:' .. q, id)
    local v = redis.call('HMGET', key, 'seq', 'env', 'lk', 'lim')
    local lk = v[3]
    local free = true
    if lk then
      local n = counts[lk] or tonumber(redis.call('HGET', P .. 'limits', lk) or 0)
      if n >= tonumber(v[4]) then
        free = false
        counts[lk] = n
        -- Stays QUEUED, out of the way; a job of this key leaving RUNNING puts it back.
        redis.call('ZADD', P .. 'held:' .. lk, found[k][4], id)
        parked = parked + 1
      else
        counts[lk] = n + 1
        redis.call('HINCRBY', P .. 'limits', lk, 1)
      end
    end
    if free then
      local attempt = redis.call('HINCRBY', key, 'att', 1)
      redis.call('HSET', key, 'tok', token, 'wid', worker, 'start', now, 'lease', lease)
      move(id, q, v[1], 'queued', 'running')
      redis.call('ZADD', P .. 'running', lease, id)
      out[#out + 1] = id
      out[#out + 1] = v[2]
      out[#out + 1] = attempt
      taken = taken + 1
    end
  end
  -- Nothing parked: every job read was taken, so either the limit is reached or the queues are dry.
  if parked == before then
    break
  end
  if parked >= 5000 then
    -- Bounded like promotion; wake the workers so the next claim reads on from here.
    for _, q in ipairs(queues) do
      woken[q] = true
    end
    publish()
    break
  end
  -- Parking means more of the same may follow: read further ahead next time.
  window = math.max(limit - taken, math.min(2 * (parked - before), 1000))
end
return out
