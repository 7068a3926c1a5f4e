-- ARGV: prefix, now, batch. Deletes up to batch final jobs whose expires_at <= now.
-- Returns {deleted, looked at}; the caller repeats while a full batch was looked at.
local ids = redis.call('ZRANGEBYSCORE', P .. 'final', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local count = 0
for _, id in ipairs(ids) do
  local state = redis.call('HGET', jkey(id), 'state')
  if state and FINAL[state] then
    count = count + delete_job(id)
  else
    redis.call('ZREM', P .. 'final', id)
  end
end
return { count, #ids }
