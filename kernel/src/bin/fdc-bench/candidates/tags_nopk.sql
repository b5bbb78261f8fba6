-- Candidate: event_tags without a primary key (event_index already admits each event once).
ALTER TABLE event_tags DROP CONSTRAINT event_tags_pkey;
