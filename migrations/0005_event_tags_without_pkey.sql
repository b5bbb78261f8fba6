-- Tag rows without a primary key of their own. event_index admits each event id once and the
-- kernel writes each (event, tag) pair once (an event's tag keys are distinct up to case), so
-- the key (event_id, tag_id, ts) only re-checked what was already guaranteed, with a wide key.
-- The tags of one event are found through event_tags_event (event_id) instead. docs/database.md
-- and docs/benchmark.md ("Round two") give the measured effect.
--
-- On a populated database: the index is built on every partition first (writes to event_tags
-- wait while it builds, about a second per million tag rows), then the key is dropped from the
-- parent and with it from every partition (no rows are rewritten). Partitions created later
-- get the index and no key.
CREATE INDEX event_tags_event ON event_tags (event_id);
ALTER TABLE event_tags DROP CONSTRAINT event_tags_pkey;
