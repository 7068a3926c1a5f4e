-- {ns} is the schema (a validated identifier); everything else is a bound parameter.
-- Statements that make jobs QUEUED send pg_notify(%(channel)s, queue) for the queues
-- concerned from a CTE; a CTE only runs when referenced, hence "(SELECT count(*) FROM woke)".
-- Arrays are bound in binary (%(x)b): psycopg dumps those several times faster than text.

-- name: enqueue
WITH ins AS (
    INSERT INTO {ns}.jobs (
        id, task, queue, priority, state, envelope, max_attempts, unique_key, run_at, enqueued_at, limit_key, limit_n
    )
    SELECT id, task, queue, priority, state, envelope, max_attempts, unique_key, run_at, enqueued_at, limit_key, limit_n
    FROM unnest(
        %(id)b::text[], %(task)b::text[], %(queue)b::text[], %(priority)b::int[], %(state)b::text[],
        %(envelope)b::bytea[], %(max_attempts)b::int[], %(unique_key)b::text[], %(run_at)b::float8[],
        %(enqueued_at)b::float8[], %(limit_key)b::text[], %(limit_n)b::int[]
    ) WITH ORDINALITY AS t(
        id, task, queue, priority, state, envelope, max_attempts, unique_key, run_at, enqueued_at, limit_key, limit_n, n
    )
    ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, queue, state
), counters AS (
    INSERT INTO {ns}.limits (key) SELECT unnest(%(limit_keys)b::text[]) ON CONFLICT DO NOTHING
), woke AS (
    SELECT pg_notify(%(channel)s, queue) FROM ins WHERE state = 'queued' GROUP BY queue
)
SELECT id FROM ins WHERE (SELECT count(*) FROM woke) >= 0

-- name: enqueue_one
-- `enqueue` for one job without a concurrency limit (a lone send): one row, no arrays to bind
-- and unnest, no limits counter. The same insert, conflict rule and notice, without a CTE:
-- RETURNING is computed for an inserted row only, so the notice goes out exactly when the
-- CTE's did. Parsing and planning the CTE form (a data-modifying CTE, a second CTE over it,
-- a subquery) cost the server about 130 µs a send, a third of its CPU for the statement
-- (benchmarks/insert_cost.py).
INSERT INTO {ns}.jobs (
    id, task, queue, priority, state, envelope, max_attempts, unique_key, run_at, enqueued_at, limit_key, limit_n
)
VALUES (
    %(id)s, %(task)s, %(queue)s, %(priority)s, %(state)s, %(envelope)s, %(max_attempts)s, %(unique_key)s,
    %(run_at)s, %(enqueued_at)s, %(limit_key)s, %(limit_n)s
)
ON CONFLICT DO NOTHING
RETURNING id, CASE WHEN state = 'queued' THEN pg_notify(%(channel)s, queue) END

-- name: pending_by_key
SELECT unique_key, id FROM {ns}.jobs
WHERE unique_key = ANY(%(keys)s) AND state IN ('queued', 'scheduled', 'running')

-- name: claim
-- Due scheduled jobs compete with queued ones; those not taken now become QUEUED.
-- Both updates touch disjoint rows, as PostgreSQL requires within one statement.
-- A limited job is taken while its key's RUNNING count (read under the key's row
-- lock, so current) plus those ahead of it here stays within its limit. Keys found
-- full come back as rows without an envelope; the caller claims again without them.
WITH due AS (
    SELECT id, seq, queue, priority, limit_key, limit_n FROM {ns}.jobs
    WHERE state = 'scheduled' AND run_at <= %(now)s
    ORDER BY run_at LIMIT 1000
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT j.* FROM unnest(%(queues)b::text[]) AS q(name)
    -- A paused queue is left out, and so are its due jobs below.
    CROSS JOIN LATERAL (
        SELECT id, seq, priority, limit_key, limit_n FROM {ns}.jobs
        WHERE state = 'queued' AND queue = q.name AND (limit_key IS NULL OR limit_key <> ALL(%(full)b::text[]))
        ORDER BY priority DESC, seq
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) j
    WHERE q.name NOT IN (SELECT queue FROM {ns}.paused)
), candidates AS (
    SELECT id, seq, priority, limit_key, limit_n FROM ready
    UNION ALL
    SELECT id, seq, priority, limit_key, limit_n FROM due
    WHERE queue = ANY(%(queues)b::text[]) AND (limit_key IS NULL OR limit_key <> ALL(%(full)b::text[]))
      AND queue NOT IN (SELECT queue FROM {ns}.paused)
), counters AS (
    SELECT key, running FROM {ns}.limits
    WHERE key IN (SELECT limit_key FROM candidates)
    ORDER BY key
    FOR UPDATE
), ranked AS (
    SELECT c.*, coalesce(n.running, 0)
        + row_number() OVER (PARTITION BY c.limit_key ORDER BY c.priority DESC, c.seq) <= c.limit_n AS room
    FROM candidates c LEFT JOIN counters n ON n.key = c.limit_key
), chosen AS (
    SELECT id FROM ranked WHERE limit_key IS NULL OR room
    ORDER BY priority DESC, seq
    LIMIT %(limit)s
), promoted AS (
    UPDATE {ns}.jobs SET state = 'queued'
    WHERE id IN (SELECT id FROM due) AND id NOT IN (SELECT id FROM chosen)
), claimed AS (
    UPDATE {ns}.jobs
    SET state = 'running', attempts = attempts + 1, token = %(token)s, worker_id = %(worker_id)s,
        started_at = %(now)s, lease_until = %(lease_until)s
    WHERE id IN (SELECT id FROM chosen)
    RETURNING priority, seq, envelope, attempts, id
)
SELECT *, NULL::text FROM claimed
UNION ALL
SELECT DISTINCT NULL::int, NULL::bigint, NULL::bytea, NULL::int, NULL::text, limit_key FROM ranked
WHERE limit_key IS NOT NULL AND NOT room

