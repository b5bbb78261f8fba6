//! Auth during a Postgres outage: the auth step must not stand between the writer and its
//! spill. Producers whose revocation state is cached (even past `auth.cache_ttl`) are decided
//! from it and their batches spill; entries of a producer never seen stay pending (neither
//! acknowledged nor dead-lettered) until Postgres is back. Every event ends up stored exactly
//! once with the producer id of its token.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::auth_support::{AuthKernel, Options};
use crate::fault_support::{
    metric, spill_through_outages, wait_metric_at_least, wait_stored, WAIT,
};
use crate::support::*;
use fdc_common::config::Config;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Entries with a token each, and the producer every event id must be stored with.
#[derive(Default)]
struct Sent {
    entries: Vec<Vec<(String, String)>>,
    producer_of: HashMap<Uuid, Uuid>,
}

impl Sent {
    fn add(&mut self, producer: Uuid, token: &str, n: usize) -> Vec<Vec<(String, String)>> {
        let now = now_ns();
        let mut out = Vec::new();
        for i in 0..n {
            let id = Uuid::now_v7();
            let mut f = data_fields(
                id,
                now - i as i64,
                Some(&format!("subject-{}", i % 20)),
                &[("k", &format!("v{}", i % 5))],
                json!({ "n": i }),
            );
            f.push(("token".into(), token.into()));
            self.producer_of.insert(id, producer);
            out.push(f.clone());
            self.entries.push(f);
        }
        out
    }

    /// Each sent id stored exactly once, nothing else, with the right producer id; nothing
    /// pending; an empty DLQ; no entry denied.
    async fn assert_exact(&self, k: &AuthKernel, pg: &PgPool, redis: &MultiplexedConnection) {
        let rows: Vec<(Uuid, Option<Uuid>)> =
            sqlx::query_as("SELECT event_id, producer_id FROM events")
                .fetch_all(pg)
                .await
                .unwrap();
        let distinct: HashSet<Uuid> = rows.iter().map(|(id, _)| *id).collect();
        assert_eq!(rows.len(), distinct.len(), "an event id is stored twice");
        assert_eq!(rows.len(), self.producer_of.len(), "stored vs sent");
        for (id, producer) in &rows {
            assert_eq!(
                producer.as_ref(),
                self.producer_of.get(id),
                "event {id} stored with the wrong producer"
            );
        }
        assert_eq!(
            wait_for(WAIT, 0, || pending(redis, "events", "kernel")).await,
            0,
            "entries left pending"
        );
        assert_eq!(xlen(redis, "events:dlq").await, 0, "DLQ is empty");
        assert_eq!(denied_total(k).await, 0.0, "nothing denied");
    }
}

async fn denied_total(k: &AuthKernel) -> f64 {
    let body = k.metrics().await;
    fdc_kernel::auth::metrics::DENIED_WHY
        .iter()
        .map(|why| {
            metric_value(&body, &format!("kernel_auth_denied_total{{why=\"{why}\"}}"))
                .unwrap_or(0.0)
        })
        .sum()
}

/// Auth on, spill on, a short revocation cache (so it is past `cache_ttl` during the outage)
/// and short Postgres timeouts, like the spill fault tests.
/// Returns the kernel and its spill directory.
async fn start() -> (tempfile::TempDir, AuthKernel) {
    let spill_dir = tempfile::tempdir().unwrap();
    let dir = spill_dir.path().to_path_buf();
    let k = AuthKernel::start_with(
        TestEnv::start().await.unwrap(),
        Options {
            cache_ttl: Duration::from_secs(1),
            ..Options::default()
        },
        move |c: &mut Config| spill_through_outages(c, &dir),
    )
    .await;
    (spill_dir, k)
}

