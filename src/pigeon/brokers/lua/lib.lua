-- Helpers prepended to every script. ARGV[1] is the key prefix ("<namespace>:").
--
-- Keys, all under the prefix:
--   job:<id>              hash: env task q prio seq max ukey state att tok wid start fin lease exp res err prog
--                         and, for a job with a concurrency limit, lk (its limit key) and lim
--   ready:<queue>         zset, score -priority * 2^40 + seq: the lowest score is claimed first
--   sched:<queue>         zset by run_at: scheduled jobs, promoted by claim when due
--   running               zset by lease_until
--   idx:<queue>:<state>   zset by seq: listing newest first, and counts for stats
--   tally:<queue>         hash '<state>|<task>' -> how many of the queue's jobs of that task are in
--                         that state (counts by task without reading jobs); tallied: the seq of the
--                         first job counted ('1': every job of the namespace was)
--   final                 zset by expires_at: what prune deletes
--   unique:<key>          the id of the pending job holding the key
--   limits                hash limit key -> how many of its jobs are RUNNING (field gone at 0)
--   held:<limit key>      zset, ready score: QUEUED jobs a claim found at their key's limit, parked
--                         out of ready:<queue> so they block nobody; each job of the key leaving
--                         RUNNING puts the first one back (leave_running)
--   bucket:<key>          hash tokens, at: a rate-limit token bucket, expiring once it is full again
--   queues                set of queue names; seq: the enqueue counter
--   workers, seen         hash id -> WorkerInfo, zset id -> last_seen
-- Channel wake:<queue> tells waiting workers that a job became ready.
-- Times arrive as strings and are stored untouched: Lua numbers would round them.
local P = ARGV[1]
local BIG = 1099511627776 -- 2^40: any priority step outranks every sequence number
local FINAL = { succeeded = true, failed = true, cancelled = true }
local woken = {}

local function jkey(id)
  return P .. 'job:' .. id
end

-- A job of queue q changes state (from nil: arrives; to nil: goes); task: the job's, if the caller
-- has it (an arrival does), else read from its hash.
local function tally(id, q, from, to, task)
  task = task or redis.call('HGET', jkey(id), 'task')
  if not task then
    return
  end
  local key = P .. 'tally:' .. q
  if from and redis.call('HINCRBY', key, from .. '|' .. task, -1) <= 0 then
    redis.call('HDEL', key, from .. '|' .. task)
  end
  if to then
    redis.call('HINCRBY', key, to .. '|' .. task, 1)
  end
end

-- An arrival (from nil) passes its task, and has written its state into the new hash already:
-- two calls fewer on the enqueue path.
local function move(id, q, seq, from, to, task)
  if from then
    redis.call('ZREM', P .. 'idx:' .. q .. ':' .. from, id)
  else
    redis.call('SETNX', P .. 'tallied', seq)
  end
  redis.call('ZADD', P .. 'idx:' .. q .. ':' .. to, seq, id)
  tally(id, q, from, to, task)
  if from then
    redis.call('HSET', jkey(id), 'state', to)
  end
end

local function push_ready(id, q, prio, seq, from, task)
  local score = -tonumber(prio) * BIG + tonumber(seq)
  redis.call('ZADD', P .. 'ready:' .. q, string.format('%.17g', score), id)
  move(id, q, seq, from, 'queued', task)
  woken[q] = true
end

local function schedule(id, q, seq, run_at, from, task)
  redis.call('ZADD', P .. 'sched:' .. q, run_at, id)
  move(id, q, seq, from, 'scheduled', task)
end

local function free_unique(id, ukey)
  if ukey and ukey ~= '' and redis.call('GET', P .. 'unique:' .. ukey) == id then
    redis.call('DEL', P .. 'unique:' .. ukey)
  end
end

-- The last attempt's error ('' = none), also appended to the history: a JSON array kept as text,
-- so an append is string work rather than a decode and re-encode.
local function set_error(key, err)
  if err == '' then
    redis.call('HDEL', key, 'err')
    return
  end
  local errs = redis.call('HGET', key, 'errs')
  if errs then
    errs = string.sub(errs, 1, -2) .. ',' .. err .. ']'
  else
    errs = '[' .. err .. ']'
  end
  redis.call('HSET', key, 'err', err, 'errs', errs)
end

-- RUNNING or pending -> a final state; the caller has removed it from ready/sched/running.
local function finish(id, h, to, now, expires)
  local key = jkey(id)
  move(id, h.q, h.seq, h.state, to)
  redis.call('HSET', key, 'fin', now)
  redis.call('HDEL', key, 'tok', 'lease')
  if expires ~= '' then
    redis.call('HSET', key, 'exp', expires)
    redis.call('ZADD', P .. 'final', expires, id)
  end
  free_unique(id, h.ukey)
end

local function load(id)
  local v = redis.call('HMGET', jkey(id), 'state', 'q', 'seq', 'prio', 'ukey', 'att', 'max', 'tok', 'lk')
  if not v[1] then
    return nil
  end
  return {
    state = v[1], q = v[2], seq = v[3], prio = v[4], ukey = v[5], att = v[6], max = v[7], tok = v[8], lk = v[9],
  }
end

-- Every transition out of RUNNING calls this with the job's loaded hash: one slot of its limit
-- key frees, so the first parked job of the key goes back to ready (a claim parks it again if
-- the slot is taken by then).
local function leave_running(h)
  local lk = h.lk
  if not lk then
    return
  end
  if redis.call('HINCRBY', P .. 'limits', lk, -1) <= 0 then
    redis.call('HDEL', P .. 'limits', lk)
  end
  local held = P .. 'held:' .. lk
  local head = redis.call('ZRANGE', held, 0, 0, 'WITHSCORES')
  if head[1] then
    redis.call('ZREM', held, head[1])
    local q = redis.call('HGET', jkey(head[1]), 'q')
    if q then
      redis.call('ZADD', P .. 'ready:' .. q, head[2], head[1])
      woken[q] = true
    end
  end
end

local function delete_job(id)
  local h = load(id)
  if not h then
    return 0
  end
  redis.call('ZREM', P .. 'idx:' .. h.q .. ':' .. h.state, id)
  redis.call('ZREM', P .. 'ready:' .. h.q, id)
  redis.call('ZREM', P .. 'sched:' .. h.q, id)
  redis.call('ZREM', P .. 'running', id)
  redis.call('ZREM', P .. 'final', id)
  if h.lk then
    redis.call('ZREM', P .. 'held:' .. h.lk, id)
  end
  if h.state == 'running' then
    leave_running(h)
  end
  if not FINAL[h.state] then
    free_unique(id, h.ukey)
  end
  tally(id, h.q, h.state, nil)
  redis.call('DEL', jkey(id))
  return 1
end

local function publish()
  for q in pairs(woken) do
    redis.call('PUBLISH', P .. 'wake:' .. q, '')
  end
end

