-- ARGV: prefix, now, then per outcome the transition computed in Python (pigeon/transitions.py):
-- id, token, state, has_result, result, error, keep_error, release, run_at, expires_at.
-- Returns 1 per applied outcome, 0 where the token no longer owns the job.
local now = ARGV[2]
local out = {}
for i = 3, #ARGV, 10 do
  local id, token, state, err = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 5]
  local keep, release, run_at, expires = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8], ARGV[i + 9]
  local key = jkey(id)
  local h = load(id)
  if not h or h.state ~= 'running' or h.tok ~= token then
    out[#out + 1] = 0
  else
    out[#out + 1] = 1
    redis.call('ZREM', P .. 'running', id)
    leave_running(h)
    if release == '1' then
      redis.call('HINCRBY', key, 'att', -1) -- the attempt is given back
    end
    if keep ~= '1' then
      set_error(key, err)
    end
    if state == 'succeeded' then
      if ARGV[i + 3] == '1' then
        redis.call('HSET', key, 'res', ARGV[i + 4])
      else
        redis.call('HDEL', key, 'res')
      end
      finish(id, h, state, now, expires)
    elseif state == 'failed' then
      finish(id, h, state, now, expires)
    else
      redis.call('HDEL', key, 'tok', 'lease')
      if state == 'scheduled' then
        schedule(id, h.q, h.seq, run_at, 'running')
      else
        push_ready(id, h.q, h.prio, h.seq, 'running')
      end
    end
  end
end
publish()
return out
