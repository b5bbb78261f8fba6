-- The queries a user of the events schema runs (docs/database.md, "Queries"). fdc-bench's query
-- run executes exactly these texts; a test checks that docs/database.md shows the same ones.
-- Each query starts with a `-- name:` line; parameters are numbered.

-- name: event_by_id
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM events e
WHERE e.event_id = $1
  AND e.ts = (SELECT i.ts FROM event_index i WHERE i.event_id = $1);

-- name: event_tags_by_id
SELECT g.key, g.value
FROM events e
JOIN tags g ON g.tag_id = ANY (e.tag_ids)
WHERE e.event_id = $1
  AND e.ts = (SELECT i.ts FROM event_index i WHERE i.event_id = $1);

-- name: subject_hour
SELECT e.event_id, e.ts, e.payload
FROM events e
WHERE e.subject_id = $1
  AND e.ts >= $2 AND e.ts < $2 + interval '1 hour'
ORDER BY e.ts;

-- name: subject_day
SELECT e.event_id, e.ts, e.payload
FROM events e
WHERE e.subject_id = $1
  AND e.ts >= $2 AND e.ts < $2 + interval '1 day'
ORDER BY e.ts;

-- name: one_tag_hour
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM events e
WHERE e.tag_ids @> ARRAY[(SELECT tag_id FROM tags WHERE key = $1::citext AND value = $2::citext)]
  AND e.ts >= $3 AND e.ts < $3 + interval '1 hour'
ORDER BY e.ts;

-- name: two_tags_day
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM events e
WHERE e.tag_ids @> ARRAY[(SELECT tag_id FROM tags WHERE key = $1::citext AND value = $2::citext),
                         (SELECT tag_id FROM tags WHERE key = $3::citext AND value = $4::citext)]
  AND e.ts >= $5 AND e.ts < $5 + interval '1 day'
ORDER BY e.ts;

-- name: tag_counts_hourly_day
SELECT g.key, g.value, c.hour, c.events
FROM (SELECT t.tag_id, t.hour, count(*) AS events
      FROM (SELECT unnest(e.tag_ids) AS tag_id, date_trunc('hour', e.ts) AS hour
            FROM events e
            WHERE e.ts >= $1 AND e.ts < $1 + interval '1 day') t
      GROUP BY 1, 2) c
JOIN tags g ON g.tag_id = c.tag_id
ORDER BY c.hour, g.key, g.value;

-- name: newest_100
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM events e
ORDER BY e.ts DESC
LIMIT 100;
