//! An event's tags in one buffer: keys and values one after another in a `String`, with where
//! each ends. A W1 event has three tags; a `String` per key and per value were six allocations
//! of the eighteen left per event on the drain (docs/benchmark.md).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Tag (key, value) pairs in order. `parse` gives them sorted by key with keys unique.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Tags {
    text: String,
    /// Where each tag's key and value end in `text`; each key starts where the value before
    /// it ended.
    ends: Vec<(usize, usize)>,
}

impl Tags {
    /// The tags `pairs`, in two allocations of their exact sizes.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Tags {
        let bytes = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut tags = Tags {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(pairs.len()),
        };
        for (key, value) in pairs {
            tags.push(key.as_ref(), value.as_ref());
        }
        tags
    }

    pub fn push(&mut self, key: &str, value: &str) {
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((key_end, self.text.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The tags in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            tags: self,
            next: 0,
            start: 0,
        }
    }

    /// Owned pairs, for what keeps tags apart (a spill record).
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// The tags of a [`Tags`] in order.
pub struct Iter<'a> {
    tags: &'a Tags,
    next: usize,
    start: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let &(key_end, value_end) = self.tags.ends.get(self.next)?;
        let key = &self.tags.text[self.start..key_end];
        let value = &self.tags.text[key_end..value_end];
        self.next += 1;
        self.start = value_end;
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.tags.ends.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Tags {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Tags {
        let mut tags = Tags::default();
        for (key, value) in pairs {
            tags.push(key.as_ref(), value.as_ref());
        }
        tags
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// As a list of `[key, value]` pairs, what a `Vec<(String, String)>` was.
impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Tags, D::Error> {
        Ok(Vec::<(String, String)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pairs_in_order_and_round_trips_as_a_list_of_pairs() {
        let pairs = [("app", "x"), ("", ""), ("é", "ü"), ("app", "again")];
        let tags = Tags::from_pairs(&pairs);
        assert_eq!(tags.len(), 4);
        assert_eq!(tags.iter().collect::<Vec<_>>(), pairs);
        assert_eq!(tags, pairs.into_iter().collect::<Tags>());
        let json = serde_json::to_string(&tags).unwrap();
        assert_eq!(json, r#"[["app","x"],["",""],["é","ü"],["app","again"]]"#);
        assert_eq!(serde_json::from_str::<Tags>(&json).unwrap(), tags);
        assert_eq!(format!("{tags:?}"), format!("{:?}", pairs));
        assert!(Tags::default().is_empty());
        assert_eq!(Tags::default().iter().count(), 0);
    }
}
