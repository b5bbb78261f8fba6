//! Fault 2: the kernel process SIGKILLed mid-batch and started again under the
//! same consumer name: it re-reads its own pending entries; nothing is lost,
//! nothing stored twice.

use crate::fault_support::*;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_killed_mid_batch_resumes_its_pending_entries() {
    let env = fault_env().await;
    let redis = env.redis_conn().await;
    let opts = [("FDC_INGEST__BATCH_MAX_SIZE", "200")];
    let mut kernel = start_kernel(&env, "k1", &opts);
    kernel.wait_ready(WAIT).await.unwrap();

    let set = EventSet::new(4000, 40);
    publish(&redis, "events", &set.entries).await;
    let pg = env.pg().await;
    assert!(wait_stored_at_least(&pg, 1).await >= 1);
    // Dies with a batch in hand: read, maybe written, not acknowledged.
    let held = kill_holding_pending(&mut kernel, &redis).await;
    assert!(held > 0);
    let stored_at_kill = count(&pg, "SELECT count(*) FROM events").await;
    assert!(
        (stored_at_kill as usize) < set.ids.len(),
        "the kill came too late to test anything"
    );

    let kernel = start_kernel(&env, "k1", &opts);
    assert_all_stored_exactly(&pg, &redis, &set).await;
    drop(kernel);
}
