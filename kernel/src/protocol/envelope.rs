//! What the kernel reads of a stream entry before it validates it: its `type` and its `token`.
//!
//! Auth decides on these two fields alone, before [`parse`](super::parse) validates the rest
//! (docs/auth.md, "On the ingest path"): so an unauthenticated entry costs no parsing, and the
//! auth gate reads no fields itself. Pure: no I/O, no allocation.

use crate::entry::Entry;

/// An entry with its `type` and `token` fields, as the producer sent them. No `Debug`: the
/// token is a secret.
#[derive(Clone, Copy)]
pub struct Envelope<'e> {
    pub entry: &'e Entry,
    /// The `type` field; `None` when it is missing or the entry has no fields (trimmed while
    /// pending, or read only as a summary).
    pub kind: Option<&'e [u8]>,
    /// The `token` field, if any.
    pub token: Option<&'e [u8]>,
}

/// Reads the envelope of `entry`.
pub fn envelope(entry: &Entry) -> Envelope<'_> {
    Envelope {
        entry,
        kind: entry.field("type"),
        token: entry.field("token"),
    }
}

impl<'e> Envelope<'e> {
    /// `data` and `heartbeat` entries speak for a producer, so with auth on they need a valid
    /// token. Other types (`control`, and those `parse` refuses) pass auth untouched.
    pub fn needs_token(&self) -> bool {
        matches!(self.kind, Some(b"data") | Some(b"heartbeat"))
    }

    /// The token as text for the verifier. A non-UTF-8 token cannot be a JWT: it becomes
    /// `"\0"`, which the verifier calls malformed.
    pub fn token_text(&self) -> Option<&'e str> {
        self.token
            .map(|t| std::str::from_utf8(t).unwrap_or("\u{0}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryRef;

    fn entry(fields: Option<Vec<(&str, &[u8])>>) -> Entry {
        let at = EntryRef {
            stream: "s".into(),
            id: "1-0".into(),
        };
        let fields = fields.map(|f| {
            f.into_iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect()
        });
        Entry::new(at, fields)
    }

    #[test]
    fn data_and_heartbeat_need_a_token_other_types_and_trimmed_entries_do_not() {
        for (kind, needs) in [
            (&b"data"[..], true),
            (b"heartbeat", true),
            (b"control", false),
            (b"ack", false),
            (b"DATA", false),
        ] {
            let e = entry(Some(vec![("type", kind)]));
            assert_eq!(envelope(&e).needs_token(), needs, "{kind:?}");
        }
        let trimmed = entry(None);
        assert!(envelope(&trimmed).kind.is_none());
        assert!(!envelope(&trimmed).needs_token());
        let untyped = entry(Some(vec![("token", b"t")]));
        assert!(!envelope(&untyped).needs_token());
    }

    #[test]
    fn token_is_read_as_sent_and_non_utf8_becomes_a_malformed_text() {
        let e = entry(Some(vec![("type", b"data"), ("token", b"abc.def.ghi")]));
        let env = envelope(&e);
        assert_eq!(env.kind, Some(&b"data"[..]));
        assert_eq!(env.token, Some(&b"abc.def.ghi"[..]));
        assert_eq!(env.token_text(), Some("abc.def.ghi"));

        let bad = entry(Some(vec![("type", b"data"), ("token", &[0xff, 0xfe])]));
        assert_eq!(envelope(&bad).token_text(), Some("\u{0}"));

        let none = entry(Some(vec![("type", b"data")]));
        assert_eq!(envelope(&none).token, None);
        assert_eq!(envelope(&none).token_text(), None);
    }
}
