-- ARGV: prefix, now, silent_before, the WorkerLost error, expiry of such failures ('' = never).
-- Requeues (or fails, with no attempts left) running jobs whose lease expired or whose
-- registered worker went silent, noting WorkerLost as their attempt's error, and forgets
-- silent workers. Returns how many.
local now = ARGV[2]
local silent = redis.call('ZRANGEBYSCORE', P .. 'seen', '-inf', '(' .. ARGV[3])
local victims = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. now)
if #silent > 0 then
  -- Rare (a worker died), so a scan of the running set beats a per-worker index on every claim.
  local dead, taken = {}, {}
  for _, w in ipairs(silent) do
    dead[w] = true
  end
  for _, id in ipairs(victims) do
    taken[id] = true
  end
  for _, id in ipairs(redis.call('ZRANGE', P .. 'running', 0, -1)) do
    local wid = redis.call('HGET', jkey(id), 'wid')
    if not taken[id] and wid and dead[wid] then
      victims[#victims + 1] = id
    end
  end
end
local count = 0
for _, id in ipairs(victims) do
  redis.call('ZREM', P .. 'running', id)
  local h = load(id)
  if h and h.state == 'running' then
    count = count + 1
    leave_running(h)
    redis.call('HDEL', jkey(id), 'tok', 'lease')
    set_error(jkey(id), ARGV[4])
    if tonumber(h.att) >= tonumber(h.max) then
      finish(id, h, 'failed', now, ARGV[5])
    else
      push_ready(id, h.q, h.prio, h.seq, 'running')
    end
  end
end
for _, w in ipairs(silent) do
  redis.call('HDEL', P .. 'workers', w)
  redis.call('ZREM', P .. 'seen', w)
end
publish()
return count
