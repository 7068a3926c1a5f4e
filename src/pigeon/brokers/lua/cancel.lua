-- ARGV: prefix, now, expires_at, job ids. QUEUED/SCHEDULED/RUNNING -> CANCELLED; returns how many.
-- A running job's token goes with it: its worker's next heartbeat reports the lease lost.
local cancelled = 0
for i = 4, #ARGV do
  local id = ARGV[i]
  local h = load(id)
  if h and (h.state == 'queued' or h.state == 'scheduled' or h.state == 'running') then
    if h.state == 'running' then
      redis.call('ZREM', P .. 'running', id)
      leave_running(h)
      redis.call('HDEL', jkey(id), 'tok', 'lease')
    end
    redis.call('ZREM', P .. 'ready:' .. h.q, id)
    redis.call('ZREM', P .. 'sched:' .. h.q, id)
    if h.lk then
      redis.call('ZREM', P .. 'held:' .. h.lk, id)
    end
    finish(id, h, 'cancelled', ARGV[2], ARGV[3])
    cancelled = cancelled + 1
  end
end
return cancelled
