//! fdc-testenv: private, throwaway Redis and Postgres servers for tests, the benchmark and
//! `fdc-kernel dev`.
//!
//! Each server gets a fresh temp directory and a free loopback port, so tests are hermetic and
//! can run in parallel. Servers are killed and their directories removed on drop. Tests can kill
//! and restart a server to inject a fault.

mod binaries;
mod fixtures;
mod kernel_process;
pub mod ports;
mod postgres;
mod postgres_pair;
mod process;
mod redis;
mod redis_cluster;

pub use fixtures::*;
pub use kernel_process::{KernelProcess, KernelProcessError};
pub use postgres::{PostgresOptions, PostgresServer};
pub use postgres_pair::PostgresPair;
pub use redis::{RedisOptions, RedisServer};
pub use redis_cluster::RedisCluster;

/// Why a private server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("`{0}` not found on PATH or under /usr/lib/postgresql/*/bin; install it (e.g. apt-get install redis-server postgresql)")]
    BinaryNotFound(String),
    #[error("could not run `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` failed: {output}")]
    Failed { program: String, output: String },
    #[error("{server} did not become ready within {seconds}s; last error: {last_error}")]
    NotReady {
        server: &'static str,
        seconds: u64,
        last_error: String,
    },
    #[error("I/O error preparing the server directory: {0}")]
    Io(#[from] std::io::Error),
}
