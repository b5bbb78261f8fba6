//! What this replica holds of the stream: the entries in flight (read, not yet released by
//! the writer) and the entries parked by auth (undecided during a Postgres outage). Shared by
//! the reader and the writer lanes; the one place that knows both.
//!
//! The reader must not hand the writer an entry it already holds: after a reconnect or an
//! XAUTOCLAIM of our own entries, Redis would deliver it again, and the batch would be
//! processed twice, its delivery count climbing towards `max_deliveries`. The reader also
//! refreshes the idle time of these entries so no replica claims work that is merely slow
//! (a Postgres outage without spill).
//!
//! It also counts their bytes: the reader sizes its reads so that the entries held stay within
//! `ingest.max_inflight_bytes`, so memory is bounded in bytes, not only in entries.
//!
//! Parked entries are kept apart: they are released from the in-flight set when their batch
//! ends, so they are neither counted against `ingest.max_inflight_bytes` nor refreshed, and
//! beyond [`PARKED_MAX`] they are left to the claim sweep. Each batch takes them back in front.

use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use tokio::sync::Notify;

// Per-entry bookkeeping on the hot path: foldhash, not SipHash (ids come from our Redis).
use foldhash::{HashMap, HashSet};

use crate::entry::{Entry, EntryRef};

/// Most undecided entries held in memory; beyond it they are left pending in Redis without a
/// copy here (the claim sweep redelivers them). Entries are at most `limits.max_entry_bytes`.
pub const PARKED_MAX: usize = 1024;

#[derive(Clone, Default)]
pub struct Holdings {
    inner: Arc<Mutex<Held>>,
    released: Arc<Notify>,
    /// `kernel_inflight_bytes`, kept equal to the bytes held (the pipeline's set only).
    gauge: Option<IntGauge>,
    /// Entries of never-seen producers that auth could not decide during a Postgres outage.
    /// Not acknowledged (still pending in Redis); taken back in front of every later batch.
    parked: Arc<Mutex<Vec<Entry>>>,
}

/// What [`Holdings::park`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parked {
    /// Entries parked that were not parked before.
    pub new: usize,
    /// Entries parked now, in all.
    pub held: usize,
    /// Entries left pending in Redis without a copy here (no room).
    pub dropped: usize,
}

#[derive(Default)]
struct Held {
    /// stream -> entry id -> the entry's size in bytes.
    by_stream: HashMap<Arc<str>, HashMap<Arc<str>, usize>>,
    bytes: usize,
}

impl Holdings {
    /// The pipeline's set, reporting its bytes on `gauge`.
    pub fn with_gauge(gauge: IntGauge) -> Holdings {
        Holdings {
            gauge: Some(gauge),
            ..Holdings::default()
        }
    }

    /// Keeps the entries not already in flight and marks them in flight.
    pub fn admit(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut held = self.inner.lock().expect("in-flight set poisoned");
        let held = &mut *held;
        let kept = entries
            .into_iter()
            .filter(|e| {
                let ids = held.by_stream.entry(e.at.stream.clone()).or_default();
                if ids.contains_key(&e.at.id) {
                    return false;
                }
                let size = e.size();
                ids.insert(e.at.id.clone(), size);
                held.bytes += size;
                true
            })
            .collect();
        self.report(held.bytes);
        kept
    }

    fn report(&self, bytes: usize) {
        if let Some(gauge) = &self.gauge {
            gauge.set(bytes as i64);
        }
    }

