//! End to end through the library: real Redis, real Postgres, exact counts.

use std::time::Duration;

use crate::support::*;
use fdc_kernel::service;
use serde_json::json;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

/// Waits until `events` holds exactly `n` rows (not distinct ids: duplicates count); returns
/// the last count.
async fn wait_events(pg: &sqlx::PgPool, n: i64) -> i64 {
    wait_for(WAIT, n, || count(pg, "SELECT count(*) FROM events")).await
}

fn tags_for(i: usize) -> Vec<(String, String)> {
    (0..3)
        .map(|k| (format!("k{k}"), format!("v{}", (i + k) % 7)))
        .collect()
}

#[tokio::test]
async fn n_events_in_n_rows_out_with_subjects_and_tags() {
    let (env, kernel, redis) = env_with_kernel().await;
    let now = now_ns();
    let entries: Vec<_> = (0..600)
        .map(|i| {
            let tags = tags_for(i);
            let tag_refs: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            data_fields(
                Uuid::now_v7(),
                now - i as i64,
                Some(&format!("subject-{}", i % 10)),
                &tag_refs,
                json!({"n": i, "s": "x", "nested": {"a": [1, 2]}}),
            )
        })
        .collect();
    publish(&redis, "events", &entries).await;

    let pg = env.pg().await;
    let stored = wait_events(&pg, 600).await;
    assert_eq!(stored, 600);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_index").await, 600);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_tags").await, 1800);
    assert_eq!(count(&pg, "SELECT count(*) FROM subjects").await, 10);
    // k0..k2 each take 7 values.
    assert_eq!(count(&pg, "SELECT count(*) FROM tags").await, 21);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events e JOIN subjects s USING (subject_id) WHERE s.subject_key = 'subject-3'").await,
        60
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events WHERE (payload->>'n')::int = 599 AND consumer LIKE 'test-%' AND source_stream = 'events'").await,
        1
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(xlen(&redis, "events:dlq").await, 0);

    let (status, body) = http_get(kernel.http_addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_metrics(
        &body,
        &[
            ("kernel_redis_read_total", 600.0),
            ("kernel_redis_ack_total", 600.0),
            ("kernel_events_stored_total", 600.0),
            ("kernel_events_duplicate_total", 0.0),
            ("kernel_redis_dlq_total{reason=\"bad_type\"}", 0.0),
        ],
    );
    let (status, _) = http_get(kernel.http_addr, "/readyz").await;
    assert_eq!(status, 200);
    let (status, _) = http_get(kernel.http_addr, "/healthz").await;
    assert_eq!(status, 200);
    kernel.shutdown().await;
}

