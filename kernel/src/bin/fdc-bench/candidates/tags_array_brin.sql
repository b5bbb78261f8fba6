-- fdc-bench: tags-as-array
-- Candidate: tags_array.sql plus a BRIN index on events (ts). A tag in a short window is then a
-- BitmapAnd of the tag's GIN posting list and the window's block ranges, so the heap is read
-- only where the window's rows are (rows arrive in time order), not for every event of the
-- day carrying the tag. BRIN costs next to nothing to keep: one summary per 32 pages.
ALTER TABLE event_tags DROP CONSTRAINT IF EXISTS event_tags_pkey;
DROP INDEX IF EXISTS event_tags_event;
DROP INDEX IF EXISTS event_tags_tag_ts;
ALTER TABLE events ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}';
CREATE INDEX events_tag_ids ON events USING gin (tag_ids);
CREATE INDEX events_ts_brin ON events USING brin (ts) WITH (pages_per_range = 32, autosummarize = on);