    /// The writer is done with these entries (acknowledged, or left for redelivery).
    pub fn release<'a>(&self, refs: impl IntoIterator<Item = &'a EntryRef>) {
        {
            let mut held = self.inner.lock().expect("in-flight set poisoned");
            let held = &mut *held;
            for at in refs {
                if let Some(size) = held
                    .by_stream
                    .get_mut(&*at.stream)
                    .and_then(|ids| ids.remove(&*at.id))
                {
                    held.bytes -= size;
                }
            }
            self.report(held.bytes);
        }
        self.released.notify_waiters();
    }

    /// Ids in flight on `stream`.
    pub fn ids(&self, stream: &str) -> Vec<String> {
        let held = self.inner.lock().expect("in-flight set poisoned");
        held.by_stream
            .get(stream)
            .map(|ids| ids.keys().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        let held = self.inner.lock().expect("in-flight set poisoned");
        held.by_stream.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the entries in flight (field names and values, as the entry-size limit counts).
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("in-flight set poisoned").bytes
    }

    /// Takes the parked entries (a batch puts them in front of its own).
    pub fn take_parked(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.parked.lock().expect("parked lock"))
    }

    /// Parks undecided entries, up to [`PARKED_MAX`] in all. `was_parked`: the entries taken
    /// by [`Holdings::take_parked`] for this batch, which are not new.
    pub fn park(&self, entries: Vec<Entry>, was_parked: &HashSet<EntryRef>) -> Parked {
        let new = entries
            .iter()
            .filter(|e| !was_parked.contains(&e.at))
            .count();
        let mut parked = self.parked.lock().expect("parked lock");
        let total = entries.len();
        let room = PARKED_MAX.saturating_sub(parked.len());
        parked.extend(entries.into_iter().take(room));
        let done = Parked {
            new,
            held: parked.len(),
            dropped: total.saturating_sub(room),
        };
        if done.new > 0 {
            tracing::warn!(
                entries = done.new,
                parked = done.held,
                "Postgres unavailable and producer never seen: entries left pending until it answers"
            );
        }
        if done.dropped > 0 {
            tracing::warn!(
                entries = done.dropped,
                "too many undecided entries to hold; left pending in Redis for the claim sweep"
            );
        }
        done
    }

    /// Entries parked right now.
    pub fn parked(&self) -> usize {
        self.parked.lock().expect("parked lock").len()
    }

    /// Waits until the entries in flight are at most `limit` bytes (the writer releases them).
    pub async fn wait_for_room(&self, limit: usize) {
        loop {
            // Registered before the check, so a release between the check and the wait is
            // not missed.
            let released = self.released.notified();
            if self.bytes() <= limit {
                return;
            }
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(id: &str, value_bytes: usize) -> Entry {
        Entry {
            at: EntryRef {
                stream: "events".into(),
                id: id.into(),
            },
            fields: Some([("data", vec![b'x'; value_bytes])].into_iter().collect()),
            deliveries: 1,
            flaw: None,
        }
    }

    #[test]
    fn counts_bytes_of_admitted_entries_once() {
        let holdings = Holdings::default();
        let kept = holdings.admit(vec![entry("1-0", 96), entry("2-0", 196)]);
        assert_eq!(kept.len(), 2);
        // "data" (4 bytes) + the value.
        assert_eq!(holdings.bytes(), 100 + 200);
        // Delivered again while held: not admitted, not counted twice.
        assert!(holdings.admit(vec![entry("1-0", 96)]).is_empty());
        assert_eq!(holdings.bytes(), 300);
        holdings.release(&[kept[0].at.clone()]);
        assert_eq!(holdings.bytes(), 200);
        assert_eq!(holdings.ids("events"), vec!["2-0".to_string()]);
        // Releasing an entry not held changes nothing.
        holdings.release(&[kept[0].at.clone()]);
        assert_eq!(holdings.bytes(), 200);
    }

    #[test]
    fn parked_entries_are_bounded_and_not_counted_in_flight() {
        let holdings = Holdings::default();
        let first: Vec<Entry> = (0..PARKED_MAX - 1)
            .map(|i| entry(&format!("{i}-0"), 10))
            .collect();
        let done = holdings.park(first, &HashSet::default());
        assert_eq!(
            done,
            Parked {
                new: PARKED_MAX - 1,
                held: PARKED_MAX - 1,
                dropped: 0
            }
        );
        assert_eq!(holdings.bytes(), 0);
        assert!(holdings.ids("events").is_empty());

        // Taken back for a batch: the same entries parked again are not new.
        let again = holdings.take_parked();
        assert_eq!(holdings.parked(), 0);
        let was: HashSet<EntryRef> = again.iter().map(|e| e.at.clone()).collect();
        let mut more = again;
        more.push(entry("a-0", 10));
        more.push(entry("b-0", 10));
        let done = holdings.park(more, &was);
        assert_eq!(
            done,
            Parked {
                new: 2,
                held: PARKED_MAX,
                dropped: 1
            }
        );
        assert_eq!(holdings.parked(), PARKED_MAX);
    }

    #[tokio::test]
    async fn waits_for_room_until_the_writer_releases() {
        let holdings = Holdings::default();
        let kept = holdings.admit(vec![entry("1-0", 996), entry("2-0", 996)]);
        holdings.wait_for_room(2000).await; // 2000 held: at the limit is fine

        let waiter = {
            let holdings = holdings.clone();
            tokio::spawn(async move { holdings.wait_for_room(1500).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "2000 bytes held, limit 1500");
        holdings.release(&[kept[0].at.clone()]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released below the limit")
            .unwrap();
        assert_eq!(holdings.bytes(), 1000);
    }
}
