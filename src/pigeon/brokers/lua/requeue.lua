-- ARGV: prefix, now, job ids. FAILED/CANCELLED -> QUEUED with attempts reset; returns how many moved
-- (a job in another state is left alone, and so is one whose unique key a newer pending job holds).
local moved = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local h = load(id)
  local ok = h and (h.state == 'failed' or h.state == 'cancelled')
  if ok and h.ukey and h.ukey ~= '' then
    if redis.call('EXISTS', P .. 'unique:' .. h.ukey) == 1 then
      ok = false
    else
      redis.call('SET', P .. 'unique:' .. h.ukey, id)
    end
  end
  if ok then
    redis.call('ZREM', P .. 'final', id)
    redis.call('HSET', jkey(id), 'att', 0)
    redis.call('HDEL', jkey(id), 'fin', 'exp', 'err')
    push_ready(id, h.q, h.prio, h.seq, h.state)
    moved = moved + 1
  end
end
publish()
return moved
