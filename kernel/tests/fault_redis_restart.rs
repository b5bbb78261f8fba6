//! Fault 4: Redis (AOF on, fsync always) restarted while the kernel runs. The
//! kernel reconnects with backoff, is not ready meanwhile, and resumes from
//! the group's state.

mod fault_support;

use std::time::Duration;

use fault_support::*;
use fdc_kernel::service;
use fdc_kernel::testsupport::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_loses_nothing() {
    let (redis, postgres) = tokio::join!(
        RedisServer::start_with(RedisOptions { appendonly: true }),
        PostgresServer::start()
    );
    let mut env = TestEnv {
        redis: redis.unwrap(),
        postgres: postgres.unwrap(),
    };
    let mut config = env.config();
    config.ingest.batch_max_size = 200;
    let kernel = service::start(config).await.unwrap();
    let pg = env.pg().await;

    let set = EventSet::new(4000, 40);
    let (first, second) = set.entries.split_at(set.entries.len() / 2);
    {
        let redis = env.redis_conn().await;
        publish(&redis, "events", first).await;
    }
    assert!(wait_stored_at_least(&pg, 1).await >= 1);

    env.redis.kill();
    let down = wait_for(WAIT, 503, || async {
        http_get(kernel.http_addr, "/readyz").await.0
    })
    .await;
    assert_eq!(down, 503, "ready while Redis is down");
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.redis.restart().await.unwrap();

    let redis = env.redis_conn().await;
    publish(&redis, "events", second).await;
    assert_eq!(wait_stored(&pg, set.ids.len()).await, set.ids.len() as i64);
    assert_exact(&pg, &redis, &set).await;
    assert_eq!(
        wait_for(WAIT, 200, || async {
            http_get(kernel.http_addr, "/readyz").await.0
        })
        .await,
        200
    );
    assert!(metric(kernel.http_addr, "kernel_redis_errors_total").await >= 1.0);
    kernel.shutdown().await;
}
