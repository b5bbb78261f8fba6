//! Dead letters: the original fields (never the token) plus why, on `<stream><dlq_suffix>`.

use redis::aio::ConnectionManager;

use crate::protocol::{Entry, Rejection};
use crate::redis_io::RedisIoError;

/// Fields the kernel adds; an original field of the same name is kept as `orig_<name>`.
const ADDED: [&str; 4] = ["error", "detail", "source_stream", "source_id"];

/// The fields of the dead letter for `entry`.
pub fn dead_letter_fields(entry: &Entry, why: &Rejection) -> Vec<(String, Vec<u8>)> {
    let mut fields = vec![
        ("error".to_string(), why.reason.code().as_bytes().to_vec()),
        ("detail".to_string(), why.detail.as_bytes().to_vec()),
        (
            "source_stream".to_string(),
            entry.at.stream.as_bytes().to_vec(),
        ),
        ("source_id".to_string(), entry.at.id.as_bytes().to_vec()),
    ];
    for (name, value) in entry.fields.iter().flatten() {
        if name == "token" {
            continue;
        }
        let name = if ADDED.contains(&name.as_str()) {
            format!("orig_{name}")
        } else {
            name.clone()
        };
        fields.push((name, value.clone()));
    }
    fields
}

/// Writes all dead letters in one round trip and acknowledges their source entries in the
/// same MULTI/EXEC transaction, so a crash cannot leave a dead letter whose entry is still
/// pending (it would be dead-lettered again on redelivery). `dlq_stream` maps a source stream
/// to its dead-letter stream. Acknowledging an already acknowledged entry (spill replay) is a
/// no-op.
pub async fn send(
    conn: &mut ConnectionManager,
    letters: &[&(Entry, Rejection)],
    group: &str,
    dlq_stream: impl Fn(&str) -> String,
) -> Result<(), RedisIoError> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (entry, why) in letters.iter().copied() {
        pipe.cmd("XADD")
            .arg(dlq_stream(&entry.at.stream))
            .arg("*")
            .arg(dead_letter_fields(entry, why))
            .ignore();
        pipe.cmd("XACK")
            .arg(&entry.at.stream)
            .arg(group)
            .arg(&entry.at.id)
            .ignore();
    }
    pipe.query_async::<()>(conn).await?;
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
            fields: Some(vec![
                ("type".into(), b"data".to_vec()),
                ("token".into(), b"secret".to_vec()),
                ("error".into(), b"mine".to_vec()),
            ]),
            deliveries: 1,
        };
        let fields = dead_letter_fields(&entry, &Rejection::new(Reason::BadType, "nope"));
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
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
}
