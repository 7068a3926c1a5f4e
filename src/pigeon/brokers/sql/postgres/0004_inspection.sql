-- Paused queues: claims take nothing from them until they are resumed.
CREATE TABLE {ns}.paused (queue text PRIMARY KEY);
-- Operators list jobs by task, newest first, a page at a time.
CREATE INDEX jobs_task ON {ns}.jobs (task, seq);
