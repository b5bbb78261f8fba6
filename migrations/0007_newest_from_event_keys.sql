-- The newest events found through the partitions' own primary keys, so `event_index` keeps a
-- B-tree only for de-duplication. `events`' primary key is led by `ts`: a partition's newest
-- rows are the end of its key, partitions are ranges of `ts`, so `ORDER BY ts DESC LIMIT n`
-- reads the newest partition's key backwards and stops (an ordered Append). The look-up by id
-- still gives both key columns (`event_index` supplies `ts`). `event_index (ts)` then serves
-- only retention's range delete: a BRIN index (rows arrive in about time order) instead of a
-- B-tree, one B-tree entry less per event. docs/benchmark.md ("Newest events from the event
-- keys") has the measurements, docs/database.md the queries.
--
-- On a populated database: the primary key of every existing partition is rebuilt, and the
-- index on event_index replaced, in this migration's transaction (it holds an exclusive lock
-- on both tables meanwhile; about the time of building those indexes: docs/database.md).
ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (ts, event_id);

DROP INDEX event_index_ts;
CREATE INDEX event_index_ts ON event_index USING brin (ts) WITH (autosummarize = on);
