//! Consumer-group commands on the streams the kernel reads.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;

use super::cluster::{Link, Router};
use super::entry_conn::{EntryConn, LinkError};
use super::entry_reply::EntryBounds;
use super::ops::{bad_url, Ops};
use super::reply;
use super::RedisIoError;
use crate::entry::Entry;

/// Redis access for one consumer of one group.
#[derive(Clone)]
pub struct StreamClient {
    /// XREADGROUP, XAUTOCLAIM and XCLAIM with bodies: the reader's own link (one per node on
    /// a Redis Cluster).
    entries: Entries,
    bounds: EntryBounds,
    /// Longest silence while waiting for a reply on `entries`: the longest BLOCK plus a margin.
    entries_timeout: Duration,
    ops: Ops,
    group: String,
    consumer: String,
    /// The URL without its password, for errors.
    server: std::sync::Arc<str>,
}

/// Where the entry reads go.
#[derive(Clone)]
enum Entries {
    Single(Arc<tokio::sync::Mutex<EntryConn>>),
    Cluster(Arc<Router>),
}

/// Longest wait for a reply to a command that does not block.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One XAUTOCLAIM step: claimed entries, ids deleted from the stream meanwhile, next cursor.
#[derive(Debug, Default)]
pub struct ClaimPage {
    pub entries: Vec<Entry>,
    pub deleted: Vec<String>,
    pub next: String,
}

/// The group's backlog on one stream (XINFO GROUPS).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    pub pending: i64,
    /// Entries not yet delivered to the group (0 once the last-delivered-id is the stream's
    /// last id); `None` when Redis cannot tell.
    pub lag: Option<i64>,
}

impl StreamClient {
    /// Connects lazily: the kernel starts (not ready) while Redis is down.
    /// `max_block` is the longest BLOCK the reader will use. A `redis+cluster://` URL names
    /// seed nodes of a Redis Cluster.
    pub fn new(
        url: &str,
        group: &str,
        consumer: &str,
        max_block: Duration,
    ) -> Result<StreamClient, RedisIoError> {
        let ops = Ops::open(url, REPLY_TIMEOUT)?;
        let entries = match &ops {
            Ops::Cluster(_) => Entries::Cluster(Arc::new(Router::new(ops.clone(), url))),
            Ops::Single(_) => {
                let client = redis::Client::open(url).map_err(bad_url)?;
                let conn = EntryConn::new(client.get_connection_info())?;
                Entries::Single(Arc::new(tokio::sync::Mutex::new(conn)))
            }
        };
        let defaults = fdc_common::config::Config::default();
        Ok(StreamClient {
            entries,
            bounds: EntryBounds {
                max_entry_bytes: defaults.limits.max_entry_bytes,
                prefix_bytes: defaults.ingest.dlq_field_bytes,
            },
            entries_timeout: max_block + Duration::from_secs(5),
            ops,
            group: group.to_string(),
            consumer: consumer.to_string(),
            server: fdc_common::config::redact_url(url).into(),
        })
    }

    /// How much of each entry read is held (by default, the defaults of `limits` and `ingest`).
    pub fn with_entry_bounds(mut self, bounds: EntryBounds) -> StreamClient {
        self.bounds = bounds;
        self
    }