async fn stored_by(pg: &PgPool, producer: Uuid) -> i64 {
    count(
        pg,
        &format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'"),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_producers_spill_through_a_postgres_outage() {
    let (_spill_dir, mut k) = start().await;
    let a = k.kernel.http_addr;
    let (redis, pg) = k.clients().await;
    let producers: Vec<(Uuid, String)> = (0..3)
        .map(|i| k.new_producer(&format!("sensor-{i}")))
        .collect();

    // Warm the cache: every producer verified once while Postgres is up.
    let mut sent = Sent::default();
    for (id, token) in &producers {
        let batch = sent.add(*id, token, 200);
        publish(&redis, "events", &batch).await;
    }
    assert_eq!(wait_stored(&pg, 600).await, 600);

    k.env.postgres.kill();
    let killed_at = chrono::Utc::now();
    // Live traffic while Postgres is gone: 2400 more events from the same producers.
    for round in 0..8 {
        for (id, token) in &producers {
            let batch = sent.add(*id, token, 100);
            publish(&redis, "events", &batch).await;
        }
        if round == 3 {
            // Past cache_ttl: from here the cached states are stale.
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wait_metric_at_least(a, "kernel_spill_records_written_total", 1.0).await >= 1.0);
    // Every entry was decided from the cache and spilled: nothing waits in Redis.
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0,
        "entries of cached producers left pending during the outage"
    );
    assert!(metric(a, "kernel_auth_stale_decisions_total").await >= 1.0);
    assert_eq!(metric(a, "kernel_auth_undecided_total").await, 0.0);
    assert_eq!(metric(a, "kernel_auth_parked_entries").await, 0.0);
    assert_eq!(xlen(&redis, "events:dlq").await, 0);
    tokio::time::sleep(Duration::from_secs(1)).await;

    k.env.postgres.restart().await.unwrap();
    let pg = k.env.pg().await;
    let total = sent.producer_of.len();
    assert_eq!(total, 3000);
    assert_eq!(wait_stored(&pg, total).await, total as i64);
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_spill_pending_records")).await,
        0.0
    );
    sent.assert_exact(&k, &pg, &redis).await;
    let written = metric(a, "kernel_spill_records_written_total").await;
    assert!(written >= 1.0, "the spill was used");
    assert_eq!(
        metric(a, "kernel_spill_records_replayed_total").await,
        written
    );
    // last_seen_at caught up after the outage with the times seen during it.
    let sql = format!(
        "SELECT count(*) FROM producers WHERE last_seen_at > '{}'::timestamptz",
        killed_at.to_rfc3339()
    );
    assert_eq!(wait_for(WAIT, 3, || count(&pg, &sql)).await, 3);
    k.kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_seen_producer_waits_pending_while_cached_ones_spill() {
    let (_spill_dir, mut k) = start().await;
    let a = k.kernel.http_addr;
    let (redis, pg) = k.clients().await;
    let (known, known_token) = k.new_producer("known");
    let (newcomer, newcomer_token) = k.new_producer("newcomer");

    let mut sent = Sent::default();
    let warm = sent.add(known, &known_token, 50);
    publish(&redis, "events", &warm).await;
    assert_eq!(wait_stored(&pg, 50).await, 50);

    k.env.postgres.kill();
    let mixed: Vec<_> = sent
        .add(known, &known_token, 300)
        .into_iter()
        .chain(sent.add(newcomer, &newcomer_token, 40))
        .collect();
    for chunk in mixed.chunks(100) {
        publish(&redis, "events", chunk).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(wait_metric_at_least(a, "kernel_spill_records_written_total", 1.0).await >= 1.0);
    // The known producer's entries spilled and were acknowledged; the newcomer's 40 wait.
    assert_eq!(
        wait_for(WAIT, 40, || pending(&redis, "events", "kernel")).await,
        40
    );
    assert_eq!(
        wait_for(WAIT, 40.0, || metric(a, "kernel_auth_parked_entries")).await,
        40.0
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pending(&redis, "events", "kernel").await,
        40,
        "still pending"
    );
    assert_eq!(xlen(&redis, "events:dlq").await, 0, "nothing dead-lettered");
    assert_eq!(metric(a, "kernel_auth_undecided_total").await, 40.0);
    assert_eq!(denied_total(&k).await, 0.0);

    k.env.postgres.restart().await.unwrap();
    let pg = k.env.pg().await;
    // Live traffic resumes: the parked entries are decided with the next batches.
    let deadline = std::time::Instant::now() + WAIT;
    while stored_by(&pg, newcomer).await < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "newcomer never stored"
        );
        let more = sent.add(known, &known_token, 5);
        publish(&redis, "events", &more).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let total = sent.producer_of.len();
    assert_eq!(wait_stored(&pg, total).await, total as i64);
    sent.assert_exact(&k, &pg, &redis).await;
    assert_eq!(stored_by(&pg, newcomer).await, 40);
    assert_eq!(metric(a, "kernel_auth_parked_entries").await, 0.0);
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM producers WHERE producer_id = '{newcomer}' AND name = 'newcomer'")
        )
        .await,
        1
    );
    k.kernel.shutdown().await;
}
