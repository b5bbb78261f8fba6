//! fdc kernel: reads protocol v1 events from Redis Streams through a consumer group and stores
//! them in partitioned Postgres tables. See README.md and docs/.

pub mod auth;
pub mod check_config;
pub mod dev;
pub mod entry;
pub mod error_chain;
pub mod health;
pub mod http;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod readiness;
pub mod redis_io;
pub mod retry;
pub mod schemas;
pub mod service;
pub mod stall;
pub mod store;
pub mod supervise;
