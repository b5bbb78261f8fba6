//! Reading redis-rs replies by hand (XPENDING, XINFO): shapes differ between RESP2 and RESP3.
//! Entry bodies never come this way (see `entry_reply`).

use redis::Value;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReplyError(String);

/// A reply of another shape than `what`.
pub fn err(what: &str, v: &Value) -> ReplyError {
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
