-- ARGV: prefix, now, token, worker_id, lease_until, limit, queues...
-- Promotes due scheduled jobs, then takes the lowest ready scores across the queues.
-- Returns envelope, attempt pairs.
local now, token, worker, lease = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local limit = tonumber(ARGV[6])
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
local found = {}
for i = 7, #ARGV do
  local r = redis.call('ZRANGE', P .. 'ready:' .. ARGV[i], 0, limit - 1, 'WITHSCORES')
  for j = 1, #r, 2 do
    found[#found + 1] = { tonumber(r[j + 1]), r[j], ARGV[i] }
  end
end
if #ARGV > 7 then
  table.sort(found, function(a, b)
    return a[1] < b[1]
  end)
end
local out = {}
for k = 1, math.min(limit, #found) do
  local id, q = found[k][2], found[k][3]
  local key = jkey(id)
  redis.call('ZREM', P .. 'ready:' .. q, id)
  local attempt = redis.call('HINCRBY', key, 'att', 1)
  redis.call('HSET', key, 'tok', token, 'wid', worker, 'start', now, 'lease', lease)
  local v = redis.call('HMGET', key, 'seq', 'env')
  move(id, q, v[1], 'queued', 'running')
  redis.call('ZADD', P .. 'running', lease, id)
  out[#out + 1] = v[2]
  out[#out + 1] = attempt
end
return out
