-- ARGV: prefix, now, job_id, expires_at. QUEUED/SCHEDULED -> CANCELLED; returns 1, else 0.
local id = ARGV[3]
local h = load(id)
if not h or (h.state ~= 'queued' and h.state ~= 'scheduled') then
  return 0
end
redis.call('ZREM', P .. 'ready:' .. h.q, id)
redis.call('ZREM', P .. 'sched:' .. h.q, id)
if h.lk then
  redis.call('ZREM', P .. 'held:' .. h.lk, id)
end
finish(id, h, 'cancelled', ARGV[2], ARGV[4])
return 1
