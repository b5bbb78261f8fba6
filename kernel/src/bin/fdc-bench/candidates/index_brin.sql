-- Candidate: BRIN instead of a B-tree on event_index.ts (rows arrive in time order).
DROP INDEX event_index_ts;
CREATE INDEX event_index_ts ON event_index USING brin (ts);
