//! Minimal Redis stream helpers for the registration flow: the bounds requests are read with
//! (the service reads them through the kernel's `StreamClient`) and parsing of plain stream
//! replies (the reference producer reads its replies with `XREAD`).

use redis::Value;

use crate::redis_io::EntryBounds;

/// One entry: id and fields in order.
pub type RawEntry = (String, Vec<(String, Vec<u8>)>);

/// Bytes (names plus values) a registration request may have: a request is a few short
/// fields plus `name` and `schema` of at most `max_name_len` each. A larger entry is read
/// only as a bounded summary and answered `invalid` / `too_large`.
pub fn max_request_bytes(max_name_len: usize) -> usize {
    16 * 1024 + 2 * max_name_len
}

/// How the registration stream is read: entries within [`max_request_bytes`], and 256 bytes
/// of each field of a larger one (enough for `public_key` and `nonce`, to address the reply).
pub fn request_bounds(max_name_len: usize) -> EntryBounds {
    EntryBounds {
        max_entry_bytes: max_request_bytes(max_name_len),
        prefix_bytes: 256,
    }
}

/// Entries of a plain XRANGE/XREAD on one stream (the reference producer reads its replies).
pub fn parse_entries(v: &Value) -> Vec<RawEntry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = text(pair.first()?)?;
            // A pending entry deleted from the stream comes back with a nil body.
            let fields = match pair.get(1)? {
                Value::Array(kv) => kv
                    .chunks(2)
                    .filter_map(|c| Some((text(c.first()?)?, bytes(c.get(1)?)?)))
                    .collect(),
                _ => Vec::new(),
            };
            Some((id, fields))
        })
        .collect()
}

/// XREAD/XREADGROUP reply for a single stream: `[[stream, entries]]`, or nil on timeout.
pub fn parse_read(v: &Value) -> Vec<RawEntry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(p) if p.len() == 2 => parse_entries(&p[1]),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(m) => m.iter().flat_map(|(_, e)| parse_entries(e)).collect(),
        _ => Vec::new(),
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    String::from_utf8(bytes(v)?).ok()
}
