//! Entries read but not yet acknowledged, shared by the reader and the writer.
//!
//! The reader must not hand the writer an entry it already holds: after a reconnect or an
//! XAUTOCLAIM of our own entries, Redis would deliver it again, and the batch would be
//! processed twice, its delivery count climbing towards `max_deliveries`. The reader also
//! refreshes the idle time of these entries so no replica claims work that is merely slow
//! (a Postgres outage without spill).

use std::sync::{Arc, Mutex};

// Per-entry bookkeeping on the hot path: foldhash, not SipHash (ids come from our Redis).
use foldhash::{HashMap, HashSet};

use crate::protocol::{Entry, EntryRef};

#[derive(Clone, Default)]
pub struct InFlight {
    by_stream: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl InFlight {
    /// Keeps the entries not already in flight and marks them in flight.
    pub fn admit(&self, entries: Vec<Entry>) -> Vec<Entry> {
        let mut map = self.by_stream.lock().expect("in-flight set poisoned");
        entries
            .into_iter()
            .filter(|e| {
                map.entry(e.at.stream.clone())
                    .or_default()
                    .insert(e.at.id.clone())
            })
            .collect()
    }

    /// The writer is done with these entries (acknowledged, or left for redelivery).
    pub fn release<'a>(&self, refs: impl IntoIterator<Item = &'a EntryRef>) {
        let mut map = self.by_stream.lock().expect("in-flight set poisoned");
        for at in refs {
            if let Some(ids) = map.get_mut(&at.stream) {
                ids.remove(&at.id);
            }
        }
    }

    /// Ids in flight on `stream`.
    pub fn ids(&self, stream: &str) -> Vec<String> {
        let map = self.by_stream.lock().expect("in-flight set poisoned");
        map.get(stream)
            .map(|ids| ids.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        let map = self.by_stream.lock().expect("in-flight set poisoned");
        map.values().map(HashSet::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Entry {
        Entry {
            at: EntryRef {
                stream: "s".into(),
                id: id.into(),
            },
            fields: None,
            deliveries: 1,
        }
    }

    #[test]
    fn an_entry_is_admitted_once_until_released() {
        let inflight = InFlight::default();
        assert_eq!(inflight.admit(vec![entry("1-0"), entry("2-0")]).len(), 2);
        let again = inflight.admit(vec![entry("2-0"), entry("3-0")]);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].at.id, "3-0");
        inflight.release([&entry("2-0").at]);
        assert_eq!(inflight.admit(vec![entry("2-0")]).len(), 1);
        assert_eq!(inflight.len(), 3);
        let mut ids = inflight.ids("s");
        ids.sort();
        assert_eq!(ids, ["1-0", "2-0", "3-0"]);
    }
}
