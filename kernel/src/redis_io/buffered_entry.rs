//! The common case of an entry reply in one pass: an entry already whole in the read buffer,
//! within its bounds, with UTF-8 field names.
//!
//! [`entry_reply`](super::entry_reply) walks a reply value by value, each step able to wait
//! for more bytes and to cut an oversized entry down to a summary. Nearly every entry of a
//! read is small and already buffered; this decodes such an entry straight from the buffer.
//! It accepts only the plain shape (`*2`, the id as a bulk string, an even `*n` of bulk
//! strings) and answers `None` for anything else (an incomplete entry, RESP3 or nil shapes,
//! more than `max_entry_bytes` or [`MAX_FIELDS`], a name that is not UTF-8, a missing CRLF),
//! which the step-by-step reader then reads from the same place as before.

use std::sync::Arc;

use super::entry_reply::{EntryBounds, MAX_FIELDS, MAX_NAME};
use crate::entry::{Entry, EntryRef, Fields};

/// The entry at the start of `buf` and the bytes it took, when it is whole and plain.
pub fn whole_entry(buf: &[u8], stream: &Arc<str>, bounds: &EntryBounds) -> Option<(Entry, usize)> {
    let mut cursor = Cursor { buf, at: 0 };
    if cursor.header(b'*')? != 2 {
        return None;
    }
    let id_len = cursor.header(b'$')?;
    if id_len > MAX_NAME {
        return None;
    }
    let id = std::str::from_utf8(cursor.bytes(id_len)?).ok()?;
    let values = cursor.header(b'*')?;
    if values % 2 == 1 || values / 2 > MAX_FIELDS {
        return None;
    }
    // Where the fields lie in `buf` first, then one copy of them all at their exact size.
    let mut spans = Vec::with_capacity(values / 2);
    let mut total = 0usize;
    for _ in 0..values / 2 {
        let name = cursor.bulk(&mut total, bounds)?;
        let name = std::str::from_utf8(name).ok()?;
        let value = cursor.bulk(&mut total, bounds)?;
        spans.push((name, value));
    }
    let fields = Fields::from_pairs(&spans);
    let at = EntryRef {
        stream: stream.clone(),
        id: id.into(),
    };
    Some((Entry::new(at, Some(fields)), cursor.at))
}

struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    /// A `kind` header line with a length (`*n`, `$n`: digits only, so not `-1`) ending in
    /// CRLF, read in one pass.
    fn header(&mut self, kind: u8) -> Option<usize> {
        let (&first, rest) = self.buf.get(self.at..)?.split_first()?;
        if first != kind {
            return None;
        }
        let mut len = 0usize;
        // At most 19 digits (no overflow), then CR LF.
        for (i, &b) in rest.iter().enumerate().take(20) {
            match b {
                b'0'..=b'9' if i < 19 => len = len * 10 + usize::from(b - b'0'),
                b'\r' if i > 0 && rest.get(i + 1) == Some(&b'\n') => {
                    self.at += i + 3;
                    return Some(len);
                }
                _ => return None,
            }
        }
        None
    }

    /// `len` bytes followed by CRLF.
    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let bytes = self.buf.get(self.at..end)?;
        if self.buf.get(end..end + 2)? != b"\r\n" {
            return None;
        }
        self.at = end + 2;
        Some(bytes)
    }

    /// A bulk string counted into the entry's `total`, while that stays within the bound.
    fn bulk(&mut self, total: &mut usize, bounds: &EntryBounds) -> Option<&'a [u8]> {
        let len = self.header(b'$')?;
        *total = total.checked_add(len)?;
        if *total > bounds.max_entry_bytes {
            return None;
        }
        self.bytes(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(line: &[u8]) -> Option<(usize, usize)> {
        let mut cursor = Cursor { buf: line, at: 0 };
        cursor.header(b'$').map(|len| (len, cursor.at))
    }

    #[test]
    fn headers_are_plain_lengths_only() {
        assert_eq!(header(b"$0\r\n"), Some((0, 4)));
        assert_eq!(header(b"$42\r\nrest"), Some((42, 5)));
        let most = b"$9999999999999999999\r\n";
        assert_eq!(header(most), Some((9_999_999_999_999_999_999, most.len())));
        for line in [
            &b"$99999999999999999999\r\n"[..],
            b"$\r\n",
            b"$-1\r\n",
            b"$+1\r\n",
            b"$5\r",
            b"$5",
            b"$5\n",
            b"$5 \r\n",
            b"*5\r\n",
            b"",
        ] {
            assert_eq!(header(line), None, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn an_entry_cut_anywhere_is_left_to_the_step_by_step_reader() {
        let entry = b"*2\r\n$3\r\n1-0\r\n*2\r\n$4\r\ntype\r\n$4\r\ndata\r\n";
        let stream: Arc<str> = "s".into();
        let bounds = EntryBounds {
            max_entry_bytes: 100,
            prefix_bytes: 8,
        };
        let (whole, used) = whole_entry(entry, &stream, &bounds).unwrap();
        assert_eq!(used, entry.len());
        assert_eq!(whole.field("type"), Some(&b"data"[..]));
        for cut in 0..entry.len() {
            assert!(
                whole_entry(&entry[..cut], &stream, &bounds).is_none(),
                "{cut}"
            );
        }
        // Over the bound: a summary, which only the step-by-step reader makes.
        let tight = EntryBounds {
            max_entry_bytes: 7,
            prefix_bytes: 8,
        };
        assert!(whole_entry(entry, &stream, &tight).is_none());
    }
}