-- name: settle
-- Rows are locked in id order so a settle and a heartbeat of the same jobs cannot deadlock.
--
-- Plans that stay linear whatever the statistics say. A queue's statistics are always
-- stale (ANALYZE may have seen no job running while thousands run now), and a predicate
-- on state lets the planner believe the RUNNING partial index holds one row and pair each
-- outcome with every running job: 37 s for a 12,800-outcome batch. So rows are found by
-- id, and the token stands for the state: a claim sets it and every way out of RUNNING
-- clears it. Each outcome rides with its locked row into the update, which finds its
-- rows by primary key alone; the lock keeps them as they were checked.
--
-- Each outcome looks its row up on its own (the LIMIT keeps the lateral subquery from
-- being flattened into a join): as a join, a table whose statistics call it small was
-- read whole, with a hash join, for every settle. The outcomes go in id order, so the
-- rows are locked in that order. The update finds the locked rows through the primary
-- key with an array of their ids, whatever the statistics say; not by ctid: a row that
-- another transaction changed after this statement's snapshot is locked in its newest
-- version, which a TID scan under that snapshot does not see, and it would be skipped.
WITH locked AS (
    SELECT j.id, o.state, o.result, o.error, o.keep_error, o.release, o.run_at, o.finished_at,
        o.expires_at
    FROM (
        SELECT * FROM unnest(
            %(id)b::text[], %(token)b::text[], %(state)b::text[], %(result)b::bytea[], %(error)b::bytea[],
            %(keep_error)b::bool[], %(release)b::bool[], %(run_at)b::float8[], %(finished_at)b::float8[],
            %(expires_at)b::float8[]
        ) AS o(id, token, state, result, error, keep_error, release, run_at, finished_at, expires_at)
        ORDER BY id
    ) o
    CROSS JOIN LATERAL (
        SELECT id FROM {ns}.jobs WHERE id = o.id AND token = o.token LIMIT 1 FOR UPDATE
    ) j
), done AS (
    UPDATE {ns}.jobs j
    SET state = l.state,
        result = CASE WHEN l.state = 'succeeded' THEN l.result ELSE j.result END,
        error = CASE WHEN l.keep_error THEN j.error ELSE l.error END,
        errors = CASE WHEN l.keep_error THEN j.errors ELSE {ns}.append_error(j.errors, l.error) END,
        attempts = j.attempts - l.release::int,
        run_at = coalesce(l.run_at, j.run_at),
        finished_at = coalesce(l.finished_at, j.finished_at),
        expires_at = CASE WHEN l.finished_at IS NULL THEN j.expires_at ELSE l.expires_at END,
        token = NULL, lease_until = NULL
    FROM locked l
    WHERE j.id = ANY(ARRAY(SELECT id FROM locked)) AND j.id = l.id
    RETURNING j.id, j.queue, j.state
), woke AS (
    SELECT pg_notify(%(channel)s, queue) FROM done WHERE state = 'queued' GROUP BY queue
)
SELECT id FROM done WHERE (SELECT count(*) FROM woke) >= 0

