-- Concurrency limits across workers, progress reports, rate-limit buckets.
ALTER TABLE pigeon_jobs ADD COLUMN limit_key TEXT;
ALTER TABLE pigeon_jobs ADD COLUMN conc_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pigeon_jobs ADD COLUMN progress BLOB;
CREATE INDEX pigeon_jobs_limited ON pigeon_jobs (limit_key) WHERE state = 'running' AND limit_key IS NOT NULL;

CREATE TABLE pigeon_buckets (
    key     TEXT PRIMARY KEY,
    tokens  REAL NOT NULL,
    updated REAL NOT NULL
);
