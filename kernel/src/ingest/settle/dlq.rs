//! Dead letters: a bounded copy of the original fields (never the token) plus why, on
//! `<stream><dlq_suffix>`, each dead-letter stream capped with `MAXLEN ~`.
//!
//! Each original name and value is kept up to `ingest.dlq_field_bytes`; a value cut short
//! gets two more fields, `<name>.size` (its length in bytes) and `<name>.sha256` (hex SHA-256
//! of all of it). Fields an oversized entry had beyond its summary's bound are counted in
//! `omitted_fields`.

use std::collections::{BTreeMap, HashSet};

use redis::aio::ConnectionLike;

use crate::protocol::{Clipped, Entry, Rejection};
use crate::redis_io::RedisIoError;

/// Fields the kernel adds; an original field of the same name is kept as `orig_<name>`.
const ADDED: [&str; 5] = [
    "error",
    "detail",
    "source_stream",
    "source_id",
    "omitted_fields",
];

/// The fields of the dead letter for `entry`, each original name and value cut to
/// `field_bytes`.
pub fn dead_letter_fields(
    entry: &Entry,
    why: &Rejection,
    field_bytes: usize,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let (clipped, omitted): (Vec<Clipped>, usize) = match &entry.flaw {
        Some(flaw) => (flaw.fields.clone(), flaw.omitted),
        None => (
            entry
                .fields
                .iter()
                .flat_map(|f| f.iter())
                .map(|(k, v)| Clipped::of(k.as_bytes(), v, field_bytes))
                .collect(),
            0,
        ),
    };
    let kept: Vec<&Clipped> = clipped
        .iter()
        .filter(|c| !(c.name_len == 5 && c.name == b"token"))
        .collect();
    let mut reserved: HashSet<Vec<u8>> = ADDED.iter().map(|a| a.as_bytes().to_vec()).collect();
    for c in &kept {
        if c.value_sha256.is_some() {
            reserved.insert(suffixed(&c.name, b".size"));
            reserved.insert(suffixed(&c.name, b".sha256"));
        }
    }
    let mut fields = vec![
        (b"error".to_vec(), why.reason.code().as_bytes().to_vec()),
        (b"detail".to_vec(), why.detail.as_bytes().to_vec()),
        (
            b"source_stream".to_vec(),
            entry.at.stream.as_bytes().to_vec(),
        ),
        (b"source_id".to_vec(), entry.at.id.as_bytes().to_vec()),
    ];
    if omitted > 0 {
        fields.push((b"omitted_fields".to_vec(), omitted.to_string().into_bytes()));
    }
    for c in kept {
        let name = if reserved.contains(&c.name) {
            suffixed(b"orig_", &c.name)
        } else {
            c.name.clone()
        };
        fields.push((name, c.value.clone()));
        if let Some(sha) = c.value_sha256 {
            fields.push((
                suffixed(&c.name, b".size"),
                c.value_len.to_string().into_bytes(),
            ));
            fields.push((suffixed(&c.name, b".sha256"), hex::encode(sha).into_bytes()));
        }
    }
    fields
}

fn suffixed(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Writes the dead letters of each source stream in one round trip and acknowledges their
/// source entries in the same MULTI/EXEC transaction, so a crash cannot leave a dead letter
/// whose entry is still pending (it would be dead-lettered again on redelivery). One
/// transaction per source stream: on a Redis Cluster a transaction stays within one slot, and
/// a stream shares its slot with its dead-letter stream only (hash tags, docs/protocol.md).
/// `target` says where each source stream's letters go and how many each dead-letter stream
/// keeps. Acknowledging an already acknowledged entry (spill replay)
/// is a no-op.
///
/// Returns how many older letters the cap trimmed: each transaction also reads the
/// dead-letter stream's length before and after (XLEN), so the count is exact.
pub async fn send(
    conn: &mut impl ConnectionLike,
    letters: &[&(Entry, Rejection)],
    target: &DlqTarget<'_>,
) -> Result<u64, RedisIoError> {
    let mut by_source: BTreeMap<&str, Vec<&(Entry, Rejection)>> = BTreeMap::new();
    for letter in letters.iter().copied() {
        by_source
            .entry(&*letter.0.at.stream)
            .or_default()
            .push(letter);
    }
    let mut trimmed = 0;
    for letters in by_source.values() {
        trimmed += send_together(conn, letters, target).await?;
    }
    Ok(trimmed)
}

/// Where [`send`] writes letters and how much of them.
pub struct DlqTarget<'a> {
    /// The consumer group whose entries the letters acknowledge.
    pub group: &'a str,
    /// A source stream's dead-letter stream.
    pub dlq_stream: &'a (dyn Fn(&str) -> String + Sync),
    /// Bytes kept of each field's value.
    pub field_bytes: usize,
    /// About how many letters each dead-letter stream keeps (`MAXLEN ~`).
    pub max_len: usize,
}

