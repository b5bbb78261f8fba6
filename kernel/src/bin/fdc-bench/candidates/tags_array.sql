-- fdc-bench: tags-as-array
-- Candidate: an event's tag ids as a bigint[] on its row, found by a GIN index (whose pending
-- list batches the insertions), instead of one event_tags row per tag with two B-tree keys.
-- event_tags stays, empty. The limit and query runs write and read the array (see variant.rs).
ALTER TABLE event_tags DROP CONSTRAINT IF EXISTS event_tags_pkey;
DROP INDEX IF EXISTS event_tags_event;
DROP INDEX IF EXISTS event_tags_tag_ts;
ALTER TABLE events ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}';
CREATE INDEX events_tag_ids ON events USING gin (tag_ids);
