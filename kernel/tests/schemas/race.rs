//! A binding change racing batches in flight: a producer publishes without pause while the
//! version its range picks is deprecated and its binding moves from `^1` to `^2`. Every event
//! is decided against one version: stored with the schema_id of a version it conforms to, or a
//! dead letter naming a version it does not conform to; nothing is lost or decided twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;
use crate::*;

/// Long enough for every cached binding and version list to expire, with batches in flight.
const PHASE: Duration = Duration::from_millis(2 * TTL.as_millis() as u64 + 500);

/// The payload kinds the producer cycles through, and the versions each conforms to:
/// 1.0.0 takes an order of any positive quantity, 1.1.0 at most 10, 2.0.0 requires a currency
/// (1.x allow no other keys).
const KINDS: [(&str, &[&str]); 4] = [
    ("small", &["1.0.0", "1.1.0"]),
    ("large", &["1.0.0"]),
    ("euro", &["2.0.0"]),
    ("bad", &[]),
];

fn order(max_qty: Option<u64>, currency: bool) -> Value {
    let mut body = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["order_id", "qty"],
        "additionalProperties": false,
        "properties": {
            "order_id": {"type": "string"},
            "qty": {"type": "integer", "minimum": 1}
        }
    });
    if let Some(max) = max_qty {
        body["properties"]["qty"]["maximum"] = json!(max);
    }
    if currency {
        body["required"] = json!(["order_id", "qty", "currency"]);
        body["properties"]["currency"] = json!({"enum": ["EUR", "USD"]});
    }
    body
}

/// The payload of the producer's `n`th event; its kind is `KINDS[n % 4]`.
fn payload(n: usize) -> Value {
    let kind = KINDS[n % KINDS.len()].0;
    let order_id = format!("{kind}-{n}");
    match kind {
        "small" => json!({"order_id": order_id, "qty": 5}),
        "large" => json!({"order_id": order_id, "qty": 50}),
        "euro" => json!({"order_id": order_id, "qty": 5, "currency": "EUR"}),
        _ => json!({"order_id": order_id, "qty": 0}),
    }
}

/// Whether the event with this order id conforms to `version`.
fn conforms(order_id: &str, version: &str) -> bool {
    let kind = order_id.split('-').next().unwrap();
    let (_, versions) = KINDS.iter().find(|(k, _)| *k == kind).unwrap();
    versions.contains(&version)
}

#[tokio::test]
async fn a_binding_change_racing_batches_decides_each_event_against_one_version() {
    let (k, admin, pg, redis) = kernel_with_clients().await;
    let mut versions: HashMap<Uuid, &str> = HashMap::new();
    for (version, body) in [
        ("1.0.0", order(None, false)),
        ("1.1.0", order(Some(10), false)),
        ("2.0.0", order(None, true)),
    ] {
        versions.insert(admin.add("orders", version, body).await, version);
    }
    let p = Uuid::now_v7();
    create_producers(&pg, &[p]).await;
    let token = k.token(p, "p");
    assert_eq!(admin.bind(p, Some("orders@^1")).await.0, 200);

    // The producer: batches of 8 (two of each kind) every 10 ms until told to stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let producer = tokio::spawn({
        let redis = redis.clone();
        async move {
            let mut sent = 0;
            while !*stopped.borrow() {
                let batch: Vec<_> = (sent..sent + 8)
                    .map(|n| entry(Some(&token), payload(n)))
                    .collect();
                publish(&redis, "events", &batch).await;
                sent += batch.len();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        }
    });

    // `^1` picks 1.1.0; deprecated, `^1` falls back to 1.0.0; then the binding moves to `^2`.
    tokio::time::sleep(PHASE).await;
    let (status, answer) = admin
        .post(
            &fdc_common::contract::schema_deprecate_path("orders", "1.1.0"),
            json!({"reason": "qty limit was a mistake"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    tokio::time::sleep(PHASE).await;
    assert_eq!(admin.bind(p, Some("orders@^2")).await.0, 200);
    tokio::time::sleep(PHASE).await;
    stop.send(true).unwrap();
    let sent = producer.await.unwrap();
    assert!(sent >= 8, "the producer sent {sent} events");

    // Every event is decided exactly once: stored + dead letters = sent.
    let decided = wait_for(auth_support::WAIT, sent as i64, || async {
        count(&pg, "SELECT count(*) FROM events").await + xlen(&redis, "events:dlq").await
    })
    .await;
    assert_eq!(decided, sent as i64, "stored events + dead letters");

    // (kind, version, stored?) → how many; each order id seen once.
    let mut outcomes: BTreeMap<(String, &str, bool), usize> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let stored: Vec<(Value, Option<Uuid>, Option<Uuid>)> =
        sqlx::query_as("SELECT payload, schema_id, producer_id FROM events")
            .fetch_all(&pg)
            .await
            .unwrap();
    for (payload, schema_id, producer) in stored {
        assert_eq!(producer, Some(p));
        let order_id = payload["order_id"].as_str().unwrap().to_string();
        let schema_id = schema_id.unwrap_or_else(|| panic!("{order_id} stored unvalidated"));
        let version = versions[&schema_id];
        assert!(
            conforms(&order_id, version),
            "{order_id} stored as conforming to {version}"
        );
        let kind = order_id.split('-').next().unwrap().to_string();
        *outcomes.entry((kind, version, true)).or_default() += 1;
        *seen.entry(order_id).or_default() += 1;
    }
    for letter in read_stream(&redis, "events:dlq").await {
        assert_eq!(letter["error"], "schema", "{letter:?}");
        let data: Value = serde_json::from_str(&letter["data"]).unwrap();
        let order_id = data["payload"]["order_id"].as_str().unwrap().to_string();
        let detail = &letter["detail"];
        let (&schema_id, &version) = versions
            .iter()
            .find(|(id, _)| detail.contains(&format!("(schema_id {id})")))
            .unwrap_or_else(|| panic!("{detail} names no known schema_id"));
        assert!(
            detail.starts_with(&format!(
                "payload does not match schema orders@{version} (schema_id {schema_id}): at "
            )),
            "{detail}"
        );
        assert!(
            !conforms(&order_id, version),
            "{order_id} dead-lettered against {version}, which it conforms to"
        );
        let kind = order_id.split('-').next().unwrap().to_string();
        *outcomes.entry((kind, version, false)).or_default() += 1;
        *seen.entry(order_id).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = (0..sent)
        .map(|n| (payload(n)["order_id"].as_str().unwrap().to_string(), 1))
        .collect();
    assert_eq!(seen, expected, "each order id stored or dead-lettered once");

    // Each phase took effect while batches were in flight: 1.1.0 (large refused), 1.0.0 after
    // the deprecation (large stored), 2.0.0 after the rebinding (euro stored, small refused).
    for phase in [
        ("small", "1.1.0", true),
        ("large", "1.1.0", false),
        ("large", "1.0.0", true),
        ("euro", "2.0.0", true),
        ("small", "2.0.0", false),
    ] {
        let key = (phase.0.to_string(), phase.1, phase.2);
        assert!(outcomes.contains_key(&key), "no {phase:?} in {outcomes:?}");
    }
    let bad: usize = outcomes
        .iter()
        .filter(|((kind, _, stored), _)| kind == "bad" && !stored)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(bad, sent / 4, "every bad order is a dead letter");
}
