//! Postgres switchover: the primary is stopped while events flow and its streaming replica is
//! promoted. The kernel, given both servers in one URL with `target_session_attrs=read-write`,
//! spills while neither accepts writes (the standby's read-only refusals are an outage, never a
//! dead letter), then follows the new primary; every event is stored there exactly once.

use std::time::Duration;

use crate::fault_support::*;
use crate::support::*;
use fdc_kernel::service;
use fdc_testenv::{kernel_config, PostgresPair, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_promoted_after_primary_stops_takes_every_event_once() {
    let _serial = serial().await;
    let (redis, pair) = tokio::join!(RedisServer::start(), PostgresPair::start());
    let (redis_server, mut pair) = (redis.unwrap(), pair.unwrap());
    let spill_dir = tempfile::tempdir().unwrap();
    let mut config = kernel_config(&redis_server.url(), &pair.multi_host_url());
    spill_through_outages(&mut config, spill_dir.path());
    let kernel = service::start(config).await.unwrap();
    let redis = redis_conn_at(&redis_server.url()).await;
    let old_primary = pg_pool_at(&pair.primary.url()).await;

    let set = EventSet::new(3000, 0);
    let (first, rest) = set.entries.split_at(1000);
    publish(&redis, "events", first).await;
    assert!(wait_stored_at_least(&old_primary, 1).await >= 1);
    old_primary.close().await;

    pair.primary.stop();
    let a = kernel.http_addr;
    publish_through_outage(
        &redis,
        a,
        rest,
        "no server accepts writes (only a standby answers)",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    pair.promote().await.unwrap();
    let new_primary = pg_pool_at(&pair.replica.url()).await;
    assert_eq!(
        wait_stored(&new_primary, set.ids.len()).await,
        set.ids.len() as i64
    );
    assert_eq!(
        wait_for(WAIT, 0.0, || metric(a, "kernel_spill_pending_records")).await,
        0.0
    );
    // Stored once each on the new primary, nothing pending, nothing dead-lettered.
    assert_exact(&new_primary, &redis, &set).await;
    let written = metric(a, "kernel_spill_records_written_total").await;
    assert_eq!(
        metric(a, "kernel_spill_records_replayed_total").await,
        written
    );
    kernel.shutdown().await;
}

/// A batch sent to a standby fails as an outage (retried or spilled, never dead-lettered);
/// with both servers in the URL, standby first, the store writes to the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_an_outage_and_the_writable_server_is_chosen() {
    use fdc_common::config::PostgresConfig;
    use fdc_kernel::protocol::{EntryRef, Event};
    use fdc_kernel::retry::{Classify, Failure};
    use fdc_kernel::store::Store;

    let _serial = serial().await;
    let pair = PostgresPair::start().await.unwrap();
    let config = |url: String| PostgresConfig {
        url,
        connect_timeout: Duration::from_secs(2),
        ..PostgresConfig::default()
    };
    let primary = Store::connect_lazy(&config(pair.primary.url()), "test").unwrap();
    primary.migrate().await.unwrap();
    pair.wait_caught_up(Duration::from_secs(30)).await.unwrap();
    let event = |i: usize| Event {
        id: uuid::Uuid::now_v7(),
        ts_ns: now_ns(),
        subject: Some("s".into()),
        tags: [("k", "v")].into_iter().collect(),
        payload: "{}".into(),
        source: EntryRef {
            stream: "events".into(),
            id: format!("1-{i}").into(),
        },
        producer_id: None,
        schema_id: None,
    };

    let standby = Store::connect_lazy(&config(pair.replica.url()), "test").unwrap();
    let err = standby.write_batch(&[event(0)]).await.unwrap_err();
    assert_eq!(err.classify(), Failure::Outage, "{err}");
    assert!(err.to_string().contains("read-only"), "{err}");

    let url = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write",
        pair.replica.port(),
        pair.primary.port()
    );
    let either = Store::connect_lazy(&config(url), "test").unwrap();
    let outcome = either.write_batch(&[event(1), event(2)]).await.unwrap();
    assert_eq!(outcome.stored.len(), 2);
    assert_eq!(
        either.endpoint().unwrap().to_string(),
        format!("127.0.0.1:{}", pair.primary.port())
    );
    let on_primary = pg_pool_at(&pair.primary.url()).await;
    assert_eq!(count(&on_primary, "SELECT count(*) FROM events").await, 2);
}