    /// A Redis error of this client, naming the server (its URL without a password).
    fn at(&self, source: redis::RedisError) -> RedisIoError {
        RedisIoError::At {
            server: self.server.clone(),
            source,
        }
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// A connection for other commands (DLQ, re-publish), sharing the non-blocking link.
    pub fn ops(&self) -> Ops {
        self.ops.clone()
    }

    /// The link that reads `stream`'s entries.
    async fn entry_link(
        &self,
        stream: &str,
    ) -> Result<Arc<tokio::sync::Mutex<EntryConn>>, RedisIoError> {
        match &self.entries {
            Entries::Single(link) => Ok(link.clone()),
            Entries::Cluster(router) => Ok(router.link_for(stream).await?.1),
        }
    }

    /// On a Redis Cluster, where to follow an ASK answer to an entry read (the key already
    /// moved to the node importing its slot): the read is sent once more there, after an
    /// `ASKING` ([`EntryConn::ask_next`]); the slot map stays as it is (the slot is the
    /// source's until the migration ends).
    fn asked<T>(&self, result: &Result<T, LinkError>) -> Option<Link> {
        match (result, &self.entries) {
            (Err(e), Entries::Cluster(router)) => router.asked(e),
            _ => None,
        }
    }

    /// A failed entry read, after the router learned from it (a MOVED slot).
    fn link_failed(&self, e: LinkError) -> RedisIoError {
        if let Entries::Cluster(router) = &self.entries {
            router.learn(&e);
        }
        e.into()
    }

    /// The bounds entries are read with.
    pub fn entry_bounds(&self) -> EntryBounds {
        self.bounds
    }

    pub async fn ping(&self) -> bool {
        self.check().await.is_ok()
    }

    /// A PING; the error says why Redis did not answer.
    pub async fn check(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.ops.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }

    /// Creates the group on each stream (and the stream, MKSTREAM) if missing. A new group
    /// starts at the beginning of the stream: events published before the first kernel ran
    /// are ingested too.
    pub async fn ensure_group(&self, stream: &str) -> Result<(), RedisIoError> {
        let mut conn = self.ops.clone();
        let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&self.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(self.at(e)),
        }
    }

    /// The streams whose names match `pattern` (Redis `MATCH` syntax): `SCAN … TYPE stream`
    /// on the Redis, or on every primary of a Redis Cluster.
    pub async fn streams_matching(&self, pattern: &str) -> Result<Vec<String>, RedisIoError> {
        let router = match &self.entries {
            Entries::Single(_) => None,
            Entries::Cluster(router) => Some(router.as_ref()),
        };
        super::discover::streams_matching(&self.ops, router, pattern).await
    }

    /// XREADGROUP over `streams` from `ids` (`>` for new entries, an id for this consumer's
    /// own pending ones). `block: None` returns at once.
    ///
    /// On a Redis Cluster the streams are read per slot, all slots at once: the call returns
    /// once every read answered, so an idle slot adds at most `block` to the wait for the
    /// others' entries. When some reads fail, the entries of the others are returned (they are
    /// pending on this consumer already) and the error comes with the next call.
    pub async fn read(
        &self,
        streams: &[String],
        ids: &[String],
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, RedisIoError> {
        let router = match &self.entries {
            Entries::Single(link) => {
                let args = self.read_args(streams.iter().zip(ids), count, block);
                let mut conn = link.lock().await;
                return Ok(conn.read(&args, &self.bounds, self.entries_timeout).await?);
            }
            Entries::Cluster(router) => router,
        };
        // One XREADGROUP per slot (Redis refuses keys of several slots in one command, even
        // on one node), each on its own link, all at once.
        let mut by_slot: Vec<(u16, Link, Vec<usize>)> = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            let (slot, link) = router.link_for(stream).await?;
            match by_slot.iter_mut().find(|(s, ..)| *s == slot) {
                Some((.., members)) => members.push(i),
                None => by_slot.push((slot, link, vec![i])),
            }
        }
        let reads = by_slot.into_iter().map(|(_, link, members)| {
            let args = self.read_args(
                members.iter().map(|&i| (&streams[i], &ids[i])),
                count,
                block,
            );
            async move {
                let timeout = self.entries_timeout;
                let read = link.lock().await.read(&args, &self.bounds, timeout).await;
                match self.asked(&read) {
                    Some(target) => {
                        let mut conn = target.lock().await;
                        conn.ask_next();
                        conn.read(&args, &self.bounds, timeout).await
                    }
                    None => read,
                }
            }
        });
        let mut entries = Vec::new();
        let mut failed = None;
        for result in futures::future::join_all(reads).await {
            match result {
                Ok(read) => entries.extend(read),
                Err(e) => failed = Some(self.link_failed(e)),
            }
        }
        match failed {
            Some(e) if entries.is_empty() => Err(e),
            _ => Ok(entries),
        }
    }

