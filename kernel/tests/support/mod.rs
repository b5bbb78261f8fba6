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

/// Nanoseconds in a UTC day.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// `n` events for a store to write, spread over `days` days from UTC day `first_day` (days
/// since the epoch), a millisecond apart within a day: five subjects, three tags each out of
/// twelve pairs, a small payload, each from its own entry of stream `events`.
pub fn store_events(first_day: i64, days: i64, n: usize) -> Vec<fdc_kernel::protocol::Event> {
    (0..n)
        .map(|i| {
            let ts_ns = first_day * DAY_NS + (i as i64 % days) * DAY_NS + i as i64 * 1_000_000;
            fdc_kernel::protocol::Event {
                id: uuid::Uuid::now_v7(),
                ts_ns,
                subject: Some(format!("subject-{}", i % 5)),
                tags: (0..3)
                    .map(|k| (format!("k{k}"), format!("v{}", (i + k) % 4)))
                    .collect(),
                payload: format!(r#"{{"n":{i}}}"#),
                source: fdc_kernel::entry::EntryRef {
                    stream: "events".into(),
                    id: format!("{i}-0").into(),
                },
                producer_id: None,
                schema_id: None,
            }
        })
        .collect()
}
