-- The newest-events query of queries.sql for a schema before migration 7, whose `events` key
-- is led by `event_id` and whose `event_index (ts)` is a B-tree; same name. fdc-bench runs it
-- on such a schema (`--db-schema before=6`).

-- name: newest_100
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM (SELECT event_id, ts FROM event_index ORDER BY ts DESC LIMIT 100) i
JOIN events e ON e.event_id = i.event_id AND e.ts = i.ts
ORDER BY e.ts DESC;