-- name: heartbeat
-- By id and token, one lookup a lease, in id order, as settle does.
WITH beat AS (
    INSERT INTO {ns}.workers (id, info, last_seen) VALUES (%(worker_id)s, %(info)s, %(now)s)
    ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen
), locked AS (
    SELECT j.id
    FROM (SELECT * FROM unnest(%(id)b::text[], %(token)b::text[]) AS l(id, token) ORDER BY id) l
    CROSS JOIN LATERAL (
        SELECT id FROM {ns}.jobs WHERE id = l.id AND token = l.token LIMIT 1 FOR UPDATE
    ) j
)
UPDATE {ns}.jobs SET lease_until = %(lease_until)s
WHERE id = ANY(ARRAY(SELECT id FROM locked))
RETURNING id

-- name: upsert_worker
INSERT INTO {ns}.workers (id, info, last_seen) VALUES (%(worker_id)s, %(info)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen

-- name: delete_worker
DELETE FROM {ns}.workers WHERE id = %(worker_id)s

-- name: workers
SELECT info, last_seen FROM {ns}.workers ORDER BY id

-- name: recover
-- Expired leases, and jobs of registered workers that went silent. SKIP LOCKED makes
-- racing sweeps split the jobs between them, and passes over jobs being settled.
WITH lost AS (
    SELECT j.id, j.attempts >= j.max_attempts AS spent FROM {ns}.jobs j
    LEFT JOIN {ns}.workers w ON w.id = j.worker_id
    WHERE j.state = 'running' AND (j.lease_until < %(now)s OR (w.id IS NOT NULL AND w.last_seen < %(silent)s))
    FOR UPDATE OF j SKIP LOCKED
), done AS (
    UPDATE {ns}.jobs j
    SET state = CASE WHEN lost.spent THEN 'failed' ELSE 'queued' END,
        error = %(lost_error)s,
        errors = {ns}.append_error(j.errors, %(lost_error)s),
        finished_at = CASE WHEN lost.spent THEN %(now)s ELSE j.finished_at END,
        expires_at = CASE WHEN lost.spent THEN %(expires)s::double precision ELSE j.expires_at END,
        token = NULL, lease_until = NULL
    FROM lost
    WHERE j.id = lost.id
    RETURNING j.queue, j.state
), forget AS (
    DELETE FROM {ns}.workers WHERE last_seen < %(silent)s
), woke AS (
    SELECT pg_notify(%(channel)s, queue) FROM done WHERE state = 'queued' GROUP BY queue
)
SELECT count(*) FROM done WHERE (SELECT count(*) FROM woke) >= 0

-- name: prune
-- In batches, each a short transaction: one DELETE of a day's expired jobs would hold back
-- VACUUM's horizon (and every claim behind the dead entries it cannot remove) for its length.
-- SKIP LOCKED passes over rows a racing prune or a requeue holds.
WITH doomed AS (
    SELECT id FROM {ns}.jobs
    WHERE expires_at <= %(now)s AND state IN ('succeeded', 'failed', 'cancelled')
    ORDER BY expires_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM {ns}.jobs WHERE id IN (SELECT id FROM doomed)

-- name: get
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until, progress, id
FROM {ns}.jobs WHERE id = %(id)s

-- name: list
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until, progress, id
FROM {ns}.jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY seq DESC LIMIT %(limit)s

-- name: stats
SELECT queue, state, count(*) FROM {ns}.jobs GROUP BY queue, state ORDER BY queue

-- name: cancel
UPDATE {ns}.jobs
SET state = 'cancelled', finished_at = %(now)s, expires_at = %(expires_at)s, token = NULL, lease_until = NULL
WHERE id = %(id)s AND state IN ('queued', 'scheduled', 'running')

-- name: requeue
WITH done AS (
    UPDATE {ns}.jobs
    SET state = 'queued', attempts = 0, run_at = %(now)s, finished_at = NULL, expires_at = NULL, error = NULL
    WHERE id = %(id)s AND state IN ('failed', 'cancelled')
    RETURNING queue
), woke AS (
    SELECT pg_notify(%(channel)s, queue) FROM done
)
SELECT count(*) FROM done WHERE (SELECT count(*) FROM woke) >= 0

-- name: cancel_many
UPDATE {ns}.jobs
SET state = 'cancelled', finished_at = %(now)s, expires_at = %(expires_at)s, token = NULL, lease_until = NULL
WHERE id = ANY(%(ids)s) AND state IN ('queued', 'scheduled', 'running')

-- name: requeue_many
-- One unique key taken by a newer pending job undoes the whole statement (the caller then
-- requeues one by one).
WITH done AS (
    UPDATE {ns}.jobs
    SET state = 'queued', attempts = 0, run_at = %(now)s, finished_at = NULL, expires_at = NULL, error = NULL
    WHERE id = ANY(%(ids)s) AND state IN ('failed', 'cancelled')
    RETURNING queue
), woke AS (
    SELECT pg_notify(%(channel)s, q) FROM (SELECT DISTINCT queue AS q FROM done) AS queues
)
SELECT count(*) FROM done WHERE (SELECT count(*) FROM woke) >= 0

-- name: purge
DELETE FROM {ns}.jobs
WHERE state IN (SELECT jsonb_array_elements_text(%(states)s::jsonb))
    AND (%(queue)s::text IS NULL OR queue = %(queue)s)

-- name: progress
-- The token stands for the state (see settle).
UPDATE {ns}.jobs SET progress = %(data)s
WHERE id = %(id)s AND token = %(token)s

-- name: take
-- pigeon/bucket.py's take, in one statement so that it is atomic across workers: the refill
-- and the take are computed from the old row (SET sees it); never refilled backwards, and
-- the bucket's clock never moves back.
INSERT INTO {ns}.buckets AS b (key, tokens, at, granted)
VALUES (%(key)s, %(burst)s - (%(burst)s >= 1)::int, %(now)s, %(burst)s >= 1)
ON CONFLICT (key) DO UPDATE SET
    granted = least(%(burst)s, b.tokens + greatest(%(now)s - b.at, 0) * %(rate)s) >= 1,
    tokens = least(%(burst)s, b.tokens + greatest(%(now)s - b.at, 0) * %(rate)s)
        - (least(%(burst)s, b.tokens + greatest(%(now)s - b.at, 0) * %(rate)s) >= 1)::int,
    at = greatest(%(now)s, b.at)
RETURNING granted, tokens

-- name: queued_in
-- After LISTEN starts: which of these queues already had work before it did.
SELECT DISTINCT queue FROM {ns}.jobs WHERE state = 'queued' AND queue = ANY(%(queues)s)

-- name: find_any_state
-- An argument search of every state reads every job anyway: one sequential scan keeping
-- the newest n beats walking an index and fetching each row.
SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until,
    progress, id, seq
FROM {ns}.jobs WHERE {where} ORDER BY seq DESC LIMIT %(limit)s

-- name: find_in_state
-- One state's newest page, walking jobs_state_seq backwards; a page of several states is
-- the newest of these, one per state (UNION ALL), so no page sorts the table.
(SELECT envelope, state, attempts, result, error, errors, worker_id, started_at, finished_at, lease_until,
    progress, id, seq
 FROM {ns}.jobs WHERE state = {state} AND {where} ORDER BY seq DESC LIMIT %(limit)s)

-- name: count
SELECT count(*) FROM {ns}.jobs WHERE {where}

-- name: delete
DELETE FROM {ns}.jobs WHERE id = ANY(%(ids)s)

-- name: pause
INSERT INTO {ns}.paused (queue) VALUES (%(queue)s) ON CONFLICT DO NOTHING

-- name: resume
-- Idle workers wait for a notification: a resumed queue with jobs wakes them.
WITH gone AS (DELETE FROM {ns}.paused WHERE queue = %(queue)s RETURNING queue)
SELECT pg_notify(%(channel)s, queue) FROM gone

-- name: paused
SELECT queue FROM {ns}.paused ORDER BY queue

-- name: oldest_ready
-- Loose index scans over jobs_ready (queue, priority DESC, seq): each queue with QUEUED
-- jobs, each priority in it, that priority's first job; a few probes per (queue,
-- priority), however long the backlog.
WITH RECURSIVE q AS (
    SELECT min(queue) AS queue FROM {ns}.jobs WHERE state = 'queued'
    UNION ALL
    SELECT (SELECT min(queue) FROM {ns}.jobs WHERE state = 'queued' AND queue > q.queue)
    FROM q WHERE q.queue IS NOT NULL
), p AS (
    SELECT q.queue, (SELECT max(priority) FROM {ns}.jobs WHERE state = 'queued' AND queue = q.queue) AS priority
    FROM q WHERE q.queue IS NOT NULL
    UNION ALL
    SELECT p.queue,
        (SELECT max(priority) FROM {ns}.jobs WHERE state = 'queued' AND queue = p.queue AND priority < p.priority)
    FROM p WHERE p.priority IS NOT NULL
)
SELECT p.queue, min(f.enqueued_at) FROM p
CROSS JOIN LATERAL (
    SELECT enqueued_at FROM {ns}.jobs
    WHERE state = 'queued' AND queue = p.queue AND priority = p.priority
    ORDER BY seq LIMIT 1
) f
WHERE p.priority IS NOT NULL
GROUP BY p.queue
