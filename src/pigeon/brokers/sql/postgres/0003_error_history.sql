-- Every failed attempt's error, oldest first: a JSON array of the `error` values, kept as
-- text so an append is string work rather than a parse and re-serialise.
ALTER TABLE {ns}.jobs ADD COLUMN errors text;

CREATE FUNCTION {ns}.append_error(errors text, error bytea) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN error IS NULL THEN errors
        WHEN errors IS NULL THEN '[' || convert_from(error, 'UTF8') || ']'
        ELSE left(errors, -1) || ',' || convert_from(error, 'UTF8') || ']'
    END
$$;
