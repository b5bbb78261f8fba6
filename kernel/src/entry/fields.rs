//! An entry's fields in order, held in two buffers (names, values) with their bounds, not a
//! `String` and a `Vec` per field: a W1 entry has five fields, and eleven allocations per
//! entry were a tenth of the kernel's instructions on the drain (docs/benchmark.md).

use std::fmt;

/// Fields in order; names are UTF-8 (an entry with a name that is not is read as a
/// [`super::Flaw`] instead), values any bytes. A name may repeat (the protocol refuses that
/// later, with a reason).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields {
    names: String,
    values: Vec<u8>,
    /// Where each field's name and value end in `names` and `values`; each starts where the
    /// one before it ended.
    ends: Vec<(usize, usize)>,
}

impl Fields {
    /// The fields `pairs`, in three allocations of their exact sizes.
    pub fn from_pairs(pairs: &[(&str, &[u8])]) -> Fields {
        let mut fields = Fields {
            names: String::with_capacity(pairs.iter().map(|(n, _)| n.len()).sum()),
            values: Vec::with_capacity(pairs.iter().map(|(_, v)| v.len()).sum()),
            ends: Vec::with_capacity(pairs.len()),
        };
        for (name, value) in pairs {
            fields.push(name, value);
        }
        fields
    }

    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.names.push_str(name);
        self.values.extend_from_slice(value);
        self.ends.push((self.names.len(), self.values.len()));
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The fields in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            fields: self,
            next: 0,
            name_start: 0,
            value_start: 0,
        }
    }

    /// The value of the first field called `name`. Called a dozen times per entry by the
    /// protocol: it compares name bytes as it goes and slices only the value it returns.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        let names = self.names.as_bytes();
        let (mut name_start, mut value_start) = (0, 0);
        for &(name_end, value_end) in &self.ends {
            if names.get(name_start..name_end) == Some(name.as_bytes()) {
                return self.values.get(value_start..value_end);
            }
            (name_start, value_start) = (name_end, value_end);
        }
        None
    }

    /// The first name that appeared before it, if any. A few fields (protocol v1 entries
    /// have fewer than ten) are compared pairwise, without allocating a set.
    pub fn repeated_name(&self) -> Option<&str> {
        const PAIRWISE: usize = 16;
        let start = |i: usize| if i == 0 { 0 } else { self.ends[i - 1].0 };
        let name = |i: usize| &self.names.as_bytes()[start(i)..self.ends[i].0];
        let repeat = if self.len() <= PAIRWISE {
            (1..self.len()).find(|&i| (0..i).any(|j| name(j) == name(i)))
        } else {
            let mut seen = foldhash::HashSet::default();
            (0..self.len()).find(|&i| !seen.insert(name(i)))
        };
        repeat.map(|i| &self.names[start(i)..self.ends[i].0])
    }

    /// Bytes of all names and values.
    pub fn bytes(&self) -> usize {
        self.names.len() + self.values.len()
    }

    /// Owned pairs, for what keeps fields apart (a dead letter's copy, a spill record).
    pub fn to_pairs(&self) -> Vec<(String, Vec<u8>)> {
        self.iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }
}

/// The fields of a [`Fields`] in order, each sliced from where the one before it ended.
pub struct Iter<'a> {
    fields: &'a Fields,
    next: usize,
    name_start: usize,
    value_start: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let &(name_end, value_end) = self.fields.ends.get(self.next)?;
        let name = &self.fields.names[self.name_start..name_end];
        let value = &self.fields.values[self.value_start..value_end];
        self.next += 1;
        (self.name_start, self.value_start) = (name_end, value_end);
        Some((name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.fields.ends.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Fields {
        let mut fields = Fields::default();
        for (name, value) in pairs {
            fields.push(name.as_ref(), value.as_ref());
        }
        fields
    }
}

/// Values as text (lossy); a `token` field's value is never printed.
impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| match n {
                "token" => (n, "<redacted>".into()),
                _ => (n, String::from_utf8_lossy(v)),
            }))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_repeated_field_is_named_however_many_fields() {
        for n in [2usize, 5, 14, 16, 40] {
            let mut fields: Fields = (0..n).map(|i| (format!("f{i}"), b"")).collect();
            assert_eq!(fields.repeated_name(), None, "{n} fields");
            fields.push(&format!("f{}", n - 1), b"");
            fields.push("f0", b"");
            assert_eq!(
                fields.repeated_name(),
                Some(format!("f{}", n - 1).as_str()),
                "{n} fields"
            );
        }
    }

    #[test]
    fn keeps_fields_in_order_with_repeats_and_empty_ones() {
        let pairs: Vec<(String, Vec<u8>)> = vec![
            ("type".into(), b"data".to_vec()),
            ("".into(), vec![]),
            ("bin".into(), vec![0, 255, 10]),
            ("type".into(), b"again".to_vec()),
            ("é".into(), b"x".to_vec()),
        ];
        let fields: Fields = pairs.iter().map(|(n, v)| (n, v)).collect();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields.to_pairs(), pairs);
        assert_eq!(fields.get("type"), Some(&b"data"[..]));
        assert_eq!(fields.get(""), Some(&b""[..]));
        assert_eq!(fields.get("missing"), None);
        assert_eq!(fields.bytes(), 4 + 4 + 3 + 3 + 4 + 5 + 2 + 1);
        assert_eq!(fields.repeated_name(), Some("type"));
        let with_token: Fields = [("type", "data"), ("token", "secret-jwt")]
            .into_iter()
            .collect();
        let printed = format!("{with_token:?}");
        assert!(
            printed.contains("data") && !printed.contains("secret-jwt"),
            "{printed}"
        );
        assert!(Fields::default().is_empty());
        assert_eq!(Fields::default().iter().count(), 0);
    }
}