#[tokio::test]
async fn exact_nanoseconds_and_microsecond_timestamp_are_kept() {
    let (env, kernel, redis) = env_with_kernel().await;
    let ts = now_ns() / 1_000_000_000 * 1_000_000_000 + 123_456_789;
    publish(
        &redis,
        "events",
        &[data_fields(Uuid::now_v7(), ts, None, &[], json!({}))],
    )
    .await;
    let pg = env.pg().await;
    assert_eq!(wait_events(&pg, 1).await, 1);
    assert_eq!(count(&pg, "SELECT ts_ns FROM events").await, ts);
    assert_eq!(
        count(
            &pg,
            "SELECT (extract(epoch FROM ts) * 1000000)::bigint FROM events"
        )
        .await,
        ts / 1000
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events WHERE subject_id IS NULL").await,
        1
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn duplicate_ids_are_stored_once_and_counted() {
    let (env, kernel, redis) = env_with_kernel().await;
    let now = now_ns();
    let ids: Vec<Uuid> = (0..100).map(|_| Uuid::now_v7()).collect();
    let entries: Vec<_> = ids
        .iter()
        .map(|id| data_fields(*id, now, Some("s"), &[("a", "b")], json!({"v": 1})))
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    assert_eq!(wait_events(&pg, 100).await, 100);
    // The same ids again, as new entries (a producer retrying), and within one batch twice.
    publish(&redis, "events", &entries).await;
    publish(&redis, "events", &entries[..10]).await;
    let dupes = wait_for(WAIT, Some(110.0), || {
        metric_at(kernel.http_addr, "kernel_events_duplicate_total")
    })
    .await;
    assert_eq!(dupes, Some(110.0));
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 100);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_tags").await, 100);
    assert_eq!(count(&pg, "SELECT count(*) FROM event_index").await, 100);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn each_invalid_input_class_lands_in_the_dlq_with_its_reason() {
    let (env, kernel, redis) = env_with_kernel().await;
    let now = now_ns();
    let valid = || data_fields(Uuid::now_v7(), now, None, &[], json!({"ok": true}));
    let with = |name: &str, value: &str| {
        let mut f = valid();
        f.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_string();
        f.push(("token".into(), "tok-SECRET-123".into()));
        f
    };
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("bad_type", with("type", "bogus")),
        ("bad_version", with("version", "2.0.0")),
        ("bad_id", with("id", "not-a-uuid")),
        ("bad_ts", with("ts", "yesterday")),
        ("bad_ts", with("ts", &(now + 3_600_000_000_000).to_string())),
        ("bad_data", with("data", "{not json")),
        ("bad_payload", with("data", r#"{"payload":[1,2]}"#)),
        (
            "bad_tags",
            with(
                "data",
                &format!(r#"{{"tags":{{"k":"{}"}},"payload":{{}}}}"#, "v".repeat(300)),
            ),
        ),
        (
            "too_large",
            with(
                "data",
                &format!(r#"{{"payload":{{"x":"{}"}}}}"#, "a".repeat(70_000)),
            ),
        ),
        ("bad_direction", with("type", "ack")),
        ("bad_direction", with("type", "error")),
        ("missing_field", valid().into_iter().skip(1).collect()),
    ];
    let mut entries: Vec<Vec<(String, String)>> = cases.iter().map(|(_, f)| f.clone()).collect();
    entries.extend((0..5).map(|_| valid()));
    let source_ids = publish(&redis, "events", &entries).await;

    let dead = wait_for(WAIT, cases.len() as i64, || xlen(&redis, "events:dlq")).await;
    assert_eq!(dead, cases.len() as i64);
    let pg = env.pg().await;
    assert_eq!(wait_events(&pg, 5).await, 5);
    let letters = read_stream(&redis, "events:dlq").await;
    for (i, (reason, _)) in cases.iter().enumerate() {
        let letter = letters
            .iter()
            .find(|l| l.get("source_id") == Some(&source_ids[i]))
            .unwrap_or_else(|| panic!("no dead letter for case {i} ({reason})"));
        assert_eq!(
            letter.get("error").map(String::as_str),
            Some(*reason),
            "case {i}"
        );
        assert_eq!(
            letter.get("source_stream").map(String::as_str),
            Some("events")
        );
        assert!(!letter.get("detail").unwrap().is_empty());
        assert!(
            !letter.contains_key("token"),
            "token copied to DLQ in case {i}"
        );
        assert!(letter.values().all(|v| !v.contains("SECRET")));
    }
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    let (_, body) = http_get(kernel.http_addr, "/metrics").await;
    assert_metrics(
        &body,
        &[
            ("kernel_redis_dlq_total{reason=\"bad_direction\"}", 2.0),
            ("kernel_redis_dlq_total{reason=\"bad_ts\"}", 2.0),
            ("kernel_redis_dlq_total{reason=\"too_large\"}", 1.0),
        ],
    );
    kernel.shutdown().await;
}

#[tokio::test]
async fn heartbeats_and_controls_are_acknowledged_without_storing() {
    let (env, kernel, redis) = env_with_kernel().await;
    let envelope = |kind: &str| {
        vec![
            ("type".to_string(), kind.to_string()),
            ("version".into(), "1.0.0".into()),
            ("id".into(), Uuid::now_v7().to_string()),
            ("ts".into(), now_ns().to_string()),
        ]
    };
    publish(
        &redis,
        "events",
        &[
            envelope("heartbeat"),
            envelope("control"),
            envelope("heartbeat"),
        ],
    )
    .await;
    let acked = wait_for(WAIT, Some(3.0), || {
        metric_at(kernel.http_addr, "kernel_redis_ack_total")
    })
    .await;
    assert_eq!(acked, Some(3.0));
    let (_, body) = http_get(kernel.http_addr, "/metrics").await;
    assert_metrics(
        &body,
        &[
            ("kernel_heartbeats_total", 2.0),
            ("kernel_control_total", 1.0),
        ],
    );
    let pg = env.pg().await;
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 0);
    assert_eq!(xlen(&redis, "events:dlq").await, 0);
    kernel.shutdown().await;
}

#[tokio::test]
async fn partitions_are_created_across_a_day_boundary() {
    let (env, kernel, redis) = env_with_kernel().await;
    let midnight = now_ns().div_euclid(DAY_NS) * DAY_NS;
    let times = [
        midnight - 3 * DAY_NS,
        midnight - 1,
        midnight - 1,
        midnight,
        midnight + 1_000,
    ];
    let entries: Vec<_> = times
        .iter()
        .map(|ts| data_fields(Uuid::now_v7(), *ts, None, &[("k", "v")], json!({})))
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    assert_eq!(wait_events(&pg, 5).await, 5);
    let day = |offset: i64| fdc_kernel::store::day_name(midnight.div_euclid(DAY_NS) + offset);
    for (offset, n) in [(-3, 1), (-1, 2), (0, 2)] {
        let events = format!("SELECT count(*) FROM events_p{}", day(offset));
        let tags = format!(
            "SELECT coalesce(sum(cardinality(tag_ids)), 0) FROM events_p{}",
            day(offset)
        );
        assert_eq!(count(&pg, &events).await, n, "events partition {offset}");
        assert_eq!(
            count(&pg, &tags).await,
            n,
            "tags in events partition {offset}"
        );
    }
    // Today plus the default two days ahead exist before any event needs them.
    let ahead = format!("SELECT count(*) FROM events_p{}", day(2));
    assert_eq!(count(&pg, &ahead).await, 0);
    kernel.shutdown().await;
}

#[tokio::test]
async fn two_kernels_in_one_group_share_the_work_without_duplicates() {
    let env = TestEnv::start().await.unwrap();
    let mut config = env.config();
    config.ingest.batch_max_size = 50;
    let a = service::start(config.clone()).await.unwrap();
    config.ingest.consumer = Some("second".into());
    let b = service::start(config).await.unwrap();
    let redis = env.redis_conn().await;
    let now = now_ns();
    let entries: Vec<_> = (0..4000)
        .map(|i| data_fields(Uuid::now_v7(), now, Some("s"), &[], json!({"i": i})))
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    assert_eq!(wait_events(&pg, 4000).await, 4000);
    let stored_by = |kernel: &service::RunningKernel| {
        let addr = kernel.http_addr;
        async move {
            let (_, body) = http_get(addr, "/metrics").await;
            (
                metric_value(&body, "kernel_events_stored_total").unwrap(),
                metric_value(&body, "kernel_events_duplicate_total").unwrap(),
            )
        }
    };
    let (sa, da) = stored_by(&a).await;
    let (sb, db) = stored_by(&b).await;
    assert_eq!(sa + sb, 4000.0);
    assert_eq!(da + db, 0.0, "no entry was delivered to both kernels");
    assert!(sa > 0.0 && sb > 0.0, "both kernels took work: {sa} / {sb}");
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT consumer) FROM events").await,
        2
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    a.shutdown().await;
    b.shutdown().await;
}
