//! fdc kernel: reads protocol v1 events from Redis Streams through a consumer group and stores
//! them in partitioned Postgres tables. See README.md and docs/.

pub mod auth;
pub mod config;
pub mod protocol;
pub mod testsupport;
