//! Stream patterns on one Redis: `ingest.streams: ["events:*"]` reads the streams that exist
//! when the kernel starts and those created later, without a restart; the kernel's own
//! dead-letter and re-publish streams match the pattern but are never read as sources.

use std::time::Duration;

use crate::fault_support::{
    assert_stored_once, start_ready, wait_metric_at_least, wait_stored, EventSet, WAIT,
};
use crate::support::*;
use uuid::Uuid;

/// The groups of `stream` (empty when none, or the key is absent).
async fn groups(conn: &redis::aio::MultiplexedConnection, stream: &str) -> usize {
    let mut conn = conn.clone();
    let reply: redis::RedisResult<Vec<redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(&mut conn)
        .await;
    reply.map(|groups| groups.len()).unwrap_or(0)
}

async fn key_type(conn: &redis::aio::MultiplexedConnection, key: &str) -> String {
    let mut conn = conn.clone();
    redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_created_after_start_is_drained_and_dead_letter_streams_are_not_read() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    // Before the kernel: a stream of events, a dead-letter stream left by an earlier run, and
    // a key of another type that the pattern matches.
    let early = EventSet::new(200, 25);
    publish(&redis, "events:early", &early.entries).await;
    let stale = EventSet::new(5, 0);
    publish(&redis, "events:old:dlq", &stale.entries).await;
    occupy_key(&redis, "events:string", "not a stream").await;

    let mut config = env.config();
    config.ingest.streams = vec!["events:*".into()];
    config.ingest.discover_interval = Duration::from_millis(200);
    // Re-publish into a stream the pattern matches: it must not be read back.
    config.republish.enabled = true;
    config.republish.stream = "events:stored".into();
    let kernel = start_ready(config).await;
    let pg = env.pg().await;
    assert_eq!(wait_stored(&pg, 200).await, 200, "the early stream drained");

    // After start: a new stream, with entries that are dead-lettered into events:late:dlq.
    let late = EventSet::new(300, 30);
    publish(&redis, "events:late", &late.entries).await;
    let sent: Vec<Uuid> = early.ids.iter().chain(&late.ids).copied().collect();
    assert_stored_once(&pg, &sent).await;
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE source_stream = 'events:late'"
        )
        .await,
        300
    );
    for (stream, set) in [("events:early", &early), ("events:late", &late)] {
        assert_eq!(
            wait_for(WAIT, 0, || pending(&redis, stream, "kernel")).await,
            0,
            "{stream}: entries left pending"
        );
        let letters = read_stream(&redis, &format!("{stream}:dlq")).await;
        assert_eq!(letters.len(), set.invalid, "dead letters of {stream}");
    }
    assert_eq!(
        wait_for(WAIT, sent.len() as i64, || xlen(&redis, "events:stored")).await,
        sent.len() as i64,
        "every event re-published"
    );

    // Several discovery passes after the dead-letter and re-publish streams exist: still
    // two streams read, and none of the kernel's own streams has the group.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_streams_read").await,
        Some(2.0)
    );
    for own in [
        "events:early:dlq",
        "events:late:dlq",
        "events:old:dlq",
        "events:stored",
    ] {
        assert_eq!(groups(&redis, own).await, 0, "{own} was read as a source");
    }
    assert_eq!(
        read_stream(&redis, "events:old:dlq").await.len(),
        5,
        "the stale dead letters stay as they were"
    );
    assert_eq!(key_type(&redis, "events:late:dlq:dlq").await, "none");
    assert_eq!(key_type(&redis, "events:string").await, "string");
    kernel.shutdown().await;
}

/// A failing look-up (here Redis refuses `SCAN` to the kernel's user) is retried every
/// interval and never stops the reads of the listed streams; once `SCAN` is allowed, the
/// stream that appeared meanwhile is found and drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_look_up_is_retried_and_the_listed_streams_are_read_meanwhile() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let acl = |rules: &'static [&'static str]| {
        let mut conn = redis.clone();
        async move {
            let _: () = redis::cmd("ACL")
                .arg(&["SETUSER", "kernel"][..])
                .arg(rules)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    acl(&["on", ">kernel-pw", "~*", "&*", "+@all", "-scan"]).await;
    let mut config = env.config();
    config.redis.url = format!("redis://kernel:kernel-pw@127.0.0.1:{}/", env.redis.port());
    config.ingest.streams = vec!["events".into(), "events:*".into()];
    config.ingest.discover_interval = Duration::from_millis(200);
    let kernel = start_ready(config).await;
    let pg = env.pg().await;

    let late = EventSet::new(120, 0);
    publish(&redis, "events:late", &late.entries).await;
    let listed = EventSet::new(80, 0);
    publish(&redis, "events", &listed.entries).await;
    assert_eq!(wait_stored(&pg, 80).await, 80, "the listed stream is read");
    let errors = wait_metric_at_least(kernel.http_addr, "kernel_redis_errors_total", 2.0).await;
    assert!(errors >= 2.0, "look-ups failed and were retried: {errors}");
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE source_stream = 'events:late'"
        )
        .await,
        0
    );
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_streams_read").await,
        Some(1.0)
    );

    acl(&["+scan"]).await;
    assert_eq!(wait_stored(&pg, 200).await, 200, "found once SCAN works");
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE source_stream = 'events:late'"
        )
        .await,
        120
    );
    assert_eq!(
        metric_at(kernel.http_addr, "kernel_streams_read").await,
        Some(2.0)
    );
    assert_eq!(http_get(kernel.http_addr, "/readyz").await.0, 200);
    kernel.shutdown().await;
}
