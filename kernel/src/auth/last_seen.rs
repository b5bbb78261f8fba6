//! `producers.last_seen_at`, best effort and off the ingest path.
//!
//! The gate notes when each producer was seen (in memory); a background task writes the notes
//! to Postgres every [`FLUSH_EVERY`]. A failed write (Postgres down) keeps the notes for the
//! next try, so an outage never blocks or slows ingest and `last_seen_at` catches up once
//! Postgres is back, with the time the producer was actually seen.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::producers_db;

/// How often notes are written: `last_seen_at` lags by at most about this much.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Producers seen since the last successful write, with the latest time each was seen.
pub struct LastSeen {
    notes: Mutex<HashMap<Uuid, DateTime<Utc>>>,
    /// Bound on the notes kept across failed writes (one per producer, so this is only
    /// reached with more live producers than `auth.cache_max_entries`).
    max: usize,
}

impl LastSeen {
    pub fn new(max: usize) -> LastSeen {
        LastSeen {
            notes: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// Record that `ids` were seen at `at`. Never touches Postgres.
    pub fn note(&self, ids: impl IntoIterator<Item = Uuid>, at: DateTime<Utc>) {
        let mut notes = self.notes.lock().expect("last-seen lock");
        for id in ids {
            if notes.len() >= self.max && !notes.contains_key(&id) {
                // Best effort: a producer beyond the bound gets its time on a later batch.
                continue;
            }
            let t = notes.entry(id).or_insert(at);
            *t = (*t).max(at);
        }
    }

    /// Number of producers waiting to be written.
    pub fn len(&self) -> usize {
        self.notes.lock().expect("last-seen lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Write the notes; on failure they are kept (merged with newer ones) for the next call.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let batch: Vec<(Uuid, DateTime<Utc>)> = {
            let mut notes = self.notes.lock().expect("last-seen lock");
            notes.drain().collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match producers_db::touch(pool, &batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                for (id, at) in batch {
                    self.note([id], at);
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_time_and_stays_bounded() {
        let seen = LastSeen::new(2);
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(1);
        seen.note([a], t1);
        seen.note([a, b], t0);
        seen.note([c], t1);
        let notes = seen.notes.lock().unwrap().clone();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[&a], t1);
        assert_eq!(notes[&b], t0);
        assert!(!notes.contains_key(&c));
    }
}
