//! Entries read but not yet acknowledged, shared by the reader and the writer.
//!
//! The reader must not hand the writer an entry it already holds: after a reconnect or an
//! XAUTOCLAIM of our own entries, Redis would deliver it again, and the batch would be
//! processed twice, its delivery count climbing towards `max_deliveries`. The reader also
//! refreshes the idle time of these entries so no replica claims work that is merely slow
//! (a Postgres outage without spill).
//!
//! It also counts their bytes: the reader sizes its reads so that the entries held stay within
//! `ingest.max_inflight_bytes`, so memory is bounded in bytes, not only in entries.

use std::sync::{Arc, Mutex};

use prometheus::IntGauge;
use tokio::sync::Notify;

// Per-entry bookkeeping on the hot path: foldhash, not SipHash (ids come from our Redis).
use foldhash::HashMap;

use crate::entry::{Entry, EntryRef};

#[derive(Clone, Default)]
pub struct InFlight {
    inner: Arc<Mutex<Held>>,
    released: Arc<Notify>,
    /// `kernel_inflight_bytes`, kept equal to the bytes held (the pipeline's set only).
    gauge: Option<IntGauge>,
}

#[derive(Default)]
struct Held {
    /// stream -> entry id -> the entry's size in bytes.
    by_stream: HashMap<String, HashMap<String, usize>>,
    bytes: usize,
}

impl InFlight {
    /// The pipeline's set, reporting its bytes on `gauge`.
    pub fn with_gauge(gauge: IntGauge) -> InFlight {
        InFlight {
            gauge: Some(gauge),
            ..InFlight::default()
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
                    .get_mut(&at.stream)
                    .and_then(|ids| ids.remove(&at.id))
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
            .map(|ids| ids.keys().cloned().collect())
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
            fields: Some(vec![("data".into(), vec![b'x'; value_bytes])]),
            deliveries: 1,
            flaw: None,
        }
    }

    #[test]
    fn counts_bytes_of_admitted_entries_once() {
        let inflight = InFlight::default();
        let kept = inflight.admit(vec![entry("1-0", 96), entry("2-0", 196)]);
        assert_eq!(kept.len(), 2);
        // "data" (4 bytes) + the value.
        assert_eq!(inflight.bytes(), 100 + 200);
        // Delivered again while held: not admitted, not counted twice.
        assert!(inflight.admit(vec![entry("1-0", 96)]).is_empty());
        assert_eq!(inflight.bytes(), 300);
        inflight.release(&[kept[0].at.clone()]);
        assert_eq!(inflight.bytes(), 200);
        assert_eq!(inflight.ids("events"), vec!["2-0".to_string()]);
        // Releasing an entry not held changes nothing.
        inflight.release(&[kept[0].at.clone()]);
        assert_eq!(inflight.bytes(), 200);
    }

    #[tokio::test]
    async fn waits_for_room_until_the_writer_releases() {
        let inflight = InFlight::default();
        let kept = inflight.admit(vec![entry("1-0", 996), entry("2-0", 996)]);
        inflight.wait_for_room(2000).await; // 2000 held: at the limit is fine

        let waiter = {
            let inflight = inflight.clone();
            tokio::spawn(async move { inflight.wait_for_room(1500).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "2000 bytes held, limit 1500");
        inflight.release(&[kept[0].at.clone()]);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("released below the limit")
            .unwrap();
        assert_eq!(inflight.bytes(), 1000);
    }
}
