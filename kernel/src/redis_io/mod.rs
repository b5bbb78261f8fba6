//! The kernel's Redis side: consumer-group reads, claims, acks, dead letters.
//!
//! Commands that return entry bodies (XREADGROUP, XAUTOCLAIM, XCLAIM) go over a connection of
//! our own whose decoder holds each entry within a byte bound (`entry_conn`, `entry_reply`,
//! `resp`); acks, dead letters and the rest use a redis-rs `ConnectionManager`, which
//! reconnects on its own, or on a Redis Cluster (`redis+cluster://`) redis-rs's cluster
//! connection, with the entry reads routed by slot (`cluster`).

mod buffered_entry;
mod cluster;
mod discover;
mod entry_conn;
mod entry_reply;
mod lag;
mod ops;
mod reply;
pub mod resp;
mod streams;

pub use entry_conn::{EntryConn, LinkError};
pub use entry_reply::EntryBounds;
pub use ops::Ops;
pub use reply::ReplyError;
pub use streams::{ClaimPage, GroupInfo, StreamClient};

#[derive(Debug, thiserror::Error)]
pub enum RedisIoError {
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis at {server}: {source}")]
    At {
        server: std::sync::Arc<str>,
        #[source]
        source: redis::RedisError,
    },
    #[error("unexpected Redis reply: {0}")]
    Reply(#[from] ReplyError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("the dead-letter key {key} holds a Redis {kind}, not a stream: delete or rename it (or change ingest.dlq_suffix); the entries stay pending until then")]
    NotAStream { key: String, kind: String },
    #[error("redis.url is invalid: {0}")]
    Url(String),
    #[error("Redis Cluster: {0}")]
    Cluster(String),
}

impl crate::retry::Classify for RedisIoError {
    /// Every Redis error is retried: telling them apart would change behaviour.
    fn classify(&self) -> crate::retry::Failure {
        crate::retry::Failure::Outage
    }
}
