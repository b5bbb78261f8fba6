-- The tag queries of queries.sql for a schema keeping tags in events.tag_ids (candidate
-- tags_array.sql); same names and parameters.

-- name: event_tags_by_id
SELECT g.key, g.value
FROM events e
JOIN tags g ON g.tag_id = ANY (e.tag_ids)
WHERE e.event_id = $1
  AND e.ts = (SELECT i.ts FROM event_index i WHERE i.event_id = $1);

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
FROM (SELECT t.tag_id, date_trunc('hour', e.ts) AS hour, count(*) AS events
      FROM events e, unnest(e.tag_ids) AS t(tag_id)
      WHERE e.ts >= $1 AND e.ts < $1 + interval '1 day'
      GROUP BY 1, 2) c
JOIN tags g ON g.tag_id = c.tag_id
ORDER BY c.hour, g.key, g.value;
