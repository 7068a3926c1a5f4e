-- ARGV: prefix, index key (after the prefix), max score ('(n' exclusive), min score, task as the
-- envelope writes it (JSON, '' for any), 'ids' or 'count', then pairs of needles: a job matches a
-- pair when its envelope contains either.
-- Reads the index's entries in that score (enqueue order) range, newest first, and returns
-- id, seq pairs of the jobs that match, or how many match: the envelopes never leave the server.
-- Only the envelope is read, and task and arguments are both matched in it: one field a job.
local entries = redis.call('ZREVRANGEBYSCORE', P .. ARGV[2], ARGV[3], ARGV[4], 'WITHSCORES')
local task, counting = ARGV[5], ARGV[6] == 'count'
local out = {}
local count = 0

-- The envelope is compact JSON written in Job's field order: "id" then "task", and a key inside
-- a string would read \"task\", so the first "task": is the job's own.
local function of_task(env)
  local _, e = string.find(env, '"task":', 1, true)
  if not e then
    return false
  end
  local after = string.byte(env, e + #task + 1)
  return string.sub(env, e + 1, e + #task) == task and (after == 44 or after == 125) -- ',' or '}'
end

for i = 1, #entries, 2 do
  local env = redis.call('HGET', jkey(entries[i]), 'env')
  local ok = env and (task == '' or of_task(env))
  if ok then
    for j = 7, #ARGV, 2 do
      if not (string.find(env, ARGV[j], 1, true) or string.find(env, ARGV[j + 1], 1, true)) then
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
