//! Schema look-ups during a Postgres outage lose nothing and hold nothing up: entries whose
//! binding was never resolved stay pending until Postgres answers; once resolved, the cached
//! schema keeps validating (dead letters during the outage, conforming events spilled with
//! their schema id and stored with it on replay).

use std::time::Duration;

use serde_json::json;

use crate::auth_support::WAIT;
use crate::fault_support::{metric, spill_config, start_ready_with_redis};
use crate::support::*;
use crate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolved_bindings_wait_for_postgres_and_resolved_ones_validate_through_it() {
    let mut env = TestEnv::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = auth_off_config(&env, dir.path(), "orders", |c| {
        c.postgres.connect_timeout = Duration::from_secs(1);
        c.spill = Some(spill_config(&dir.path().join("spill"), 64 << 20));
    });
    // Ready means migrated and partitions made: killing Postgres earlier would stop the kernel
    // before it reads anything, which is not the case under test.
    let (kernel, redis) = start_ready_with_redis(&env, config).await;
    let admin = Admin::at(kernel.admin_addr.expect("the admin API runs"));
    let http = kernel.http_addr;
    let id = admin.add("orders", "1.0.0", orders_v1()).await;
    let good = |n: i64| entry(None, json!({"order_id": "o", "qty": n}));
    let bad = || entry(None, json!({"order_id": "o", "qty": 0}));

    // Never resolved, Postgres gone: neither stored, dead-lettered nor acknowledged.
    env.postgres.kill();
    publish(&redis, "events", &[good(1), bad(), good(2)]).await;
    assert_eq!(
        wait_for(WAIT, 3, || pending(&redis, "events", "kernel")).await,
        3
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pending(&redis, "events", "kernel").await, 3);
    assert_eq!(xlen(&redis, "events:dlq").await, 0);

    // Back: the next batch decides them too.
    env.postgres.restart().await.unwrap();
    let pg = env.pg().await;
    publish(&redis, "events", &[good(3)]).await;
    let got = wait_for(WAIT, (3, 1), || async {
        (
            stored_with(&pg, Some(id)).await,
            xlen(&redis, "events:dlq").await,
        )
    })
    .await;
    assert_eq!(got, (3, 1));

    // Resolved and cached: during the next outage (past the TTL) the cached schema decides.
    env.postgres.kill();
    tokio::time::sleep(TTL + Duration::from_millis(500)).await;
    publish(&redis, "events", &[good(4), bad(), good(5), good(6)]).await;
    assert_eq!(wait_for(WAIT, 2, || xlen(&redis, "events:dlq")).await, 2);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert!(metric(http, "kernel_spill_records_written_total").await >= 1.0);

    env.postgres.restart().await.unwrap();
    let pg = env.pg().await;
    assert_eq!(wait_for(WAIT, 6, || stored_with(&pg, Some(id))).await, 6);
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 6);
    assert_eq!(
        schema_dead_letters(&redis).await.len(),
        2,
        "each bad payload dead-lettered once"
    );
    kernel.shutdown().await;
}
