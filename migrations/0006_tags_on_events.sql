-- An event's tags as a bigint[] on its own row (events.tag_ids), found by a GIN index, instead
-- of one event_tags row per tag with two B-tree keys of its own. A W1 event (three tags) then
-- writes one heap row and one GIN entry per tag (batched by the GIN pending list) where it
-- wrote four heap rows and six B-tree entries. A BRIN index on events (ts) lets a tag in a
-- short window read only that window's pages (the tag's posting list AND the window's block
-- ranges; rows arrive in time order), which the GIN index alone cannot. docs/benchmark.md
-- ("Tags on the event row") has the measurements; docs/database.md the queries.
--
-- On a populated database: the tag rows are folded into their events (every tagged event row
-- is rewritten once, in this migration's transaction), event_tags is dropped, and a view of the
-- same name and columns keeps reading queries written for it working (without an index: use
-- events.tag_ids for anything hot).
ALTER TABLE events ADD COLUMN tag_ids bigint[] NOT NULL DEFAULT '{}';

UPDATE events e
SET tag_ids = t.tag_ids
FROM (SELECT event_id, ts, array_agg(tag_id ORDER BY tag_id) AS tag_ids
      FROM event_tags
      GROUP BY event_id, ts) t
WHERE e.event_id = t.event_id AND e.ts = t.ts;

DROP TABLE event_tags;

CREATE INDEX events_tag_ids ON events USING gin (tag_ids);
CREATE INDEX events_ts ON events USING brin (ts) WITH (pages_per_range = 32, autosummarize = on);

CREATE VIEW event_tags AS
SELECT e.event_id, t.tag_id, e.ts
FROM events e
CROSS JOIN LATERAL unnest(e.tag_ids) AS t(tag_id);
