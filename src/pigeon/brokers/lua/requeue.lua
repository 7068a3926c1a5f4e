-- ARGV: prefix, now, job_id. FAILED/CANCELLED -> QUEUED with attempts reset; returns 1, else 0
-- (also when a newer pending job holds its unique key).
local id = ARGV[3]
local h = load(id)
if not h or (h.state ~= 'failed' and h.state ~= 'cancelled') then
  return 0
end
if h.ukey and h.ukey ~= '' then
  if redis.call('EXISTS', P .. 'unique:' .. h.ukey) == 1 then
    return 0
  end
  redis.call('SET', P .. 'unique:' .. h.ukey, id)
end
redis.call('ZREM', P .. 'final', id)
redis.call('HSET', jkey(id), 'att', 0)
redis.call('HDEL', jkey(id), 'fin', 'exp', 'err')
push_ready(id, h.q, h.prio, h.seq, h.state)
publish()
return 1
