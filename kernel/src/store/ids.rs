//! Subject and tag ids: upserted once, then served from a cache.
//!
//! Ids are resolved in their own short statements, outside the batch transaction, so that a
//! cached id always refers to a committed row (a rolled-back batch cannot leave a phantom id
//! in the cache). An unused subject or tag row is harmless.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::PgPool;
use uuid::Uuid;

use super::StoreError;

/// Past this many entries a cache is cleared rather than grown: memory stays bounded with
/// high-cardinality subjects, at the cost of some re-resolution.
const MAX_CACHED: usize = 500_000;

/// Tag identity follows Postgres `citext`: case-insensitive.
type TagKey = (String, String);

fn tag_key(key: &str, value: &str) -> TagKey {
    (key.to_lowercase(), value.to_lowercase())
}

#[derive(Clone, Default)]
pub struct IdCache {
    subjects: Arc<Mutex<HashMap<String, Uuid>>>,
    tags: Arc<Mutex<HashMap<TagKey, i64>>>,
}

impl IdCache {
    /// Ids for each of `keys` (same order), inserting unknown subjects.
    pub async fn subject_ids(&self, pool: &PgPool, keys: &[&str]) -> Result<Vec<Uuid>, StoreError> {
        let missing: Vec<String> = {
            let cache = self.subjects.lock().expect("subject cache poisoned");
            let mut seen = HashSet::new();
            keys.iter()
                .filter(|k| !cache.contains_key(**k) && seen.insert(**k))
                .map(|k| k.to_string())
                .collect()
        };
        if !missing.is_empty() {
            let found = upsert_subjects(pool, &missing).await?;
            let mut cache = self.subjects.lock().expect("subject cache poisoned");
            if cache.len() + found.len() > MAX_CACHED {
                cache.clear();
            }
            cache.extend(found);
        }
        let cache = self.subjects.lock().expect("subject cache poisoned");
        keys.iter()
            .map(|k| {
                cache.get(*k).copied().ok_or_else(|| {
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
        let missing: Vec<(String, String)> = {
            let cache = self.tags.lock().expect("tag cache poisoned");
            let mut seen = HashSet::new();
            pairs
                .iter()
                .filter(|(k, v)| {
                    let key = tag_key(k, v);
                    !cache.contains_key(&key) && seen.insert(key)
                })
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        if !missing.is_empty() {
            let found = upsert_tags(pool, &missing).await?;
            let mut cache = self.tags.lock().expect("tag cache poisoned");
            if cache.len() + found.len() > MAX_CACHED {
                cache.clear();
            }
            cache.extend(found);
        }
        let cache = self.tags.lock().expect("tag cache poisoned");
        pairs
            .iter()
            .map(|(k, v)| {
                cache.get(&tag_key(k, v)).copied().ok_or_else(|| {
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
) -> Result<Vec<(String, Uuid)>, StoreError> {
    let mut found = Vec::with_capacity(keys.len());
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
        let got: HashSet<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        pending.retain(|k| !got.contains(k.as_str()));
        found.extend(rows);
        if pending.is_empty() {
            break;
        }
    }
    Ok(found)
}

async fn upsert_tags(
    pool: &PgPool,
    pairs: &[(String, String)],
) -> Result<Vec<(TagKey, i64)>, StoreError> {
    let mut found = Vec::with_capacity(pairs.len());
    let mut pending: Vec<(String, String)> = pairs.to_vec();
    for _ in 0..3 {
        let keys: Vec<&str> = pending.iter().map(|(k, _)| k.as_str()).collect();
        let values: Vec<&str> = pending.iter().map(|(_, v)| v.as_str()).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[]) AS i(k, v)), \
             ins AS (INSERT INTO tags (key, value) SELECT k, v FROM input \
                     ON CONFLICT (key, value) DO NOTHING RETURNING key::text, value::text, tag_id) \
             SELECT key, value, tag_id FROM ins \
             UNION ALL \
             SELECT t.key::text, t.value::text, t.tag_id FROM tags t \
             JOIN input ON t.key = input.k::citext AND t.value = input.v::citext",
        )
        .bind(&keys)
        .bind(&values)
        .fetch_all(pool)
        .await?;
        let got: HashSet<TagKey> = rows.iter().map(|(k, v, _)| tag_key(k, v)).collect();
        pending.retain(|(k, v)| !got.contains(&tag_key(k, v)));
        found.extend(rows.into_iter().map(|(k, v, id)| (tag_key(&k, &v), id)));
        if pending.is_empty() {
            break;
        }
    }
    Ok(found)
}
