//! Payloads of bound producers are validated (drafts 7 and 2020-12); unbound producers are
//! not. Exact counts in Postgres and in the dead-letter stream.

use serde_json::json;
use uuid::Uuid;

use crate::support::*;
use crate::*;

#[tokio::test]
async fn bound_producers_are_validated_across_drafts_and_unbound_ones_are_not() {
    let (k, admin, pg, redis) = kernel_with_clients().await;
    let v1 = admin.add("orders", "1.0.0", orders_v1()).await;
    let v2 = admin
        .add(
            "orders",
            "2.0.0",
            json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "required": ["order_id", "lines"],
                "properties": {
                    "order_id": {"type": "string"},
                    "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}}
                },
                "unevaluatedProperties": false
            }),
        )
        .await;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    create_producers(&pg, &[a, b, c]).await;
    assert_eq!(admin.bind(a, Some("orders@1.0.0")).await.0, 200);
    let (status, answer) = admin.bind(b, Some("orders@^2")).await;
    assert_eq!(
        (status, answer),
        (200, json!({"producer_id": b, "schema": "orders@^2"}))
    );

    let (ta, tb, tc) = (k.token(a, "a"), k.token(b, "b"), k.token(c, "c"));
    let mut entries = Vec::new();
    for n in 1..=3 {
        entries.push(entry(Some(&ta), json!({"order_id": "o", "qty": n})));
    }
    entries.push(entry(Some(&ta), json!({"order_id": "o", "qty": 0})));
    entries.push(entry(Some(&ta), json!({"qty": 1})));
    for _ in 0..4 {
        entries.push(entry(
            Some(&tb),
            json!({"order_id": "o", "lines": [{"sku": "x"}]}),
        ));
    }
    entries.push(entry(
        Some(&tb),
        json!({"order_id": "o", "lines": [{"qty": 1}]}),
    ));
    entries.push(entry(
        Some(&tb),
        json!({"order_id": "o", "lines": [], "extra": 1}),
    ));
    entries.push(entry(Some(&tc), json!({"anything": true})));
    entries.push(entry(Some(&tc), json!({"qty": "not a number"})));
    publish(&redis, "events", &entries).await;

    wait_settled(&k, 3 + 4 + 2, 4).await;
    assert_eq!(stored_with(&pg, Some(v1)).await, 3);
    assert_eq!(stored_with(&pg, Some(v2)).await, 4);
    assert_eq!(stored_with(&pg, None).await, 2);
    let details = schema_dead_letters(&redis).await;
    let expected = [
        format!(
            r#"payload does not match schema orders@1.0.0 (schema_id {v1}): at "/qty", keyword "minimum": "#
        ),
        format!(
            r#"payload does not match schema orders@1.0.0 (schema_id {v1}): at "", keyword "required": "#
        ),
        format!(
            r#"payload does not match schema orders@2.0.0 (schema_id {v2}): at "/lines/0", keyword "required": "#
        ),
        format!(
            r#"payload does not match schema orders@2.0.0 (schema_id {v2}): at "", keyword "unevaluatedProperties": "#
        ),
    ];
    assert_eq!(details.len(), expected.len());
    for want in &expected {
        assert_eq!(
            details
                .iter()
                .filter(|d| d.starts_with(want.as_str()))
                .count(),
            1,
            "{want} in {details:#?}"
        );
    }
    assert_eq!(
        k.metric(r#"kernel_redis_dlq_total{reason="schema"}"#).await,
        4.0
    );
}
