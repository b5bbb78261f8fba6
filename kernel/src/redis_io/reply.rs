//! Decoding stream replies by hand: a pending entry trimmed from the stream comes back with a
//! nil body, which typed decoders reject; here it becomes `Entry { fields: None }`.

use redis::Value;

use crate::protocol::{Entry, EntryRef};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplyError(String);

fn err(what: &str, v: &Value) -> ReplyError {
    ReplyError(format!("expected {what}, got {v:?}"))
}

pub fn bytes(v: &Value) -> Result<Vec<u8>, ReplyError> {
    match v {
        Value::BulkString(b) => Ok(b.clone()),
        Value::SimpleString(s) => Ok(s.as_bytes().to_vec()),
        Value::Okay => Ok(b"OK".to_vec()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(err("a string", other)),
    }
}

pub fn string(v: &Value) -> Result<String, ReplyError> {
    String::from_utf8(bytes(v)?).map_err(|_| ReplyError("non-UTF-8 name".into()))
}

pub fn array(v: &Value) -> Result<&[Value], ReplyError> {
    match v {
        Value::Array(items) | Value::Set(items) => Ok(items),
        other => Err(err("an array", other)),
    }
}

/// One `[id, [field, value, …] | nil]` pair.
fn entry(stream: &str, v: &Value) -> Result<Entry, ReplyError> {
    let pair = array(v)?;
    let [id, body] = pair else {
        return Err(err("[id, fields]", v));
    };
    let fields = match body {
        Value::Nil => None,
        body => {
            let flat = array(body)?;
            if flat.len() % 2 != 0 {
                return Err(err("field/value pairs", body));
            }
            Some(
                flat.chunks_exact(2)
                    .map(|kv| Ok((string(&kv[0])?, bytes(&kv[1])?)))
                    .collect::<Result<Vec<_>, ReplyError>>()?,
            )
        }
    };
    Ok(Entry {
        at: EntryRef {
            stream: stream.to_string(),
            id: string(id)?,
        },
        fields,
        deliveries: 1,
    })
}

/// Entries of a stream in an `[[id, fields], …]` list.
pub fn parse_entries(stream: &str, v: &Value) -> Result<Vec<Entry>, ReplyError> {
    array(v)?.iter().map(|e| entry(stream, e)).collect()
}

/// An XREADGROUP reply: nil (timeout) or `[[stream, entries], …]` (RESP2) or a map (RESP3).
pub fn parse_read(v: &Value) -> Result<Vec<Entry>, ReplyError> {
    let mut out = Vec::new();
    match v {
        Value::Nil => {}
        Value::Map(pairs) => {
            for (stream, entries) in pairs {
                out.extend(parse_entries(&string(stream)?, entries)?);
            }
        }
        other => {
            for item in array(other)? {
                let pair = array(item)?;
                let [stream, entries] = pair else {
                    return Err(err("[stream, entries]", item));
                };
                out.extend(parse_entries(&string(stream)?, entries)?);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_entries_and_trimmed_ones() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("type"), bulk("data")]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let entries = parse_read(&reply).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].at.id, "1-0");
        assert_eq!(entries[0].field("type"), Some(&b"data"[..]));
        assert!(entries[1].fields.is_none());
        assert!(parse_read(&Value::Nil).unwrap().is_empty());
    }

    #[test]
    fn odd_field_lists_are_errors_not_panics() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("events"),
            Value::Array(vec![Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("type")]),
            ])]),
        ])]);
        assert!(parse_read(&reply).is_err());
    }
}
