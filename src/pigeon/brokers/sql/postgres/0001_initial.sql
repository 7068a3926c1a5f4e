-- {ns} is the schema that holds pigeon's tables (the URL's namespace, default pigeon).
-- Times are Unix seconds (double precision), computed by the clients as in every broker.

-- Jobs: the envelope as encoded once by the sender, plus the columns the
-- queue needs to find, order, lease and settle it.
CREATE TABLE {ns}.jobs (
    seq          bigserial NOT NULL,  -- enqueue order; not indexed on its own: each index slows enqueue
    id           text PRIMARY KEY,
    task         text NOT NULL,
    queue        text NOT NULL,
    priority     integer NOT NULL,
    state        text NOT NULL CHECK (state IN ('queued', 'scheduled', 'running', 'succeeded', 'failed', 'cancelled')),
    envelope     bytea NOT NULL,
    max_attempts integer NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    unique_key   text,
    run_at       double precision NOT NULL,
    enqueued_at  double precision NOT NULL,
    token        text,
    worker_id    text,
    lease_until  double precision,
    started_at   double precision,
    finished_at  double precision,
    expires_at   double precision,
    result       bytea,
    error        bytea
);

-- Claims read this index in order: highest priority, then oldest. No other index may lead
-- with state: on a table whose statistics lag its growth the planner would take it and sort.
CREATE INDEX jobs_ready ON {ns}.jobs (queue, priority DESC, seq) WHERE state = 'queued';
CREATE INDEX jobs_scheduled ON {ns}.jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX jobs_running ON {ns}.jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_expiry ON {ns}.jobs (expires_at) WHERE expires_at IS NOT NULL;
-- One pending job per unique key; finished jobs free the key.
CREATE UNIQUE INDEX jobs_unique ON {ns}.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'scheduled', 'running');

CREATE TABLE {ns}.workers (
    id        text PRIMARY KEY,
    info      bytea NOT NULL,
    last_seen double precision NOT NULL
);
