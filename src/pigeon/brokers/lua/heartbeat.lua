-- ARGV: prefix, now, worker_id, worker_info, lease_until, then job_id, token pairs.
-- Returns the ids of jobs the worker no longer owns.
local lease = ARGV[5]
redis.call('HSET', P .. 'workers', ARGV[3], ARGV[4])
redis.call('ZADD', P .. 'seen', ARGV[2], ARGV[3])
local lost = {}
for i = 6, #ARGV, 2 do
  local id = ARGV[i]
  local v = redis.call('HMGET', jkey(id), 'state', 'tok')
  if v[1] == 'running' and v[2] == ARGV[i + 1] then
    redis.call('HSET', jkey(id), 'lease', lease)
    redis.call('ZADD', P .. 'running', lease, id)
  else
    lost[#lost + 1] = id
  end
end
return lost
