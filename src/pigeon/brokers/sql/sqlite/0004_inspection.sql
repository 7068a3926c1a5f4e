-- Paused queues: claims take nothing from them until they are resumed.
CREATE TABLE pigeon_paused (queue TEXT PRIMARY KEY);
-- Pages of one state, newest first, without sorting the state's every job. (Pages of
-- every job walk the rowid, which is seq.)
CREATE INDEX pigeon_jobs_state_seq ON pigeon_jobs (state, seq);
