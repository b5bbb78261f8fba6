//! Stream entries decoded straight off the socket, each within a byte bound whatever it holds.
//!
//! An entry of at most `max_entry_bytes` (names and values) with UTF-8 field names becomes a
//! plain [`Entry`]. Anything else is read as a bounded [`Flaw`] summary, never failing the
//! reply it came in: a field name that is not UTF-8 or an odd field list (`bad_encoding`), or
//! more bytes than `max_entry_bytes` (`too_large`; from the point the entry goes over, its
//! fields are streamed through SHA-256 and only their prefixes kept).

use tokio::io::AsyncBufRead;

use super::resp::{Header, RespError, RespReader};
use crate::entry::{Clipped, Entry, EntryRef, Fields as EntryFields, Flaw, FlawReason, FlawWhy};

/// Longest stream name, entry id or cursor accepted in a reply.
pub const MAX_NAME: usize = 64 * 1024;
/// What one clipped field costs a summary beyond its kept bytes (lengths, vector headers).
const FIELD_OVERHEAD: usize = 96;
/// Most fields (name/value pairs) of an entry held whole: each field costs memory beyond its
/// bytes, so an entry of many tiny fields is `too_large` too. Protocol v1 entries have fewer
/// than ten.
pub const MAX_FIELDS: usize = 256;
/// Most entries reserved for at once from a reply's announced length.
const MAX_RESERVE: usize = 4096;

/// How much of an entry the kernel holds.
#[derive(Debug, Clone, Copy)]
pub struct EntryBounds {
    /// Entries over this (names plus values) are held only as summaries: `limits.max_entry_bytes`.
    pub max_entry_bytes: usize,
    /// Bytes kept of each name and value in a summary: `ingest.dlq_field_bytes`.
    pub prefix_bytes: usize,
}

impl EntryBounds {
    /// Most bytes one summary holds (its fields' kept bytes plus [`FIELD_OVERHEAD`] each):
    /// fields beyond it are only counted. Room for at least four fields; config validation
    /// keeps `4 × dlq_field_bytes` within `max_entry_bytes`, so this is about
    /// `max_entry_bytes`.
    fn summary_budget(&self) -> usize {
        self.max_entry_bytes
            .max(4 * (self.prefix_bytes + FIELD_OVERHEAD))
    }
}

/// An XREADGROUP reply: nil (timeout), `[[stream, entries], …]` (RESP2) or a map (RESP3).
pub async fn read_reply<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    bounds: &EntryBounds,
) -> Result<Vec<Entry>, RespError> {
    let mut out = Vec::new();
    match r.header().await? {
        Header::Nil => {}
        Header::Map(n) => {
            for _ in 0..n {
                let stream = text(r.short(MAX_NAME, "a stream name").await?)?;
                entries(r, &stream, bounds, &mut out).await?;
            }
        }
        Header::Array(n) => {
            for _ in 0..n {
                expect_array(r, 2, "[stream, entries]").await?;
                let stream = text(r.short(MAX_NAME, "a stream name").await?)?;
                entries(r, &stream, bounds, &mut out).await?;
            }
        }
        other => return Err(unexpected(other, "an XREADGROUP reply")),
    }
    Ok(out)
}

/// An XAUTOCLAIM reply: `[next cursor, entries, deleted ids]` (the last one from Redis 7).
pub async fn autoclaim_reply<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    stream: &str,
    bounds: &EntryBounds,
) -> Result<(String, Vec<Entry>, Vec<String>), RespError> {
    let parts = match r.header().await? {
        Header::Array(n) if n >= 2 => n,
        other => return Err(unexpected(other, "an XAUTOCLAIM reply")),
    };
    let next = text(r.short(MAX_NAME, "a cursor").await?)?;
    let mut claimed = Vec::new();
    entries(r, stream, bounds, &mut claimed).await?;
    let mut deleted = Vec::new();
    for i in 2..parts {
        match r.header().await? {
            Header::Array(m) if i == 2 => {
                for _ in 0..m {
                    deleted.push(text(r.short(MAX_NAME, "an entry id").await?)?);
                }
            }
            other => r.skip_rest(&other).await?,
        }
    }
    Ok((next, claimed, deleted))
}

