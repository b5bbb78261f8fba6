//! Subject and tag ids: upserted once, then served from a cache.
//!
//! Ids are resolved in their own short statements, outside the batch transaction, so that a
//! cached id always refers to a committed row (a rolled-back batch cannot leave a phantom id
//! in the cache). An unused subject or tag row is harmless.
//!
//! The tag cache is keyed by the strings exactly as producers send them; Postgres alone
//! decides which spellings are the same `citext` tag (the upsert answers with the input
//! spelling), so no case folding is guessed in Rust and a cache hit allocates nothing.

use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// Past this many entries a cache is cleared rather than grown: memory stays bounded with
/// high-cardinality subjects, at the cost of some re-resolution.
const MAX_CACHED: usize = 500_000;

/// Tag key → tag value → id; nested so a look-up borrows `&str`s.
#[derive(Default)]
struct TagMap {
    by_key: HashMap<String, HashMap<String, i64>>,
    len: usize,
}

impl TagMap {
    fn get(&self, key: &str, value: &str) -> Option<i64> {
        self.by_key.get(key)?.get(value).copied()
    }

    fn insert(&mut self, key: String, value: String, id: i64) {
        if self
            .by_key
            .entry(key)
            .or_default()
            .insert(value, id)
            .is_none()
        {
            self.len += 1;
        }
    }
}

#[derive(Clone, Default)]
pub struct IdCache {
    subjects: Arc<Mutex<HashMap<String, Uuid>>>,
    tags: Arc<Mutex<TagMap>>,
}

impl IdCache {
    /// Forgets every id: after a switch to another server, which may lack the newest rows of
    /// the old one (asynchronous replication).
    pub fn clear(&self) {
        self.subjects
            .lock()
            .expect("subject cache poisoned")
            .clear();
        *self.tags.lock().expect("tag cache poisoned") = TagMap::default();
    }

    /// Ids for each of `keys` (same order), inserting unknown subjects.
    pub async fn subject_ids(&self, pool: &PgPool, keys: &[&str]) -> Result<Vec<Uuid>, StoreError> {
        let mut missing: Vec<String> = {
            let cache = self.subjects.lock().expect("subject cache poisoned");
            let mut seen = HashSet::new();
            keys.iter()
                .filter(|k| !cache.contains_key(**k) && seen.insert(**k))
                .map(|k| k.to_string())
                .collect()
        };
        let mut found = HashMap::new();
        if !missing.is_empty() {
            // Sorted: concurrent upserts of overlapping keys lock them in the same order.
            missing.sort_unstable();
            found = upsert_subjects(pool, &missing).await?;
            let mut cache = self.subjects.lock().expect("subject cache poisoned");
            if cache.len() + found.len() > MAX_CACHED {
                cache.clear();
            }
            cache.extend(found.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let cache = self.subjects.lock().expect("subject cache poisoned");
        keys.iter()
            .map(|k| {
                // `found` as well: the cache may have been cleared by another batch meanwhile.
                cache
                    .get(*k)
                    .or_else(|| found.get(*k))
                    .copied()
                    .ok_or_else(|| {
                        StoreError::Data(sqlx::Error::Protocol(format!(
                            "subject `{k}` could not be resolved"
                        )))
                    })
            })
            .collect()
    }

    /// Ids for each (key, value) pair (same order), inserting unknown tags.
    pub async fn tag_ids(
        &self,
        pool: &PgPool,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<i64>, StoreError> {
        let mut missing: Vec<(String, String)> = {
            let cache = self.tags.lock().expect("tag cache poisoned");
            let mut seen = HashSet::new();
            pairs
                .iter()
                .filter(|(k, v)| cache.get(k, v).is_none() && seen.insert((*k, *v)))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut found = TagMap::default();
        if !missing.is_empty() {
            missing.sort_unstable();
            let rows = upsert_tags(pool, &missing).await?;
            let mut cache = self.tags.lock().expect("tag cache poisoned");
            if cache.len + rows.len() > MAX_CACHED {
                *cache = TagMap::default();
            }
            for (k, v, id) in rows {
                cache.insert(k.clone(), v.clone(), id);
                found.insert(k, v, id);
            }
        }
        let cache = self.tags.lock().expect("tag cache poisoned");
        pairs
            .iter()
            .map(|(k, v)| {
                cache.get(k, v).or_else(|| found.get(k, v)).ok_or_else(|| {
                    StoreError::Data(sqlx::Error::Protocol(format!(
                        "tag `{k}` could not be resolved"
                    )))
                })
            })
            .collect()
    }
}

/// Inserts what is new and reads what exists. A row committed by another replica after this
/// statement's snapshot is neither inserted nor seen, so the loop asks again for the rest.
async fn upsert_subjects(
    pool: &PgPool,
    keys: &[String],
) -> Result<HashMap<String, Uuid>, StoreError> {
    let mut found = HashMap::with_capacity(keys.len());
    let mut pending: Vec<String> = keys.to_vec();
    for _ in 0..3 {
        let new_ids: Vec<Uuid> = pending.iter().map(|_| Uuid::now_v7()).collect();
        let rows: Vec<(String, Uuid)> = sqlx::query_as(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::uuid[]) AS i(k, id)), \
             ins AS (INSERT INTO subjects (subject_id, subject_key) \
                     SELECT id, k FROM input ON CONFLICT (subject_key) DO NOTHING \
                     RETURNING subject_key, subject_id) \
             SELECT subject_key, subject_id FROM ins \
             UNION ALL \
             SELECT s.subject_key, s.subject_id FROM subjects s JOIN input ON s.subject_key = input.k",
        )
        .bind(&pending)
        .bind(&new_ids)
        .fetch_all(pool)
        .await?;
        found.extend(rows);
        pending.retain(|k| !found.contains_key(k));
        if pending.is_empty() {
            break;
        }
    }
    Ok(found)
}

/// Like [`upsert_subjects`]; answers with the input spelling of each pair, matched to the
/// stored tag by `citext` equality (so `Env`/`env` both get the id of whichever was first).
async fn upsert_tags(
    pool: &PgPool,
    pairs: &[(String, String)],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    let mut found = Vec::with_capacity(pairs.len());
    let mut pending: Vec<(String, String)> = pairs.to_vec();
    for _ in 0..3 {
        let keys: Vec<&str> = pending.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&str> = pending.iter().map(|(_, v)| v.as_str()).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[]) AS i(k, v)), \
             ins AS (INSERT INTO tags (key, value) SELECT k, v FROM input \
                     ON CONFLICT (key, value) DO NOTHING RETURNING key, value, tag_id) \
             SELECT input.k, input.v, ins.tag_id FROM ins \
             JOIN input ON ins.key = input.k::citext AND ins.value = input.v::citext \
             UNION ALL \
             SELECT input.k, input.v, t.tag_id FROM tags t \
             JOIN input ON t.key = input.k::citext AND t.value = input.v::citext",
        )
        .bind(&keys)
        .bind(&values)
        .fetch_all(pool)
        .await?;
        let got: HashSet<(&str, &str)> = rows
            .iter()
            .map(|(k, v, _)| (k.as_str(), v.as_str()))
            .collect();
        let still: Vec<(String, String)> = pending
            .iter()
            .filter(|(k, v)| !got.contains(&(k.as_str(), v.as_str())))
            .cloned()
            .collect();
        found.extend(rows);
        pending = still;
        if pending.is_empty() {
            break;
        }
    }
    Ok(found)
}
