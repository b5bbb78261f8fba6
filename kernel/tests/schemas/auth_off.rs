//! With auth off, a stream bound in `ingest.schemas` is validated, and the admin API (on when
//! `auth.admin_token_file` is set) manages schemas and counts the stream as a user.

use serde_json::json;

use crate::support::*;
use crate::*;

#[tokio::test]
async fn a_stream_bound_in_config_is_validated_with_auth_off() {
    let env = TestEnv::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = auth_off_config(&env, dir.path(), "orders@^1", |_| {});
    let kernel = fdc_kernel::service::start(config).await.unwrap();
    let admin = Admin::at(kernel.admin_addr.expect("the admin API runs"));
    let (pg, redis) = (env.pg().await, env.redis_conn().await);
    wait_migrated(&pg).await;
    let id = admin.add("orders", "1.0.0", orders_v1()).await;

    publish(
        &redis,
        "events",
        &[
            entry(None, json!({"order_id": "a", "qty": 1})),
            entry(None, json!({"order_id": "b", "qty": -1})),
            entry(None, json!({"order_id": "c", "qty": 2})),
        ],
    )
    .await;
    let got = wait_for(auth_support::WAIT, (2, 1), || async {
        (
            stored_with(&pg, Some(id)).await,
            xlen(&redis, "events:dlq").await,
        )
    })
    .await;
    assert_eq!(got, (2, 1));
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 2);
    let details = schema_dead_letters(&redis).await;
    assert!(
        details[0].contains(r#"at "/qty", keyword "minimum""#),
        "{details:?}"
    );

    let path = fdc_common::contract::schema_path("orders", "1.0.0");
    assert_refused(
        admin.delete(&path).await,
        409,
        "stream events (ingest.schemas)",
    );
    assert_eq!(admin.get(&path).await.1["bound_streams"], json!(["events"]));
    kernel.shutdown().await;
}
