//! Fault 3: two kernels in one group; one is SIGKILLed for good while holding
//! pending entries. The survivor claims them after `ingest.claim_idle`.

use crate::fault_support::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_claims_the_dead_replicas_pending_entries() {
    let env = fault_env().await;
    let redis = env.redis_conn().await;
    let opts = [
        ("FDC_INGEST__BATCH_MAX_SIZE", "100"),
        ("FDC_INGEST__CLAIM_IDLE", "3s"),
        ("FDC_INGEST__CLAIM_INTERVAL", "500ms"),
        // claim_idle must exceed both (a live replica's batch is never claimed).
        ("FDC_POSTGRES__STATEMENT_TIMEOUT", "2s"),
        ("FDC_SHUTDOWN__TIMEOUT", "2s"),
    ];
    let mut survivor = start_kernel(&env, "survivor", &opts);
    let mut doomed = start_kernel(&env, "doomed", &opts);
    survivor.wait_ready(WAIT).await.unwrap();
    doomed.wait_ready(WAIT).await.unwrap();

    let set = EventSet::new(4000, 40);
    publish(&redis, "events", &set.entries).await;
    let held = kill_holding_pending(&mut doomed, &redis).await;
    assert!(held > 0);

    let pg = env.pg().await;
    assert_all_stored_exactly(&pg, &redis, &set).await;
    assert_eq!(pending_of(&redis, "doomed").await, 0);
    let claimed = metric(survivor.http, "kernel_redis_claimed_total").await;
    assert!(
        claimed >= held as f64,
        "survivor claimed {claimed}, the dead replica held {held}"
    );
}
