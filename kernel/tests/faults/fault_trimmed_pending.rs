//! Fault 7: entries trimmed from the stream while pending on a dead consumer.
//! Redis 7 drops them from the pending list when they are claimed; the
//! claimer counts them in a metric and carries on with the rest.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_kernel::service;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimmed_pending_entries_are_counted_and_never_crash_the_claimer() {
    let env = fault_env().await;
    let mut redis = env.redis_conn().await;
    let set = EventSet::new(2000, 40);

    // A consumer that read everything and died: all entries pending on it.
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "events", "kernel", "0", "MKSTREAM"])
        .query_async(&mut redis)
        .await
        .unwrap();
    let ids = publish(&redis, "events", &set.entries).await;
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg(&[
            "GROUP", "kernel", "ghost", "COUNT", "100000", "STREAMS", "events", ">",
        ])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(pending_of(&redis, "ghost").await, set.entries.len());

    // Trim the oldest 500 while they are still pending.
    let trimmed = 500;
    let _: i64 = redis::cmd("XTRIM")
        .arg("events")
        .arg("MINID")
        .arg(&ids[trimmed])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        xlen(&redis, "events").await as usize,
        set.entries.len() - trimmed
    );

    // What must survive: the entries after the trim point.
    let field = |fields: &Vec<(String, String)>, name: &str| {
        fields.iter().find(|(k, _)| k == name).unwrap().1.clone()
    };
    let mut survivors = EventSet {
        ids: Vec::new(),
        entries: Vec::new(),
        invalid: 0,
    };
    for fields in &set.entries[trimmed..] {
        if field(fields, "version") == "1.0.0" {
            survivors
                .ids
                .push(Uuid::parse_str(&field(fields, "id")).unwrap());
        } else {
            survivors.invalid += 1;
        }
    }

    let mut config = env.config();
    config.postgres.statement_timeout = Duration::from_secs(1);
    config.shutdown.timeout = Duration::from_secs(1);
    config.ingest.claim_idle = Duration::from_secs(2);
    config.ingest.claim_interval = Duration::from_millis(500);
    let kernel = service::start(config).await.unwrap();
    let a = kernel.http_addr;
    let pg = env.pg().await;

    assert_all_stored_exactly(&pg, &redis, &survivors).await;
    assert_eq!(pending_of(&redis, "ghost").await, 0);
    assert_eq!(
        metric(a, "kernel_redis_trimmed_total").await,
        trimmed as f64
    );
    assert_eq!(
        metric(a, "kernel_redis_claimed_total").await,
        (set.entries.len() - trimmed) as f64
    );
    kernel.shutdown().await;
}
