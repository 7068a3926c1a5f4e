-- ARGV: prefix, job_id, token, data. Stores a running job's latest progress; returns 1, or 0
-- when the token no longer owns the job.
local key = jkey(ARGV[2])
local v = redis.call('HMGET', key, 'state', 'tok')
if v[1] ~= 'running' or v[2] ~= ARGV[3] then
  return 0
end
redis.call('HSET', key, 'prog', ARGV[4])
return 1
