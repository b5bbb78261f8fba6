//! The private servers of `fdc-testenv`, plus the kernel config that points at them.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::Duration;

pub use fdc_testenv::*;

use fdc_kernel::config::Config;
use uuid::Uuid;

/// A kernel config for a [`TestEnv`]: defaults pointed at its servers, HTTP on a free port,
/// a consumer name of its own, short waits.
pub trait EnvConfig {
    fn config(&self) -> Config;
}

impl EnvConfig for TestEnv {
    fn config(&self) -> Config {
        let mut config = Config::default();
        config.redis.url = self.redis.url();
        config.postgres.url = self.postgres.url();
        config.http.listen = "127.0.0.1:0".parse().expect("static address");
        config.ingest.consumer = Some(format!("test-{}", Uuid::new_v4().simple()));
        config.ingest.batch_max_wait = Duration::from_millis(20);
        config.shutdown.timeout = Duration::from_secs(10);
        config
    }
}
