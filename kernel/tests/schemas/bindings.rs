//! Binding changes and new versions take effect within the cache TTL without a restart;
//! deprecated versions keep validating for the bindings that pick them and take no new ones;
//! a version in use cannot be deleted; every change is audited.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::support::*;
use crate::*;

/// Long enough for every cached binding and version list to expire.
const AFTER_TTL: Duration = Duration::from_millis(2 * TTL.as_millis() as u64 + 500);

#[tokio::test]
async fn bindings_and_versions_change_within_the_ttl_and_in_use_versions_stay() {
    let (k, admin, pg, redis) = kernel_with_clients().await;
    let v100 = admin.add("orders", "1.0.0", orders_v1()).await;
    let (p, pinned) = (Uuid::now_v7(), Uuid::now_v7());
    create_producers(&pg, &[p, pinned]).await;
    let (tp, tpinned) = (k.token(p, "p"), k.token(pinned, "pinned"));
    let bad = json!({"order_id": "o", "qty": 0});
    let big = json!({"order_id": "o", "qty": 50});

    // Unbound: anything is stored (and the kernel caches "unbound").
    publish(&redis, "events", &[entry(Some(&tp), bad.clone())]).await;
    wait_settled(&k, 1, 0).await;

    // Bound, with no restart: validated once the TTL has passed.
    assert_eq!(admin.bind(p, Some("orders@^1")).await.0, 200);
    tokio::time::sleep(AFTER_TTL).await;
    publish(
        &redis,
        "events",
        &[entry(Some(&tp), bad.clone()), entry(Some(&tp), big.clone())],
    )
    .await;
    wait_settled(&k, 2, 1).await;
    assert_eq!(stored_with(&pg, Some(v100)).await, 1);

    // A new matching version takes over `^1` within the TTL.
    let mut stricter = orders_v1();
    stricter["properties"]["qty"]["maximum"] = json!(10);
    let v110 = admin.add("orders", "1.1.0", stricter).await;
    assert_eq!(admin.bind(pinned, Some("orders@1.1.0")).await.0, 200);
    tokio::time::sleep(AFTER_TTL).await;
    publish(&redis, "events", &[entry(Some(&tp), big.clone())]).await;
    wait_settled(&k, 2, 2).await;
    let details = schema_dead_letters(&redis).await;
    assert!(
        details[1].starts_with(&format!(
            r#"payload does not match schema orders@1.1.0 (schema_id {v110}): at "/qty", keyword "maximum""#
        )),
        "{details:?}"
    );

    // Deprecated: `^1` falls back to 1.0.0, the exact pin keeps validating with 1.1.0, and no
    // new binding may pick it.
    let (status, answer) = admin
        .post(
            &fdc_common::contract::schema_deprecate_path("orders", "1.1.0"),
            json!({"reason": "qty limit was a mistake"}),
        )
        .await;
    assert_eq!((status, answer["deprecated"].clone()), (200, json!(true)));
    tokio::time::sleep(AFTER_TTL).await;
    publish(
        &redis,
        "events",
        &[
            entry(Some(&tp), big.clone()),
            entry(Some(&tpinned), big.clone()),
        ],
    )
    .await;
    wait_settled(&k, 3, 3).await;
    assert_eq!(stored_with(&pg, Some(v100)).await, 2);
    let details = schema_dead_letters(&redis).await;
    assert!(
        details[2].contains(&format!("orders@1.1.0 (schema_id {v110})")),
        "{details:?}"
    );
    let other = Uuid::now_v7();
    create_producers(&pg, &[other]).await;
    assert_refused(
        admin.bind(other, Some("orders@1.1.0")).await,
        409,
        "deprecated",
    );
    assert_eq!(admin.bind(other, Some("orders@^7")).await.0, 409);
    assert_eq!(admin.bind(other, Some("orders@banana")).await.0, 400);
    assert_eq!(admin.bind(Uuid::now_v7(), Some("orders")).await.0, 404);

    // In use: not deleted; `show` names the producers whose binding picks the version.
    let path = fdc_common::contract::schema_path("orders", "1.0.0");
    assert_refused(admin.delete(&path).await, 409, &format!("producer {p}"));
    let (_, shown) = admin.get(&path).await;
    assert_eq!(shown["bound_producers"], json!([p]));
    assert_eq!(shown["body"], orders_v1());
    let (_, shown) = admin
        .get(&fdc_common::contract::schema_path("orders", "1.1.0"))
        .await;
    assert_eq!(shown["bound_producers"], json!([pinned]));

    // Unbound, then deletable; the unbound producer's payloads are no longer validated.
    assert_eq!(
        admin.bind(p, None).await,
        (200, json!({"producer_id": p, "schema": null}))
    );
    assert_eq!(admin.bind(pinned, None).await.0, 200);
    assert_eq!(admin.delete(&path).await.0, 204);
    assert_eq!(admin.get(&path).await.0, 404);
    assert_eq!(admin.delete(&path).await.0, 404);
    tokio::time::sleep(AFTER_TTL).await;
    publish(&redis, "events", &[entry(Some(&tp), bad)]).await;
    wait_settled(&k, 4, 3).await;

    let audit: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, count(*) FROM auth_decisions WHERE action LIKE 'schema%'
          GROUP BY action ORDER BY action",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    let audit: Vec<(&str, i64)> = audit.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    assert_eq!(
        audit,
        [
            ("schema_add", 2),
            ("schema_bind", 4),
            ("schema_delete", 1),
            ("schema_deprecate", 1)
        ]
    );
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM auth_decisions WHERE action = 'schema_deprecate'")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(reason, "qty limit was a mistake");
}
