-- Candidate: event_tags without a primary key, with a plain index on event_id for the tags of
-- one event (no uniqueness check, a 16-byte key instead of 32).
ALTER TABLE event_tags DROP CONSTRAINT event_tags_pkey;
CREATE INDEX event_tags_event ON event_tags (event_id);
