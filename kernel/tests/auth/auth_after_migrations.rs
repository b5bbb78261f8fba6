//! The auth background tasks (registration service with its nonce pruning, last-seen writes)
//! start only once the schema is there: before, they would only fail on missing tables.

use std::time::Duration;

use crate::support::*;
use fdc_common::keys;
use fdc_kernel::service;
use fdc_kernel::store::Store;

const WAIT: Duration = Duration::from_secs(30);

/// Consumer groups on the registration stream (0 when the stream does not exist).
async fn register_groups(redis: &redis::aio::MultiplexedConnection) -> usize {
    let mut conn = redis.clone();
    let groups: Result<Vec<redis::Value>, _> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("fdc:register")
        .query_async(&mut conn)
        .await;
    groups.map(|g| g.len()).unwrap_or(0)
}

#[tokio::test]
async fn registration_starts_only_after_migrations() {
    let env = TestEnv::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = keys::keygen(&dir.path().join("issuer"), false).unwrap();
    let mut config = env.config();
    config.postgres.migrate_on_start = false;
    config.auth.enabled = true;
    config.auth.signing_key = Some(files.private_key);
    let kernel = service::start(config.clone()).await.unwrap();
    let a = kernel.http_addr;
    let redis = env.redis_conn().await;

    // Both servers answer (the probe ran), only the schema is missing.
    let body = wait_for(
        WAIT,
        "not ready: migrations not applied yet\n".to_string(),
        || async { http_get(a, "/readyz").await.1 },
    )
    .await;
    assert_eq!(body, "not ready: migrations not applied yet\n");
    // Redis is up, yet the registration service has not started (it would create its group).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(register_groups(&redis).await, 0);

    Store::connect_lazy(&config.postgres, "test")
        .unwrap()
        .migrate()
        .await
        .unwrap();
    assert_eq!(
        wait_for(WAIT, 200, || async { http_get(a, "/readyz").await.0 }).await,
        200
    );
    assert_eq!(wait_for(WAIT, 1, || register_groups(&redis)).await, 1);
    kernel.shutdown().await;
}
