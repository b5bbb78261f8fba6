//! What every kernel test binary imports: the private servers and fixtures of `fdc-testenv`,
//! and the kernel started in-process on them.
#![allow(dead_code)] // each test binary uses a different subset

pub use fdc_testenv::*;

/// A fresh [`TestEnv`], the kernel in-process on its default config, and a Redis connection
/// for the test's own commands.
pub async fn env_with_kernel() -> (
    TestEnv,
    fdc_kernel::service::RunningKernel,
    redis::aio::MultiplexedConnection,
) {
    let env = TestEnv::start().await.unwrap();
    let kernel = fdc_kernel::service::start(env.config()).await.unwrap();
    let redis = env.redis_conn().await;
    (env, kernel, redis)
}
