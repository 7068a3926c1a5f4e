-- Paused queues: claims take nothing from them until they are resumed.
CREATE TABLE pigeon_paused (queue TEXT PRIMARY KEY);
-- Operators list jobs by task, newest first, a page at a time.
CREATE INDEX pigeon_jobs_task ON pigeon_jobs (task, seq);
-- Pages of one state, newest first, without sorting the state's every job.
CREATE INDEX pigeon_jobs_state_seq ON pigeon_jobs (state, seq);
