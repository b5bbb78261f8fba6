//! Payload shape bounds end to end: too deeply nested payloads and a `data` without
//! `payload` are dead-lettered as `bad_payload` before Postgres sees them.

mod fault_support;

use fault_support::*;
use fdc_kernel::testsupport::*;
use uuid::Uuid;

/// A `data` entry whose `data` field is `data` verbatim.
fn entry_with_data(data: String) -> (Uuid, Vec<(String, String)>) {
    let id = Uuid::now_v7();
    let mut fields = data_fields(id, now_ns(), None, &[], serde_json::json!({}));
    fields.iter_mut().find(|(k, _)| k == "data").unwrap().1 = data;
    (id, fields)
}

/// `{"payload":{"a":{"a":…{}}}}` with the payload `levels` deep.
fn nested(levels: usize) -> String {
    format!(
        r#"{{"payload":{}{}}}"#,
        r#"{"a":"#.repeat(levels - 1) + "{}",
        "}".repeat(levels - 1)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_payloads_and_missing_payloads_are_bad_payload_dead_letters() {
    let env = TestEnv::start().await.unwrap();
    let mut config = env.config();
    config.limits.max_json_depth = 64;
    let kernel = start_ready(config).await;
    let redis = env.redis_conn().await;
    let pg = env.pg().await;

    let (ok_id, at_limit) = entry_with_data(nested(64));
    let (_, over) = entry_with_data(nested(65));
    let (_, far_over) = entry_with_data(nested(3_000));
    let (_, no_payload) = entry_with_data(r#"{"subject":"s"}"#.into());
    let sources = publish(&redis, "events", &[at_limit, over, far_over, no_payload]).await;

    assert_eq!(wait_stored(&pg, 1).await, 1);
    let stored: Uuid = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(stored, ok_id);
    assert_eq!(
        wait_for(WAIT, 3, || xlen(&redis, "events:dlq")).await,
        3,
        "dead letters"
    );
    let letters = read_stream(&redis, "events:dlq").await;
    for (letter, source) in letters.iter().zip(&sources[1..]) {
        assert_eq!(letter["error"], "bad_payload", "{:?}", letter["detail"]);
        assert_eq!(&letter["source_id"], source);
    }
    assert!(letters[0]["detail"].contains("limits.max_json_depth = 64"));
    assert!(letters[2]["detail"].contains("no `payload`"));
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(
        metric(
            kernel.http_addr,
            "kernel_redis_dlq_total{reason=\"bad_payload\"}"
        )
        .await,
        3.0
    );
    assert_eq!(
        metric(kernel.http_addr, "kernel_pg_errors_total{kind=\"data\"}").await,
        0.0
    );
    kernel.shutdown().await;
}

/// Escapes Postgres `jsonb` refuses (a lone UTF-16 surrogate, `\u0000`) are `bad_payload`
/// dead letters before Postgres sees them, so they never fail a batch (no batch splitting); an
/// escaped backslash before `u0000` and a surrogate pair are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_with_escapes_postgres_refuses_are_bad_payload_dead_letters() {
    let env = TestEnv::start().await.unwrap();
    let kernel = start_ready(env.config()).await;
    let redis = env.redis_conn().await;
    let pg = env.pg().await;

    let (pair_id, pair) = entry_with_data(r#"{"payload":{"a":"\ud83d\ude00"}}"#.into());
    let (text_id, text) = entry_with_data(r#"{"payload":{"a":"\\u0000"}}"#.into());
    let (_, high) = entry_with_data(r#"{"payload":{"a":"\ud800"}}"#.into());
    let (_, low) = entry_with_data(r#"{"payload":{"a":"x\udc00y"}}"#.into());
    let (_, nul) = entry_with_data(r#"{"payload":{"\u0000":1}}"#.into());
    let sources = publish(&redis, "events", &[pair, high, text, low, nul]).await;

    assert_eq!(wait_stored(&pg, 2).await, 2);
    let mut stored: Vec<Uuid> = sqlx::query_scalar("SELECT event_id FROM events")
        .fetch_all(&pg)
        .await
        .unwrap();
    stored.sort();
    let mut want = vec![pair_id, text_id];
    want.sort();
    assert_eq!(stored, want);
    assert_eq!(wait_for(WAIT, 3, || xlen(&redis, "events:dlq")).await, 3);
    let letters = read_stream(&redis, "events:dlq").await;
    let mut dead: Vec<&String> = letters.iter().map(|l| &l["source_id"]).collect();
    dead.sort();
    let mut want = vec![&sources[1], &sources[3], &sources[4]];
    want.sort();
    assert_eq!(dead, want);
    for letter in &letters {
        assert_eq!(letter["error"], "bad_payload", "{:?}", letter["detail"]);
    }
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(
        metric(kernel.http_addr, "kernel_pg_errors_total{kind=\"data\"}").await,
        0.0
    );
    kernel.shutdown().await;
}
