-- A queue table churns: every job is inserted, updated at its claim and again at its
-- settle, and no update can be HOT (each changes `state`, which the partial indexes'
-- predicates read), so each job leaves two dead row versions and two dead entries in
-- several indexes. Claims read `jobs_ready` from its head, and an entry that went dead
-- stays on its page, marked but still stepped over, until VACUUM removes it: with
-- autovacuum's defaults (20% of the table dead before it acts) a claim on a 1,000,000-job
-- table steps over hundreds of thousands of them, and the drain slows by half.
-- So the table is vacuumed after a fixed number of dead rows, whatever its size, and the
-- vacuum is not throttled: it then runs often, each time over the little that changed.
-- autovacuum_naptime (server-wide, 1 min by default) bounds how soon it can start;
-- docs/performance.md recommends 10 s or less for busy queues.
ALTER TABLE {ns}.jobs SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 20000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 100000
);
