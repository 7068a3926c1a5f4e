-- ARGV: prefix, now (not read: the caller decided each job's state), then per job: id, task, queue,
-- priority, max_attempts, unique_key, run_at, envelope, limit_key ('' for none), limit, state
-- ('queued' or 'scheduled', from transitions.arriving).
-- Returns, per job, the id that stands for it (a pending job's when the unique key is held).
local out = {}
for i = 3, #ARGV, 11 do
  local id, q, ukey, run_at = ARGV[i], ARGV[i + 2], ARGV[i + 5], ARGV[i + 6]
  local held = false
  if ukey ~= '' then
    held = redis.call('GET', P .. 'unique:' .. ukey)
  end
  if held then
    out[#out + 1] = held
  else
    out[#out + 1] = id
    if redis.call('EXISTS', jkey(id)) == 0 then
      local seq = redis.call('INCR', P .. 'seq')
      local task, state = ARGV[i + 1], ARGV[i + 10]
      redis.call('HSET', jkey(id), 'env', ARGV[i + 7], 'task', task, 'q', q, 'prio', ARGV[i + 3],
        'seq', seq, 'max', ARGV[i + 4], 'ukey', ukey, 'att', 0, 'state', state)
      if ARGV[i + 8] ~= '' then
        redis.call('HSET', jkey(id), 'lk', ARGV[i + 8], 'lim', ARGV[i + 9])
      end
      redis.call('SADD', P .. 'queues', q)
      if ukey ~= '' then
        redis.call('SET', P .. 'unique:' .. ukey, id)
      end
      if state == 'scheduled' then
        schedule(id, q, seq, run_at, nil, task)
      else
        push_ready(id, q, ARGV[i + 3], seq, nil, task)
      end
    end
  end
end
publish()
return out
