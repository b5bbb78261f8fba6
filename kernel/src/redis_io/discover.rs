//! Finding the streams that match a pattern of `ingest.streams`: `SCAN … MATCH <pattern> TYPE
//! stream` on one Redis, or on every primary of a Redis Cluster (each primary holds its own
//! keys, so one SCAN per primary node covers them all).

use std::collections::BTreeSet;

use redis::Value;

use super::cluster::Router;
use super::ops::Ops;
use super::{reply, RedisIoError};

/// Keys asked for per SCAN step: a hint to Redis, which may return more or fewer.
const SCAN_COUNT: usize = 1000;

/// The streams whose names match `pattern` (Redis `MATCH` syntax), sorted. `router` is the
/// cluster's slot map (`None` on one Redis).
pub(super) async fn streams_matching(
    ops: &Ops,
    router: Option<&Router>,
    pattern: &str,
) -> Result<Vec<String>, RedisIoError> {
    let mut found = BTreeSet::new();
    match router {
        None => scan(ops, None, pattern, &mut found).await?,
        Some(router) => {
            for node in router.primaries().await? {
                scan(ops, Some(&node), pattern, &mut found).await?;
            }
        }
    }
    Ok(found.into_iter().collect())
}

/// One whole SCAN over the keys of one server (`node`: a cluster node's `host:port`).
async fn scan(
    ops: &Ops,
    node: Option<&str>,
    pattern: &str,
    found: &mut BTreeSet<String>,
) -> Result<(), RedisIoError> {
    let mut cursor = "0".to_string();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(&cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .arg("TYPE")
            .arg("stream");
        let value = match node {
            None => {
                let mut conn = ops.clone();
                cmd.query_async::<Value>(&mut conn).await?
            }
            Some(node) => ops.on_node(node, cmd).await?,
        };
        let (next, keys) = scan_page(&value)?;
        found.extend(keys);
        if next == "0" {
            return Ok(());
        }
        cursor = next;
    }
}

/// A SCAN reply: the next cursor and this step's keys.
fn scan_page(value: &Value) -> Result<(String, Vec<String>), RedisIoError> {
    let parts = reply::array(value)?;
    let (Some(cursor), Some(keys)) = (parts.first(), parts.get(1)) else {
        return Err(reply::err("a SCAN reply [cursor, keys]", value).into());
    };
    let keys = reply::array(keys)?
        .iter()
        .map(reply::string)
        .collect::<Result<_, _>>()?;
    Ok((reply::string(cursor)?, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_scan_page_gives_the_cursor_and_the_keys() {
        let page = Value::Array(vec![
            bulk("17"),
            Value::Array(vec![bulk("events:a"), bulk("events:{b}")]),
        ]);
        assert_eq!(
            scan_page(&page).unwrap(),
            (
                "17".to_string(),
                vec!["events:a".into(), "events:{b}".into()]
            )
        );
        let last = Value::Array(vec![bulk("0"), Value::Array(vec![])]);
        assert_eq!(scan_page(&last).unwrap(), ("0".to_string(), vec![]));
        assert!(scan_page(&Value::Array(vec![bulk("0")])).is_err());
    }
}
