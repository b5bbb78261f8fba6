//! Why a benchmark run failed.

use fdc_testenv::{KernelProcessError, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("private server: {0}")]
    Server(#[from] ServerError),
    #[error("Postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store: {0}")]
    Store(#[from] fdc_kernel::store::StoreError),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("auth setup: {0}")]
    Auth(String),
    #[error("kernel process: {0}")]
    Kernel(String),
    /// A guarantee the benchmark asserts did not hold (counts, duplicates).
    #[error("check failed: {0}")]
    Check(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl From<KernelProcessError> for BenchError {
    fn from(e: KernelProcessError) -> BenchError {
        match e {
            KernelProcessError::Io(e) => BenchError::Io(e),
            KernelProcessError::NotReady { .. } | KernelProcessError::ShutdownTimeout => {
                BenchError::Timeout(e.to_string())
            }
            _ => BenchError::Kernel(e.to_string()),
        }
    }
}