    /// XREADGROUP arguments for `(stream, id)` pairs.
    fn read_args<'a>(
        &self,
        streams: impl Iterator<Item = (&'a String, &'a String)> + Clone,
        count: usize,
        block: Option<Duration>,
    ) -> Vec<Vec<u8>> {
        let mut args = words(&["GROUP", &self.group, &self.consumer, "COUNT"]);
        args.push(count.to_string().into_bytes());
        if let Some(block) = block {
            args.push(b"BLOCK".to_vec());
            args.push((block.as_millis().max(1) as u64).to_string().into_bytes());
        }
        args.push(b"STREAMS".to_vec());
        args.extend(streams.clone().map(|(s, _)| s.as_bytes().to_vec()));
        args.extend(streams.map(|(_, id)| id.as_bytes().to_vec()));
        args
    }

    /// Claims up to `count` entries idle for `min_idle` from any consumer of the group.
    pub async fn autoclaim(
        &self,
        stream: &str,
        min_idle: Duration,
        cursor: &str,
        count: usize,
    ) -> Result<ClaimPage, RedisIoError> {
        let idle = (min_idle.as_millis() as u64).to_string();
        let count = count.to_string();
        let args = words(&[
            stream,
            &self.group,
            &self.consumer,
            &idle,
            cursor,
            "COUNT",
            &count,
        ]);
        let link = self.entry_link(stream).await?;
        // Redis 7 also lists ids it found deleted and has dropped from the pending list.
        let mut claimed = (link.lock().await)
            .autoclaim(stream, &args, &self.bounds, REPLY_TIMEOUT)
            .await;
        if let Some(target) = self.asked(&claimed) {
            let mut conn = target.lock().await;
            conn.ask_next();
            claimed = conn
                .autoclaim(stream, &args, &self.bounds, REPLY_TIMEOUT)
                .await;
        }
        let (next, entries, deleted) = claimed.map_err(|e| self.link_failed(e))?;
        Ok(ClaimPage {
            entries,
            deleted,
            next,
        })
    }

    /// Delivery counts of `ids`, one XPENDING per id in one pipelined round trip: a range
    /// query with a count limit could cut off some of them.
    pub async fn delivery_counts(
        &self,
        stream: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, u64>, RedisIoError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("XPENDING")
                .arg(stream)
                .arg(&self.group)
                .arg(id)
                .arg(id)
                .arg(1);
        }
        let mut conn = self.ops.clone();
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(|e| self.at(e))?;
        let mut counts = HashMap::new();
        for reply in &replies {
            for row in reply::array(reply)? {
                let fields = reply::array(row)?;
                if let (Some(id), Some(Value::Int(n))) = (fields.first(), fields.get(3)) {
                    counts.insert(reply::string(id)?, *n as u64);
                }
            }
        }
        Ok(counts)
    }

    /// Ids pending on this consumer (at most `count`), without touching their delivery counts.
    pub async fn own_pending_ids(
        &self,
        stream: &str,
        count: usize,
    ) -> Result<Vec<String>, RedisIoError> {
        let mut conn = self.ops.clone();
        let value: Value = redis::cmd("XPENDING")
            .arg(stream)
            .arg(&self.group)
            .arg("-")
            .arg("+")
            .arg(count)
            .arg(&self.consumer)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.at(e))?;
        reply::array(&value)?
            .iter()
            .map(|row| {
                reply::array(row).and_then(|f| reply::string(f.first().unwrap_or(&Value::Nil)))
            })
            .collect::<Result<_, _>>()
            .map_err(RedisIoError::from)
    }

    /// Takes `ids` (ours already) with their bodies, counting a delivery: used for entries a
    /// lost reply left pending on us without ever reaching the writer.
    pub async fn claim(&self, stream: &str, ids: &[String]) -> Result<Vec<Entry>, RedisIoError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = words(&[stream, &self.group, &self.consumer, "0"]);
        args.extend(ids.iter().map(|id| id.as_bytes().to_vec()));
        let link = self.entry_link(stream).await?;
        let mut claimed = (link.lock().await)
            .claim(stream, &args, &self.bounds, REPLY_TIMEOUT)
            .await;
        if let Some(target) = self.asked(&claimed) {
            let mut conn = target.lock().await;
            conn.ask_next();
            claimed = conn.claim(stream, &args, &self.bounds, REPLY_TIMEOUT).await;
        }
        claimed.map_err(|e| self.link_failed(e))
    }

    /// Resets the idle time of our own pending `ids` (XCLAIM … JUSTID to ourselves), without
    /// counting a delivery: they are being worked on, so no one should claim them.
    pub async fn keep_alive(&self, stream: &str, ids: &[String]) -> Result<(), RedisIoError> {
        let mut conn = self.ops.clone();
        for chunk in ids.chunks(1000) {
            let _: Value = redis::cmd("XCLAIM")
                .arg(stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .arg(0)
                .arg(chunk)
                .arg("JUSTID")
                .query_async(&mut conn)
                .await
                .map_err(|e| self.at(e))?;
        }
        Ok(())
    }

    /// XACK of `ids` on `stream`; returns how many were pending.
    pub async fn ack(&self, stream: &str, ids: &[&str]) -> Result<u64, RedisIoError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut conn = self.ops.clone();
        let acked: u64 = redis::cmd("XACK")
            .arg(stream)
            .arg(&self.group)
            .arg(ids)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.at(e))?;
        Ok(acked)
    }

    /// The group's pending count and lag on `stream` (lag from ids, see `lag.rs`).
    pub async fn group_info(&self, stream: &str) -> Result<GroupInfo, RedisIoError> {
        let mut conn = self.ops.clone();
        let value: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.at(e))?;
        for group in reply::array(&value)? {
            let fields: HashMap<String, &Value> = match group {
                Value::Map(pairs) => pairs
                    .iter()
                    .filter_map(|(k, v)| Some((reply::string(k).ok()?, v)))
                    .collect(),
                other => reply::array(other)?
                    .chunks_exact(2)
                    .filter_map(|kv| Some((reply::string(&kv[0]).ok()?, &kv[1])))
                    .collect(),
            };
            let name = fields.get("name").map(|v| reply::string(v)).transpose()?;
            if name.as_deref() != Some(self.group.as_str()) {
                continue;
            }
            let int = |key: &str| match fields.get(key) {
                Some(Value::Int(n)) => Some(*n),
                _ => None,
            };
            let last_delivered = fields
                .get("last-delivered-id")
                .and_then(|v| reply::string(v).ok());
            // A Redis that refuses the script (ACLs without EVAL) still gets Redis's own lag.
            let tail: Result<(String, i64), _> = super::lag::tail_script()
                .key(stream)
                .invoke_async(&mut conn)
                .await;
            let lag = match tail {
                Ok((last_generated, length)) => super::lag::true_lag(
                    last_delivered.as_deref(),
                    &last_generated,
                    int("lag"),
                    length,
                ),
                Err(e) => {
                    tracing::debug!(error = %e, stream, "cannot read the stream's last id; reporting Redis's lag");
                    int("lag")
                }
            };
            return Ok(GroupInfo {
                pending: int("pending").unwrap_or(0),
                lag,
            });
        }
        Ok(GroupInfo::default())
    }

    /// Removes this consumer from the group, but only when it has nothing pending: deleting
    /// a consumer with pending entries would strand them.
    pub async fn leave_group_if_idle(&self, streams: &[String]) -> Result<bool, RedisIoError> {
        let mut conn = self.ops.clone();
        for stream in streams {
            let pending: Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&self.group)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(&self.consumer)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.at(e))?;
            if !reply::array(&pending)?.is_empty() {
                return Ok(false);
            }
        }
        for stream in streams {
            let _: Value = redis::cmd("XGROUP")
                .arg("DELCONSUMER")
                .arg(stream)
                .arg(&self.group)
                .arg(&self.consumer)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.at(e))?;
        }
        Ok(true)
    }
}

fn words(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_name_the_server_without_its_password() {
        let port = fdc_testenv::ports::free_port().unwrap();
        let url = format!("redis://:hunter2@127.0.0.1:{port}/");
        let client = StreamClient::new(&url, "g", "c", Duration::from_millis(10)).unwrap();
        let err = client.group_info("events").await.unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("Redis at redis://:***@127.0.0.1:{port}/: ")),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}
