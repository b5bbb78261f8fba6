//! Minimal Redis stream helpers for the registration flow: requests are read through the
//! bounded entry reader (`read_requests`), replies written with redis-rs.

use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::{AsyncConnectionConfig, Value};

use crate::protocol::Entry;
use crate::redis_io::{EntryBounds, EntryConn, LinkError};

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

/// XREADGROUP on the registration stream through a bounded reader: `from = "0"` re-reads
/// `consumer`'s own pending entries, `">"` new ones. No entry is held beyond `bounds`.
#[allow(clippy::too_many_arguments)]
pub async fn read_requests(
    conn: &mut EntryConn,
    stream: &str,
    group: &str,
    consumer: &str,
    from: &str,
    count: usize,
    block: Duration,
    bounds: &EntryBounds,
) -> Result<Vec<Entry>, LinkError> {
    let args: Vec<Vec<u8>> = [
        "GROUP",
        group,
        consumer,
        "COUNT",
        &count.to_string(),
        "BLOCK",
        &(block.as_millis().max(1) as u64).to_string(),
        "STREAMS",
        stream,
        from,
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    conn.read(&args, bounds, block + Duration::from_secs(5))
        .await
}

/// A connection whose response timeout allows for `BLOCK`ing reads.
pub async fn connect(
    client: &redis::Client,
    block: Duration,
) -> Result<MultiplexedConnection, redis::RedisError> {
    let cfg = AsyncConnectionConfig::new()
        .set_response_timeout(Some(block + Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// A connection that reconnects on its own after Redis went away (the kernel's registration
/// service). Lazy: creating it never fails for an unreachable Redis, commands do until it is
/// back. `block`: the longest `BLOCK` used on it.
pub fn manager(
    client: &redis::Client,
    block: Duration,
) -> Result<ConnectionManager, redis::RedisError> {
    let cfg = ConnectionManagerConfig::new()
        .set_response_timeout(Some(block + Duration::from_secs(5)))
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2));
    ConnectionManager::new_lazy_with_config(client.clone(), cfg)
}

/// `XGROUP CREATE … MKSTREAM`, tolerating an existing group.
pub async fn ensure_group(
    conn: &mut impl ConnectionLike,
    stream: &str,
    group: &str,
) -> Result<(), redis::RedisError> {
    let r: Result<(), _> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
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