/// [`send`] for letters whose streams share a slot, in one transaction.
async fn send_together(
    conn: &mut impl ConnectionLike,
    letters: &[&(Entry, Rejection)],
    target: &DlqTarget<'_>,
) -> Result<u64, RedisIoError> {
    let DlqTarget {
        group,
        dlq_stream,
        field_bytes,
        max_len,
    } = *target;
    if letters.is_empty() {
        return Ok(0);
    }
    // Dead-letter stream -> letters added to it.
    let mut added: BTreeMap<String, u64> = BTreeMap::new();
    for (entry, _) in letters.iter().copied() {
        *added.entry(dlq_stream(&entry.at.stream)).or_default() += 1;
    }
    check_streams(conn, added.keys()).await?;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for stream in added.keys() {
        pipe.cmd("XLEN").arg(stream);
    }
    for (entry, why) in letters.iter().copied() {
        pipe.cmd("XADD")
            .arg(dlq_stream(&entry.at.stream))
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*")
            .arg(dead_letter_fields(entry, why, field_bytes))
            .ignore();
        pipe.cmd("XACK")
            .arg(&*entry.at.stream)
            .arg(group)
            .arg(&*entry.at.id)
            .ignore();
    }
    for stream in added.keys() {
        pipe.cmd("XLEN").arg(stream);
    }
    let lens: Vec<u64> = pipe.query_async(conn).await?;
    let n = added.len();
    let trimmed = added
        .values()
        .zip(lens.iter().take(n).zip(lens.iter().skip(n)))
        .map(|(added, (before, after))| (before + added).saturating_sub(*after))
        .sum();
    Ok(trimmed)
}

/// Fails unless every key in `streams` is a stream or absent. Redis runs the rest of a
/// MULTI after a command in it fails: an XADD to a key of another type (WRONGTYPE) would
/// fail while the XACK beside it succeeds, and the entry would be acknowledged without its
/// dead letter. So such a key is refused before the transaction, and the entries stay
/// pending until it is fixed.
async fn check_streams(
    conn: &mut impl ConnectionLike,
    streams: impl Iterator<Item = &String>,
) -> Result<(), RedisIoError> {
    let streams: Vec<&String> = streams.collect();
    let mut pipe = redis::pipe();
    for stream in &streams {
        pipe.cmd("TYPE").arg(*stream);
    }
    let kinds: Vec<String> = pipe.query_async(conn).await?;
    for (stream, kind) in streams.into_iter().zip(kinds) {
        if kind != "stream" && kind != "none" {
            return Err(RedisIoError::NotAStream {
                key: stream.clone(),
                kind,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{EntryRef, Reason};

    #[test]
    fn token_is_dropped_and_clashing_names_kept() {
        let entry = Entry {
            at: EntryRef {
                stream: "events".into(),
                id: "5-1".into(),
            },
            fields: Some(
                [
                    ("type", &b"data"[..]),
                    ("token", b"secret"),
                    ("error", b"mine"),
                ]
                .into_iter()
                .collect(),
            ),
            deliveries: 1,
            flaw: None,
        };
        let fields = dead_letter_fields(&entry, &Rejection::new(Reason::BadType, "nope"), 1024);
        let names: Vec<&str> = fields
            .iter()
            .map(|(k, _)| std::str::from_utf8(k).unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "error",
                "detail",
                "source_stream",
                "source_id",
                "type",
                "orig_error"
            ]
        );
        assert!(!fields.iter().any(|(_, v)| v == b"secret"));
        assert_eq!(fields[0].1, b"bad_type");
    }

    #[test]
    fn long_values_are_cut_with_their_size_and_sha256() {
        use sha2::{Digest, Sha256};
        let big = vec![b'q'; 5000];
        let entry = Entry {
            at: EntryRef {
                stream: "events".into(),
                id: "5-1".into(),
            },
            fields: Some(
                [
                    ("data", big.as_slice()),
                    ("data.size", b"mine"),
                    ("type", b"data"),
                ]
                .into_iter()
                .collect(),
            ),
            deliveries: 1,
            flaw: None,
        };
        let fields = dead_letter_fields(&entry, &Rejection::new(Reason::BadData, "x"), 100);
        let get = |name: &[u8]| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(b"data"), Some(vec![b'q'; 100]));
        assert_eq!(get(b"data.size"), Some(b"5000".to_vec()));
        assert_eq!(
            get(b"data.sha256"),
            Some(hex::encode(Sha256::digest(&big)).into_bytes())
        );
        assert_eq!(get(b"orig_data.size"), Some(b"mine".to_vec()));
        assert_eq!(get(b"type"), Some(b"data".to_vec()));
    }
}
