-- Every failed attempt's error, oldest first: a JSON array of the `error` values.
ALTER TABLE pigeon_jobs ADD COLUMN errors TEXT;
