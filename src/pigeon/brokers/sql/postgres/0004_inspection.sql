-- Paused queues: claims take nothing from them until they are resumed.
CREATE TABLE {ns}.paused (queue text PRIMARY KEY);
-- Operators list jobs by task, newest first, a page at a time.
CREATE INDEX jobs_task ON {ns}.jobs (task, seq);
-- Pages newest first, of every job or of one state, walk these backwards instead of
-- sorting the table. (Each index costs every write a little: see docs/architecture.md.)
CREATE INDEX jobs_seq ON {ns}.jobs (seq);
CREATE INDEX jobs_state_seq ON {ns}.jobs (state, seq);
