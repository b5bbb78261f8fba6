//! A map whose entries are fresh for a TTL and then stale, and that drops stale entries on a
//! sweep, so that it holds only what was looked up lately (one entry per producer ever seen
//! would otherwise grow without bound).
//!
//! A stale entry is still returned by `get` (the caller decides whether the last known value
//! beats none, e.g. while Postgres is unavailable); only `sweep_after_lookup`, which callers
//! run after a lookup that answered, removes entries, at most once per TTL.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: HashMap<K, (Instant, V)>,
    last_sweep: Option<Instant>,
}

impl<K: Eq + Hash + Clone, V> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            entries: HashMap::new(),
            last_sweep: None,
        }
    }

    /// The keys among `keys` without an entry or with one older than the TTL at `now`.
    pub fn stale<'a>(&self, keys: impl IntoIterator<Item = &'a K>, now: Instant) -> Vec<K>
    where
        K: 'a,
    {
        keys.into_iter()
            .filter(|k| {
                self.entries
                    .get(*k)
                    .is_none_or(|(at, _)| now >= *at + self.ttl)
            })
            .cloned()
            .collect()
    }

    /// The entry's value, fresh or stale.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    pub fn insert(&mut self, key: K, value: V, at: Instant) {
        self.entries.insert(key, (at, value));
    }

    /// Drops every entry older than the TTL at `now`, unless the last sweep was less than a
    /// TTL ago. Entries given `at >= now - ttl` stay.
    pub fn sweep_after_lookup(&mut self, now: Instant) {
        if self.last_sweep.is_some_and(|last| now < last + self.ttl) {
            return;
        }
        self.last_sweep = Some(now);
        let ttl = self.ttl;
        self.entries.retain(|_, (at, _)| now < *at + ttl);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    #[test]
    fn stale_keys_are_the_missing_and_the_expired() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(TTL);
        c.insert(1, "a", t0);
        c.insert(2, "b", t0 + Duration::from_secs(3));
        assert_eq!(c.stale(&[1, 2, 3], t0 + Duration::from_secs(4)), vec![3]);
        let mut stale = c.stale(&[1, 2, 3], t0 + TTL);
        stale.sort();
        assert_eq!(stale, vec![1, 3]);
        // Stale entries are still readable until a sweep.
        assert_eq!(c.get(&1), Some(&"a"));
    }

    #[test]
    fn a_sweep_drops_entries_older_than_the_ttl_and_keeps_the_rest() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(TTL);
        for id in 0..1000u32 {
            c.insert(id, id, t0);
        }
        c.insert(5000, 5000, t0 + Duration::from_secs(4));
        let now = t0 + TTL;
        c.sweep_after_lookup(now);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&0), None);
        assert_eq!(c.get(&5000), Some(&5000));
    }

    #[test]
    fn sweeps_run_at_most_once_per_ttl() {
        let t0 = Instant::now();
        let mut c = TtlCache::new(TTL);
        c.insert(1, (), t0);
        c.sweep_after_lookup(t0 + Duration::from_secs(1));
        assert_eq!(c.len(), 1, "entry 1 is fresh at the first sweep");
        // Entry 1 is stale at t0+5s, but the last sweep was 4 s before: no sweep yet.
        c.sweep_after_lookup(t0 + Duration::from_secs(5));
        assert_eq!(c.len(), 1);
        c.sweep_after_lookup(t0 + Duration::from_secs(6));
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_cache_of_many_producers_stays_at_those_seen_within_the_ttl() {
        // One new producer a second for an hour, a sweep after each lookup: the cache holds at
        // most the producers seen since the sweep before last (here 9 with a 5 s TTL), never
        // the 3600 seen in all.
        let t0 = Instant::now();
        let mut c = TtlCache::new(TTL);
        let mut largest = 0;
        for s in 0..3600u64 {
            let now = t0 + Duration::from_secs(s);
            c.insert(s, (), now);
            c.sweep_after_lookup(now);
            largest = largest.max(c.len());
        }
        assert_eq!(largest, 9);
    }
}
