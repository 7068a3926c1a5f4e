-- Counts and pages by task: a bulk confirmation's count of one task's failed jobs reads
-- this index alone (the rowid, seq, ends every index, so a (task, state) range is also in
-- enqueue order, and a page of one task in one state walks it backwards without sorting).
-- PostgreSQL has no such index: there every claim and settle would add an entry to it
-- and leave a dead one behind (docs/architecture.md); SQLite moves the entry, leaving nothing.
CREATE INDEX pigeon_jobs_task_state ON pigeon_jobs (task, state);
