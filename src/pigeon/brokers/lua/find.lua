-- ARGV: prefix, index key (after the prefix), max score ('(n' exclusive), min score, task ('' for any),
-- 'ids' or 'count', then pairs of needles: a job matches a pair when its envelope contains either.
-- Reads the index's entries in that score (enqueue order) range, newest first, and returns
-- id, seq pairs of the jobs that match, or how many match: the envelopes never leave the server.
local entries = redis.call('ZREVRANGEBYSCORE', P .. ARGV[2], ARGV[3], ARGV[4], 'WITHSCORES')
local task, counting = ARGV[5], ARGV[6] == 'count'
local out = {}
local count = 0
for i = 1, #entries, 2 do
  local v = redis.call('HMGET', jkey(entries[i]), 'task', 'env')
  local ok = v[2] and (task == '' or v[1] == task)
  if ok then
    for j = 7, #ARGV, 2 do
      if not (string.find(v[2], ARGV[j], 1, true) or string.find(v[2], ARGV[j + 1], 1, true)) then
        ok = false
        break
      end
    end
  end
  if ok then
    count = count + 1
    if not counting then
      out[#out + 1] = entries[i]
      out[#out + 1] = entries[i + 1]
    end
  end
end
if counting then
  return count
end
return out
