-- Paused queues: claims take nothing from them until they are resumed.
CREATE TABLE {ns}.paused (queue text PRIMARY KEY);
-- Pages newest first walk this backwards, one state at a time, instead of sorting the
-- table. Its one index: a state change is never a HOT update here, so every index costs
-- each claim and settle an entry (see docs/architecture.md).
CREATE INDEX jobs_state_seq ON {ns}.jobs (state, seq);
