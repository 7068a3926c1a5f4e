-- ARGV: prefix, now, job_id, expires_at. QUEUED/SCHEDULED/RUNNING -> CANCELLED; returns 1, else 0.
-- A running job's token goes with it: its worker's next heartbeat reports the lease lost.
local id = ARGV[3]
local h = load(id)
if not h or (h.state ~= 'queued' and h.state ~= 'scheduled' and h.state ~= 'running') then
  return 0
end
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
finish(id, h, 'cancelled', ARGV[2], ARGV[4])
return 1