/// The entries of one stream: `[[id, fields | nil], …]` (XCLAIM replies have this shape too).
pub async fn entries<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    stream: &str,
    bounds: &EntryBounds,
    out: &mut Vec<Entry>,
) -> Result<(), RespError> {
    let stream: std::sync::Arc<str> = stream.into();
    let n = match r.header().await? {
        Header::Array(n) => n,
        Header::Nil => 0,
        other => return Err(unexpected(other, "a list of entries")),
    };
    // A reply holds at most the COUNT asked for (`ingest.batch_max_size`); the cap only keeps
    // a corrupt header from reserving much.
    out.reserve(n.min(MAX_RESERVE));
    for _ in 0..n {
        // Most entries are small and already buffered: decoded in one pass, or else step by
        // step from the same place.
        let buffered = r.buffered().await?;
        if let Some((entry, used)) = super::buffered_entry::whole_entry(buffered, &stream, bounds) {
            r.consume(used);
            out.push(entry);
            continue;
        }
        // XCLAIM lists a claimed id that was deleted meanwhile as nil: nothing to deliver.
        match r.header().await? {
            Header::Nil => continue,
            Header::Array(2) => {}
            other => return Err(unexpected(other, "[id, fields]")),
        }
        let id = text(r.short(MAX_NAME, "an entry id").await?)?;
        let at = EntryRef {
            stream: stream.clone(),
            id: id.into(),
        };
        let entry = match r.header().await? {
            Header::Nil => Entry::new(at, None),
            Header::Array(m) => fields(r, at, m, bounds).await?,
            Header::Map(m) => fields(r, at, m.saturating_mul(2), bounds).await?,
            other => return Err(unexpected(other, "a field list")),
        };
        out.push(entry);
    }
    Ok(())
}

/// The state of one entry while its fields arrive.
struct Fields {
    /// Held whole while the entry is within `max_entry_bytes`.
    whole: Vec<(Vec<u8>, Vec<u8>)>,
    /// Once over: the summary (the fields held whole so far are clipped into it).
    clipped: Option<Vec<Clipped>>,
    summary_bytes: usize,
    omitted: usize,
    total: usize,
}

async fn fields<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    at: EntryRef,
    values: usize,
    bounds: &EntryBounds,
) -> Result<Entry, RespError> {
    let pairs = values / 2;
    let too_many = pairs + values % 2 > MAX_FIELDS;
    let mut f = Fields {
        // Within MAX_FIELDS unless too many: a bounded allocation, made once.
        whole: Vec::with_capacity(if too_many { 0 } else { pairs }),
        // Too many fields: a summary from the start.
        clipped: too_many.then(Vec::new),
        summary_bytes: 0,
        omitted: 0,
        total: 0,
    };
    for _ in 0..pairs {
        let name_len = bulk_len(r).await?;
        f.grow(name_len, bounds);
        let name = value(r, name_len, &f, bounds).await?;
        let value_len = bulk_len(r).await?;
        f.grow(value_len, bounds);
        let value = value(r, value_len, &f, bounds).await?;
        f.push(name, value, bounds);
    }
    let odd = values % 2 == 1;
    if odd {
        let len = bulk_len(r).await?;
        f.grow(len, bounds);
        let name = value(r, len, &f, bounds).await?;
        f.push(name, Kept::Whole(Vec::new()), bounds);
    }
    let total = f.total;
    if let Some(clipped) = f.clipped {
        let detail = if too_many {
            format!(
                "entry has {} fields, more than {MAX_FIELDS}",
                pairs + values % 2
            )
        } else {
            format!(
                "entry is {total} bytes, limit is {} (limits.max_entry_bytes)",
                bounds.max_entry_bytes
            )
        };
        return Ok(flawed(
            at,
            FlawWhy::new(FlawReason::TooLarge, detail),
            clipped,
            f.omitted,
        ));
    }
    let bad_name = f
        .whole
        .iter()
        .position(|(k, _)| std::str::from_utf8(k).is_err());
    if odd || bad_name.is_some() {
        let detail = match bad_name {
            Some(i) => format!("the name of field {} is not UTF-8", i + 1),
            None => "odd number of field names and values".to_string(),
        };
        let clipped = f
            .whole
            .iter()
            .map(|(k, v)| Clipped::of(k, v, bounds.prefix_bytes))
            .collect();
        return Ok(flawed(
            at,
            FlawWhy::new(FlawReason::BadEncoding, detail),
            clipped,
            0,
        ));
    }
    let fields: EntryFields = f
        .whole
        .iter()
        .map(|(k, v)| (std::str::from_utf8(k).expect("checked above"), v))
        .collect();
    Ok(Entry::new(at, Some(fields)))
}

