-- name: insert
INSERT INTO pigeon_jobs
    (id, task, queue, priority, state, envelope, max_attempts, unique_key, run_at, enqueued_at, limit_key, conc_limit)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING

-- name: pending_by_key
SELECT id FROM pigeon_jobs
WHERE unique_key = ? AND state IN ('queued', 'scheduled', 'running')

-- name: promote
UPDATE pigeon_jobs SET state = 'queued'
WHERE state = 'scheduled' AND run_at <= ?

-- name: candidates
-- One queue's due jobs in claim order, leaving out limit keys already at their limit.
-- A claim over several queues joins one of these per queue with UNION ALL and orders the
-- whole by the same key (sqlite.py, _candidates): SQLite merges the queues' walks of
-- pigeon_jobs_ready lazily. `queue IN (...)` with that ORDER BY has the planner read every
-- queued job of those queues and sort them (1.2 to 2.8 s a claim at 1,000,000 jobs).
SELECT seq, limit_key, conc_limit, priority FROM pigeon_jobs
WHERE state = 'queued' AND queue = ? AND queue NOT IN (SELECT queue FROM pigeon_paused)
  AND (limit_key IS NULL OR limit_key NOT IN (
        SELECT limit_key FROM pigeon_jobs
        WHERE state = 'running' AND limit_key IS NOT NULL
        GROUP BY limit_key HAVING count(*) >= max(conc_limit)))

-- name: candidates_any
-- `candidates` for a claim over more queues than SQLite joins in one compound SELECT (500):
-- one statement that sorts what it reads, slow on a deep queue.
SELECT seq, limit_key, conc_limit, priority FROM pigeon_jobs
WHERE state = 'queued' AND queue IN ({queues}) AND queue NOT IN (SELECT queue FROM pigeon_paused)
  AND (limit_key IS NULL OR limit_key NOT IN (
        SELECT limit_key FROM pigeon_jobs
        WHERE state = 'running' AND limit_key IS NOT NULL
        GROUP BY limit_key HAVING count(*) >= max(conc_limit)))
ORDER BY priority DESC, seq

-- name: running_by_key
SELECT count(*) FROM pigeon_jobs WHERE state = 'running' AND limit_key = ?

-- name: claim
UPDATE pigeon_jobs
SET state = 'running', attempts = attempts + 1, token = ?, worker_id = ?, started_at = ?, lease_until = ?
WHERE seq IN ({seqs})
RETURNING priority, seq, envelope, attempts, id

-- name: settle
-- Every outcome in one statement: the transition's fields come computed (pigeon/transitions.py),
-- in the order of the placeholders (sqlite.py's _settle_params; plain ?: a tuple binds twice as
-- fast as a dict, and numbered ones with a tuple are deprecated from Python 3.12).
UPDATE pigeon_jobs
SET state = ?,
    result = CASE WHEN ? THEN ? ELSE result END,
    error = CASE WHEN ? THEN error ELSE ? END,
    errors = CASE WHEN ? THEN errors ELSE json_insert(coalesce(errors, '[]'), '$[#]', json(?)) END,
    attempts = attempts - ?,
    run_at = coalesce(?, run_at),
    finished_at = coalesce(?, finished_at),
    expires_at = CASE WHEN ? THEN expires_at ELSE ? END,
    token = NULL, lease_until = NULL
WHERE id = ? AND token = ? AND state = 'running'

-- name: succeed
-- `settle` for a SUCCEEDED transition, the hot path: the same fields written, with 5
-- parameters bound instead of 15 and no CASE evaluated, for nearly every job.
UPDATE pigeon_jobs
SET state = 'succeeded', result = ?, error = NULL, finished_at = ?, expires_at = ?,
    token = NULL, lease_until = NULL
WHERE id = ? AND token = ? AND state = 'running'

-- name: progress
UPDATE pigeon_jobs SET progress = ?
WHERE id = ? AND token = ? AND state = 'running'

-- name: bucket
SELECT tokens, updated FROM pigeon_buckets WHERE key = ?

-- name: bucket_put
INSERT INTO pigeon_buckets (key, tokens, updated) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated

-- name: extend
UPDATE pigeon_jobs SET lease_until = ?
WHERE id = ? AND token = ? AND state = 'running'

