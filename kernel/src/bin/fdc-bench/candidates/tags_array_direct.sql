-- fdc-bench: tags-as-array
-- Candidate: tags_array.sql with the GIN index's pending list off (fastupdate = off): every
-- insertion goes into the index tree at once, so no query scans a pending list.
ALTER TABLE event_tags DROP CONSTRAINT IF EXISTS event_tags_pkey;
DROP INDEX IF EXISTS event_tags_event;
DROP INDEX IF EXISTS event_tags_tag_ts;
ALTER TABLE events ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}';
CREATE INDEX events_tag_ids ON events USING gin (tag_ids) WITH (fastupdate = off);