fn flawed(at: EntryRef, why: FlawWhy, fields: Vec<Clipped>, omitted: usize) -> Entry {
    Entry {
        at,
        fields: Some(EntryFields::default()),
        deliveries: 1,
        flaw: Some(Box::new(Flaw {
            why,
            fields,
            omitted,
        })),
    }
}

/// One name or value as read.
enum Kept {
    Whole(Vec<u8>),
    Clip {
        prefix: Vec<u8>,
        len: usize,
        sha256: Option<[u8; 32]>,
    },
    /// Past the summary's budget: only counted.
    Dropped,
}

impl Fields {
    /// Counts `len` more bytes; the first time the entry goes over `max_entry_bytes`, the
    /// fields held whole so far become the start of the summary.
    fn grow(&mut self, len: usize, bounds: &EntryBounds) {
        self.total = self.total.saturating_add(len);
        if self.clipped.is_none() && self.total > bounds.max_entry_bytes {
            let mut clipped = Vec::new();
            for (k, v) in std::mem::take(&mut self.whole) {
                let c = Clipped::of(&k, &v, bounds.prefix_bytes);
                self.summary_bytes += c.kept_bytes() + FIELD_OVERHEAD;
                clipped.push(c);
            }
            self.clipped = Some(clipped);
        }
    }

    fn over_budget(&self, bounds: &EntryBounds) -> bool {
        self.summary_bytes + 2 * bounds.prefix_bytes + 32 + FIELD_OVERHEAD > bounds.summary_budget()
    }

    fn push(&mut self, name: Kept, value: Kept, bounds: &EntryBounds) {
        let Some(clipped) = self.clipped.as_mut() else {
            let (Kept::Whole(k), Kept::Whole(v)) = (name, value) else {
                unreachable!("fields are held whole while the entry is within its bound")
            };
            self.whole.push((k, v));
            return;
        };
        let (name, name_len) = match name {
            Kept::Whole(k) => {
                let len = k.len();
                (k[..len.min(bounds.prefix_bytes)].to_vec(), len)
            }
            Kept::Clip { prefix, len, .. } => (prefix, len),
            Kept::Dropped => {
                self.omitted += 1;
                return;
            }
        };
        let c = match value {
            Kept::Whole(v) => {
                let mut c = Clipped::of(&name, &v, bounds.prefix_bytes);
                c.name_len = name_len;
                c
            }
            Kept::Clip {
                prefix,
                len,
                sha256,
            } => Clipped {
                name,
                name_len,
                value: prefix,
                value_len: len,
                value_sha256: sha256,
            },
            Kept::Dropped => {
                self.omitted += 1;
                return;
            }
        };
        self.summary_bytes += c.kept_bytes() + FIELD_OVERHEAD;
        clipped.push(c);
    }
}

/// Reads one name or value of `len` bytes: whole while the entry is within its bound, else
/// its prefix (and SHA-256 when longer), or nothing once the summary is full.
async fn value<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    len: usize,
    f: &Fields,
    bounds: &EntryBounds,
) -> Result<Kept, RespError> {
    if f.clipped.is_none() {
        // total <= max_entry_bytes, so len is too.
        return Ok(Kept::Whole(r.bulk(len, len, 0).await?.kept));
    }
    if f.over_budget(bounds) {
        r.discard(len).await?;
        return Ok(Kept::Dropped);
    }
    let bulk = r
        .bulk(len, bounds.prefix_bytes, bounds.prefix_bytes)
        .await?;
    Ok(Kept::Clip {
        prefix: bulk.kept,
        len: bulk.len,
        sha256: bulk.sha256,
    })
}

/// The length of the next field name or value (a bulk string; other scalars are rare but
/// legal RESP and are read as their text by the caller's `bulk`).
async fn bulk_len<R: AsyncBufRead + Unpin>(r: &mut RespReader<R>) -> Result<usize, RespError> {
    match r.header().await? {
        Header::Bulk(n) => Ok(n),
        other => Err(unexpected(other, "a field name or value")),
    }
}

async fn expect_array<R: AsyncBufRead + Unpin>(
    r: &mut RespReader<R>,
    n: usize,
    what: &str,
) -> Result<(), RespError> {
    match r.header().await? {
        Header::Array(m) if m == n => Ok(()),
        other => Err(unexpected(other, what)),
    }
}

