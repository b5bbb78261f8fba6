//! Pathological schemas do not stall the kernel: a catastrophic pattern (`^(a+)+$` against
//! `aaaa…!`), a 100,000-entry `enum` and a recursive `$ref` over a deep payload are validated
//! (or refused) while other producers' entries keep being stored.

use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::*;
use crate::*;

fn nested(levels: usize, leaf: Value) -> Value {
    let mut v = json!({"c": leaf});
    for _ in 1..levels {
        v = json!({"c": v});
    }
    v
}

#[tokio::test]
async fn catastrophic_pattern_huge_enum_and_deep_recursion_do_not_stall_ingest() {
    let (k, admin, pg, redis) = kernel_with_clients().await;
    let regex = admin
        .add(
            "regex",
            "1.0.0",
            json!({"properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}),
        )
        .await;
    let values: Vec<u32> = (0..100_000).collect();
    let enumerated = admin
        .add(
            "enum",
            "1.0.0",
            json!({"properties": {"n": {"enum": values}}}),
        )
        .await;
    let recursive = admin
        .add(
            "tree",
            "1.0.0",
            json!({
                "$defs": {"node": {"type": "object", "properties": {"c": {"$ref": "#/$defs/node"}}}},
                "$ref": "#/$defs/node"
            }),
        )
        .await;
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    create_producers(&pg, &ids).await;
    for (id, schema) in ids.iter().zip(["regex", "enum", "tree"]) {
        assert_eq!(admin.bind(*id, Some(schema)).await.0, 200);
    }
    let tokens: Vec<String> = ids.iter().map(|id| k.token(*id, "p")).collect();
    let evil = format!("{}!", "a".repeat(30_000));
    let mut entries = vec![
        entry(Some(&tokens[0]), json!({"s": evil})),
        entry(Some(&tokens[0]), json!({"s": "a".repeat(30_000)})),
        entry(Some(&tokens[1]), json!({"n": 100_000})),
        entry(Some(&tokens[1]), json!({"n": 99_999})),
        entry(Some(&tokens[2]), nested(60, json!(1))),
        entry(Some(&tokens[2]), nested(60, json!({}))),
    ];
    for n in 0..200 {
        entries.push(entry(Some(&tokens[3]), json!({"n": n})));
    }
    publish(&redis, "events", &entries).await;

    wait_settled(&k, 3 + 200, 3).await;
    for id in [regex, enumerated, recursive] {
        assert_eq!(stored_with(&pg, Some(id)).await, 1);
    }
    assert_eq!(stored_with(&pg, None).await, 200);
    let details = schema_dead_letters(&redis).await;
    let deep_pointer = format!("\"{}\"", "/c".repeat(60));
    for want in [
        r#"regex@1.0.0"#.to_string(),
        r#"at "/n", keyword "enum""#.to_string(),
        format!("at {deep_pointer}, keyword \"type\""),
    ] {
        assert_eq!(
            details.iter().filter(|d| d.contains(&want)).count(),
            1,
            "{want}: {details:#?}"
        );
    }
}
