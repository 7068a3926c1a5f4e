-- Flow control: concurrency limits, progress reports, rate-limit buckets.

ALTER TABLE {ns}.jobs
    ADD COLUMN progress  bytea,
    ADD COLUMN limit_key text,
    ADD COLUMN limit_n   integer NOT NULL DEFAULT 0;

-- How many jobs of each limit key are RUNNING. Claims lock a key's row FOR UPDATE,
-- which hands them its latest committed count, so racing claims cannot overshoot.
-- Enqueue creates the row; the triggers below keep the count, whatever moves a job
-- in or out of RUNNING (claim, settle, recover, purge).
CREATE TABLE {ns}.limits (
    key     text PRIMARY KEY,
    running integer NOT NULL DEFAULT 0
);

CREATE FUNCTION {ns}.count_running() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {ns}.limits
    SET running = running + CASE WHEN TG_OP = 'UPDATE' AND NEW.state = 'running' THEN 1 ELSE -1 END
    WHERE key = OLD.limit_key;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_count_running AFTER UPDATE OF state ON {ns}.jobs FOR EACH ROW
    WHEN (OLD.limit_key IS NOT NULL AND (OLD.state = 'running') <> (NEW.state = 'running'))
    EXECUTE FUNCTION {ns}.count_running();
CREATE TRIGGER jobs_count_deleted AFTER DELETE ON {ns}.jobs FOR EACH ROW
    WHEN (OLD.limit_key IS NOT NULL AND OLD.state = 'running')
    EXECUTE FUNCTION {ns}.count_running();

-- One row per rate-limit key. "granted" is the outcome of the latest take, so that
-- a take is one atomic upsert that also says whether it got a token.
CREATE TABLE {ns}.buckets (
    key     text PRIMARY KEY,
    tokens  double precision NOT NULL,
    at      double precision NOT NULL,
    granted boolean NOT NULL
);
