-- ARGV: prefix, queue ('' for every queue), batch, states...
-- Deletes up to batch jobs in those states; the caller repeats until fewer come back.
-- A deleted running job frees its limit slot, which may put a parked job back in ready.
local queues = { ARGV[2] }
if ARGV[2] == '' then
  queues = redis.call('SMEMBERS', P .. 'queues')
end
local batch = tonumber(ARGV[3])
local count = 0
for _, q in ipairs(queues) do
  for i = 4, #ARGV do
    if count >= batch then
      publish()
      return count
    end
    local idx = P .. 'idx:' .. q .. ':' .. ARGV[i]
    for _, id in ipairs(redis.call('ZRANGE', idx, 0, batch - count - 1)) do
      redis.call('ZREM', idx, id)
      count = count + delete_job(id)
    end
  end
end
publish()
return count