/// The error for an unexpected header: an error reply as itself, anything else as a protocol
/// error (the connection is then out of step and must be dropped).
fn unexpected(got: Header, what: &str) -> RespError {
    match got {
        Header::Error(e) => RespError::Server(e),
        other => RespError::Protocol(format!("expected {what}, got {other:?}")),
    }
}

fn text(bytes: Vec<u8>) -> Result<String, RespError> {
    String::from_utf8(bytes)
        .map_err(|_| RespError::Protocol("a non-UTF-8 stream name or id".into()))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use proptest::prelude::*;

    const BOUNDS: EntryBounds = EntryBounds {
        max_entry_bytes: 100,
        prefix_bytes: 8,
    };

    fn bulk(b: &[u8]) -> Vec<u8> {
        let mut out = format!("${}\r\n", b.len()).into_bytes();
        out.extend_from_slice(b);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn entry(id: &str, fields: &[&[u8]]) -> Vec<u8> {
        let mut out = b"*2\r\n".to_vec();
        out.extend(bulk(id.as_bytes()));
        out.extend(format!("*{}\r\n", fields.len()).into_bytes());
        for f in fields {
            out.extend(bulk(f));
        }
        out
    }

    fn read_reply_of(stream: &str, entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"*1\r\n*2\r\n".to_vec();
        out.extend(bulk(stream.as_bytes()));
        out.extend(format!("*{}\r\n", entries.len()).into_bytes());
        for e in entries {
            out.extend_from_slice(e);
        }
        out
    }

    fn run(bytes: &[u8]) -> Result<Vec<Entry>, RespError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_reply(&mut RespReader::new(bytes), &BOUNDS))
    }

    /// `run` through a read buffer of `capacity` bytes: below an entry's size no entry is
    /// ever whole in the buffer, so every one is read step by step.
    fn run_buffered(bytes: &[u8], capacity: usize) -> Result<Vec<Entry>, RespError> {
        let reader = tokio::io::BufReader::with_capacity(capacity, bytes);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_reply(&mut RespReader::new(reader), &BOUNDS))
    }

    #[test]
    fn one_bad_entry_does_not_fail_the_others() {
        let big = vec![b'v'; 500];
        let reply = read_reply_of(
            "events",
            &[
                entry("1-0", &[b"type", b"data"]),
                entry("2-0", &[b"\xff\xfename", b"v", b"type", b"data"]),
                entry("3-0", &[b"type", b"data", b"big", &big]),
                entry("4-0", &[b"a"]),
                b"*2\r\n$3\r\n5-0\r\n*-1\r\n".to_vec(),
                entry("6-0", &[b"type", b"heartbeat"]),
            ],
        );
        let entries = run(&reply).unwrap();
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[0].field("type"), Some(&b"data"[..]));
        assert!(entries[0].flaw.is_none());

        let flaw = entries[1].flaw.as_ref().unwrap();
        assert_eq!(flaw.why.reason, FlawReason::BadEncoding);
        assert_eq!(flaw.fields[0].name, b"\xff\xfename");
        assert_eq!(flaw.fields.len(), 2);

        let flaw = entries[2].flaw.as_ref().unwrap();
        assert_eq!(flaw.why.reason, FlawReason::TooLarge);
        assert_eq!(flaw.fields[0].value, b"data");
        assert_eq!(flaw.fields[1].value, vec![b'v'; 8]);
        assert_eq!(flaw.fields[1].value_len, 500);
        assert_eq!(
            flaw.fields[1].value_sha256,
            Some(Sha256::digest(&big).into())
        );

        assert_eq!(
            entries[3].flaw.as_ref().unwrap().why.reason,
            FlawReason::BadEncoding
        );
        assert!(entries[4].fields.is_none());
        assert_eq!(entries[5].field("type"), Some(&b"heartbeat"[..]));
    }

    #[test]
    fn many_small_fields_over_the_bound_are_summarised_within_a_budget() {
        let names: Vec<Vec<u8>> = (0..2000).map(|i| format!("f{i}").into_bytes()).collect();
        let mut fields: Vec<&[u8]> = Vec::new();
        for n in &names {
            fields.push(n);
            fields.push(b"value");
        }
        let entries = run(&read_reply_of("events", &[entry("1-0", &fields)])).unwrap();
        let flaw = entries[0].flaw.as_ref().unwrap();
        assert_eq!(flaw.why.reason, FlawReason::TooLarge);
        assert_eq!(flaw.fields.len() + flaw.omitted, 2000);
        assert!(entries[0].size() <= BOUNDS.summary_budget());
    }

    #[test]
    fn more_than_max_fields_is_too_large_even_within_the_bytes() {
        let bounds = EntryBounds {
            max_entry_bytes: 64 * 1024,
            prefix_bytes: 100,
        };
        let mut reply = read_reply_of(
            "events",
            &[entry("1-0", &vec![&b"k"[..]; 2 * MAX_FIELDS + 2])],
        );
        let entries = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(read_reply(&mut RespReader::new(&reply[..]), &bounds))
            .unwrap();
        let flaw = entries[0].flaw.as_ref().unwrap();
        assert_eq!(flaw.why.reason, FlawReason::TooLarge);
        assert_eq!(flaw.why.detail, "entry has 257 fields, more than 256");
        assert_eq!(flaw.fields.len() + flaw.omitted, MAX_FIELDS + 1);
        reply.clear();
    }

    #[test]
    fn error_replies_and_resp3_maps() {
        assert!(matches!(
            run(b"-NOGROUP no group\r\n"),
            Err(RespError::Server(e)) if e.starts_with("NOGROUP")
        ));
        assert!(run(b"*-1\r\n").unwrap().is_empty());
        let mut map = b"%1\r\n".to_vec();
        map.extend(bulk(b"events"));
        map.extend(b"*1\r\n");
        map.extend(entry("1-0", &[b"type", b"data"]));
        let entries = run(&map).unwrap();
        assert_eq!(&*entries[0].at.stream, "events");
        assert_eq!(&*entries[0].at.id, "1-0");
    }

    #[test]
    fn autoclaim_reply_with_deleted_ids() {
        let mut reply = b"*3\r\n".to_vec();
        reply.extend(bulk(b"7-0"));
        reply.extend(b"*1\r\n");
        reply.extend(entry("5-0", &[b"\xff", b"x"]));
        reply.extend(b"*1\r\n");
        reply.extend(bulk(b"6-0"));
        let (next, entries, deleted) = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(autoclaim_reply(
                &mut RespReader::new(&reply[..]),
                "events",
                &BOUNDS,
            ))
            .unwrap();
        assert_eq!(next, "7-0");
        assert_eq!(
            entries[0].flaw.as_ref().unwrap().why.reason,
            FlawReason::BadEncoding
        );
        assert_eq!(deleted, ["6-0"]);
    }

    proptest! {
        #[test]
        fn arbitrary_entries_are_read_within_the_bound(
            fields in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40)
        ) {
            let refs: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
            let entries = run(&read_reply_of("s", &[entry("1-0", &refs), entry("2-0", &[b"k", b"v"])])).unwrap();
            prop_assert_eq!(entries.len(), 2);
            prop_assert!(entries[0].size() <= BOUNDS.max_entry_bytes + 40 * 32);
            let total: usize = fields.iter().map(Vec::len).sum();
            if total > BOUNDS.max_entry_bytes {
                prop_assert_eq!(entries[0].flaw.as_ref().unwrap().why.reason, FlawReason::TooLarge);
            }
            prop_assert_eq!(entries[1].field("k"), Some(&b"v"[..]));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = run(&bytes);
        }

        /// Entries decoded in one pass from the buffer (buffered_entry) come out exactly as
        /// those read step by step, whatever their fields, names, sizes and the buffer's size.
        #[test]
        fn whole_buffered_entries_decode_as_step_by_step(
            fields in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..60),
                    "[a-z]{1,8}".prop_map(String::into_bytes),
                ],
                0..12,
            ),
            capacity in 1usize..400,
        ) {
            let refs: Vec<&[u8]> = fields.iter().map(|f| f.as_slice()).collect();
            let reply = read_reply_of("s", &[
                entry("1-0", &refs),
                entry("2-0", &[b"type", b"data"]),
                b"*2\r\n$3\r\n3-0\r\n*-1\r\n".to_vec(),
                entry("4-0", &refs),
            ]);
            let one_pass = format!("{:?}", run(&reply));
            prop_assert_eq!(&one_pass, &format!("{:?}", run_buffered(&reply, 1)));
            prop_assert_eq!(&one_pass, &format!("{:?}", run_buffered(&reply, capacity)));
        }
    }
}
