-- Jobs: the envelope as encoded once by the sender, plus the columns the
-- queue needs to find, order, lease and settle it.
CREATE TABLE pigeon_jobs (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    task         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    priority     INTEGER NOT NULL,
    state        TEXT NOT NULL,
    envelope     BLOB NOT NULL,
    max_attempts INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    unique_key   TEXT,
    run_at       REAL NOT NULL,
    enqueued_at  REAL NOT NULL,
    token        TEXT,
    worker_id    TEXT,
    lease_until  REAL,
    started_at   REAL,
    finished_at  REAL,
    expires_at   REAL,
    result       BLOB,
    error        BLOB
);

-- Claims read this index in order: highest priority, then oldest.
CREATE INDEX pigeon_jobs_ready ON pigeon_jobs (queue, priority DESC, seq) WHERE state = 'queued';
CREATE INDEX pigeon_jobs_scheduled ON pigeon_jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX pigeon_jobs_running ON pigeon_jobs (lease_until) WHERE state = 'running';
CREATE INDEX pigeon_jobs_expiry ON pigeon_jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX pigeon_jobs_state ON pigeon_jobs (state, queue);
-- One pending job per unique key; finished jobs free the key.
CREATE UNIQUE INDEX pigeon_jobs_unique ON pigeon_jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('queued', 'scheduled', 'running');

CREATE TABLE pigeon_workers (
    id        TEXT PRIMARY KEY,
    info      BLOB NOT NULL,
    last_seen REAL NOT NULL
);
