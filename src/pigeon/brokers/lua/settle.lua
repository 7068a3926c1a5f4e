-- ARGV: prefix, now, then per outcome: id, token, kind, has_result, result, error, run_at, expires_at.
-- Returns 1 per applied outcome, 0 where the token no longer owns the job.
local now = ARGV[2]
local out = {}
for i = 3, #ARGV, 8 do
  local id, token, kind, err, run_at, expires = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local key = jkey(id)
  local h = load(id)
  if not h or h.state ~= 'running' or h.tok ~= token then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    redis.call('ZREM', P .. 'running', id)
    leave_running(h)
    if kind == 'complete' then
      if ARGV[i + 3] == '1' then
        redis.call('HSET', key, 'res', ARGV[i + 4])
      else
        redis.call('HDEL', key, 'res')
      end
      redis.call('HDEL', key, 'err')
      finish(id, h, 'succeeded', now, expires)
    elseif kind == 'fail' then
      set_error(key, err)
      finish(id, h, 'failed', now, expires)
    else
      redis.call('HDEL', key, 'tok', 'lease')
      if kind == 'release' or kind == 'defer' then
        redis.call('HINCRBY', key, 'att', -1) -- the attempt is given back; the error stays
      else
        set_error(key, err)
      end
      place(id, h.q, h.prio, h.seq, run_at, now, 'running')
    end
  end
end
publish()
return out
