-- Candidate: keys led by ts, so rows arriving in time order append at the right edge.
ALTER TABLE event_tags DROP CONSTRAINT event_tags_pkey;
ALTER TABLE event_tags ADD PRIMARY KEY (ts, event_id, tag_id);
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD PRIMARY KEY (ts, event_id);