-- name: upsert_worker
INSERT INTO pigeon_workers (id, info, last_seen) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen

-- name: delete_worker
DELETE FROM pigeon_workers WHERE id = ?

-- name: workers
SELECT info, last_seen FROM pigeon_workers ORDER BY id

-- name: recoverable
-- Expired leases, and jobs of registered workers that went silent.
SELECT j.envelope, j.token, j.attempts FROM pigeon_jobs j
LEFT JOIN pigeon_workers w ON w.id = j.worker_id
WHERE j.state = 'running' AND (j.lease_until < ? OR (w.id IS NOT NULL AND w.last_seen < ?))

-- name: forget_silent_workers
DELETE FROM pigeon_workers WHERE last_seen < ?

-- name: prune
-- Found by the expiry index, never by state (hence +state): by state, a prune read every
-- finished job kept, a whole retention period's, holding the write lock all along. In
-- batches, so claims and settles get the lock in between.
DELETE FROM pigeon_jobs WHERE seq IN (
    SELECT seq FROM pigeon_jobs
    WHERE expires_at <= ? AND +state IN ('succeeded', 'failed', 'cancelled')
    ORDER BY expires_at LIMIT ?
)

-- name: get
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until, progress, id
FROM pigeon_jobs WHERE id = :id

-- name: list
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until, progress, id
FROM pigeon_jobs
WHERE (:queue IS NULL OR queue = :queue) AND (:state IS NULL OR state = :state) AND (:task IS NULL OR task = :task)
ORDER BY seq DESC LIMIT :limit

-- name: stats
SELECT queue, state, count(*) FROM pigeon_jobs GROUP BY queue, state ORDER BY queue

-- name: cancel
UPDATE pigeon_jobs
SET state = 'cancelled', finished_at = ?, expires_at = ?, token = NULL, lease_until = NULL
WHERE id = ? AND state IN ('queued', 'scheduled', 'running')

-- name: requeue
UPDATE pigeon_jobs
SET state = 'queued', attempts = 0, run_at = ?, finished_at = NULL, expires_at = NULL, error = NULL
WHERE id = ? AND state IN ('failed', 'cancelled')

-- name: purge
DELETE FROM pigeon_jobs
WHERE state IN (SELECT value FROM json_each(:states)) AND (:queue IS NULL OR queue = :queue)

-- name: find_any_state
-- A page of every state walks the table itself (seq is the rowid) backwards: sequential,
-- where one walk per state would fetch each row by rowid.
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until,
    progress, id, seq
FROM pigeon_jobs WHERE {where} ORDER BY seq DESC LIMIT :limit

-- name: find_in_state
-- One state's newest page, walking pigeon_jobs_state_seq backwards; a page of several
-- states is the newest of these, one per state (UNION ALL), so no page sorts the table.
SELECT * FROM (
    SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until,
        progress, id, seq
    FROM pigeon_jobs WHERE state = {state} AND {where} ORDER BY seq DESC LIMIT :limit)

-- name: count
SELECT count(*) FROM pigeon_jobs WHERE {where}

-- name: delete
DELETE FROM pigeon_jobs WHERE id IN ({ids})

-- name: pause
INSERT INTO pigeon_paused (queue) VALUES (?) ON CONFLICT DO NOTHING

-- name: resume
DELETE FROM pigeon_paused WHERE queue = ?

-- name: paused
SELECT queue FROM pigeon_paused ORDER BY queue

-- name: oldest_ready
-- A loose index scan: each step finds the next queue with QUEUED jobs, then its first
-- job in enqueue order, through pigeon_jobs_state (state, queue, rowid): a few index
-- probes per queue, however long the backlog.
WITH RECURSIVE q(queue) AS (
    SELECT min(queue) FROM pigeon_jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(queue) FROM pigeon_jobs WHERE state = 'queued' AND queue > q.queue)
    FROM q WHERE q.queue IS NOT NULL
)
SELECT queue, (SELECT enqueued_at FROM pigeon_jobs j
               WHERE j.state = 'queued' AND j.queue = q.queue ORDER BY j.seq LIMIT 1)
FROM q WHERE queue IS NOT NULL
