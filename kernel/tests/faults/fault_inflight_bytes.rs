//! Memory bound in bytes: with Postgres down and no spill the writer cannot finish anything,
//! and the reader stops once no further entry of `limits.max_entry_bytes` would fit under
//! `ingest.max_inflight_bytes`, never going over it, although the entry-count bound
//! (queue_batches × batch_max_size) would let it take everything.
//! The rest of the backlog stays in Redis, the entries held keep being refreshed (not idle to
//! other replicas), and once Postgres is back every entry is stored once.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;

/// `env`'s config with a queue of 100 batches, deeper than the byte bound lets the reader fill,
/// and Postgres connections that give up after 1 s.
fn deep_queue_config(env: &TestEnv) -> fdc_common::config::Config {
    let mut config = env.config();
    config.postgres.connect_timeout = Duration::from_secs(1);
    config.ingest.queue_batches = 100;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reader_holds_at_most_max_inflight_bytes() {
    let mut env = fault_env().await;
    let mut config = deep_queue_config(&env);
    config.ingest.writers = 1;
    let max_entry = config.limits.max_entry_bytes;
    let limit = 4 * max_entry;
    config.ingest.max_inflight_bytes = limit;
    // Short enough to pass while the reader waits: the entries it holds must not look idle.
    config.ingest.claim_idle = Duration::from_secs(3);
    config.postgres.statement_timeout = Duration::from_secs(1);
    config.shutdown.timeout = Duration::from_secs(2);
    let (kernel, redis) = start_ready_with_redis(&env, config).await;
    let a = kernel.http_addr;

    // 40 entries of about 8 KiB each: 320 KiB in all, more than the limit (256 KiB).
    let mut set = EventSet::new(40, 0);
    let filler = "x".repeat(8000);
    for entry in &mut set.entries {
        let data = entry.iter_mut().find(|(k, _)| k == "data").unwrap();
        let mut body: serde_json::Value = serde_json::from_str(&data.1).unwrap();
        body["payload"]["filler"] = filler.clone().into();
        data.1 = body.to_string();
    }
    let sizes: Vec<usize> = set
        .entries
        .iter()
        .map(|e| e.iter().map(|(k, v)| k.len() + v.len()).sum())
        .collect();
    // Bytes of the first n entries: the reader takes them in stream order.
    let first = |n: usize| sizes[..n].iter().sum::<usize>();

    let set = publish_during_outage(&mut env, &redis, set).await;
    // The reader reads until the room left is less than one entry of max_entry bytes.
    let stops_at = (1..=sizes.len())
        .find(|&n| first(n) > limit - max_entry)
        .unwrap() as i64;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut held = 0;
    while held < stops_at && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        held = pending(&redis, "events", "kernel").await;
    }
    let held = held as usize;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held_later = pending(&redis, "events", "kernel").await as usize;
    assert_eq!(held_later, held, "the reader stopped reading");
    assert!(
        first(held) <= limit && first(held) > limit - max_entry,
        "holds {held} entries ({} bytes); limit {limit}, max entry {max_entry}",
        first(held)
    );
    assert!(held < set.entries.len());
    assert_eq!(metric(a, "kernel_inflight_bytes").await, first(held) as f64);

    // Held for longer than claim_idle by now, yet refreshed while the reader waits: another
    // replica's claim sweep would not take them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle = idle_ms(&redis).await;
    assert_eq!(idle.len(), held);
    assert!(
        idle.iter().all(|&ms| ms < 3000),
        "idle times {idle:?} (claim_idle 3 s)"
    );

    end_outage(&mut env, &redis, &set).await;
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_inflight_bytes")).await,
        0.0
    );
    kernel.shutdown().await;
}

/// Idle time (ms) of every entry pending in the group (extended XPENDING).
async fn idle_ms(redis: &redis::aio::MultiplexedConnection) -> Vec<u64> {
    let mut conn = redis.clone();
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg("events")
        .arg("kernel")
        .arg("-")
        .arg("+")
        .arg(1000)
        .query_async(&mut conn)
        .await
        .unwrap();
    rows.into_iter().map(|(_, _, idle, _)| idle).collect()
}

/// Reads sized for the byte bound make chunks smaller than a batch; lanes merge queued chunks
/// into batches, and a batch must still never exceed `ingest.batch_max_size` (what does not
/// fit starts the next batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_chunks_never_make_a_batch_over_batch_max_size() {
    let mut env = fault_env().await;
    let mut config = deep_queue_config(&env);
    config.ingest.batch_max_size = 100;
    // Room for 60 entries of max size: reads of at most 60 entries.
    config.ingest.max_inflight_bytes = 60 * config.limits.max_entry_bytes;
    let (kernel, redis) = start_ready_with_redis(&env, config).await;
    let a = kernel.http_addr;

    // Postgres down while the backlog arrives: chunks pile up in the queue, so the lanes
    // merge several into each batch once it is back.
    let set = publish_during_outage(&mut env, &redis, EventSet::new(3000, 0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    end_outage(&mut env, &redis, &set).await;

    let batches = metric(a, "kernel_pg_batch_size_count").await;
    assert_eq!(metric(a, "kernel_pg_batch_size_sum").await, 3000.0);
    assert_eq!(
        metric(a, "kernel_pg_batch_size_bucket{le=\"100\"}").await,
        batches,
        "every batch at most 100 events"
    );
    // Merging happened: 3000 events in 60-entry chunks would be 50 batches.
    assert!(batches < 50.0, "{batches} batches");
    kernel.shutdown().await;
}
