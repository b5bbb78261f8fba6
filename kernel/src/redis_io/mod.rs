//! The kernel's Redis side: consumer-group reads, claims, acks, dead letters.
//!
//! Two connections: a blocking XREADGROUP must not hold up acks queued behind it on a
//! multiplexed connection. Both reconnect on their own (redis-rs `ConnectionManager`).

mod reply;
mod streams;

pub use reply::{parse_entries, ReplyError};
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
    #[error("redis.url is invalid: {0}")]
    Url(String),
}
