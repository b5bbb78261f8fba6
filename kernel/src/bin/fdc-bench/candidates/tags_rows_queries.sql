-- The tag queries of queries.sql for a schema keeping tags in event_tags rows (migrations up to
-- 5, before tags moved onto the event row); same names and parameters. fdc-bench runs them on
-- such a schema (`--db-schema before=5`).

-- name: event_tags_by_id
SELECT g.key, g.value
FROM event_tags t
JOIN tags g ON g.tag_id = t.tag_id
WHERE t.event_id = $1
  AND t.ts = (SELECT i.ts FROM event_index i WHERE i.event_id = $1);

-- name: one_tag_hour
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM event_tags t
JOIN events e ON e.event_id = t.event_id AND e.ts = t.ts
WHERE t.tag_id = (SELECT tag_id FROM tags WHERE key = $1::citext AND value = $2::citext)
  AND t.ts >= $3 AND t.ts < $3 + interval '1 hour'
ORDER BY t.ts;

-- name: two_tags_day
SELECT e.event_id, e.ts, e.subject_id, e.payload
FROM event_tags a
JOIN event_tags b ON b.event_id = a.event_id AND b.ts = a.ts
JOIN events e ON e.event_id = a.event_id AND e.ts = a.ts
WHERE a.tag_id = (SELECT tag_id FROM tags WHERE key = $1::citext AND value = $2::citext)
  AND b.tag_id = (SELECT tag_id FROM tags WHERE key = $3::citext AND value = $4::citext)
  AND a.ts >= $5 AND a.ts < $5 + interval '1 day'
  AND b.ts >= $5 AND b.ts < $5 + interval '1 day'
ORDER BY a.ts;

-- name: tag_counts_hourly_day
SELECT g.key, g.value, c.hour, c.events
FROM (SELECT t.tag_id, date_trunc('hour', t.ts) AS hour, count(*) AS events
      FROM event_tags t
      WHERE t.ts >= $1 AND t.ts < $1 + interval '1 day'
      GROUP BY 1, 2) c
JOIN tags g ON g.tag_id = c.tag_id
ORDER BY c.hour, g.key, g.value;
