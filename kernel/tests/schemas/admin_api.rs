//! The admin API refuses bodies that are not valid JSON Schemas (with the compiler's message),
//! remote `$ref`s, bodies too large or too deep, and changed bodies of an existing version;
//! the CLI drives the same routes.

use serde_json::{json, Value};

use crate::auth_support::{kernel_cli, run_cli};
use crate::*;

async fn add(admin: &Admin, version: &str, body: Value) -> (u16, String) {
    let (status, answer) = admin
        .post(
            fdc_common::contract::SCHEMAS_ROUTE,
            json!({"name": "orders", "version": version, "body": body}),
        )
        .await;
    let error = answer["error"].as_str().unwrap_or_default().to_string();
    (status, error)
}

#[tokio::test]
async fn invalid_remote_large_and_changed_bodies_are_refused_with_the_reason() {
    let k = kernel().await;
    let admin = Admin::at(k.admin);
    let (status, error) = add(&admin, "1.0.0", json!({"type": "banana"})).await;
    assert_eq!(status, 400);
    assert!(
        error.starts_with("bad request: schema body is not a valid JSON Schema: ")
            && error.contains("banana"),
        "{error}"
    );
    let (status, error) = add(
        &admin,
        "1.0.0",
        json!({"$ref": "https://example.com/orders.json"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        error.contains("fetches no schema from the network"),
        "{error}"
    );
    let (status, error) = add(
        &admin,
        "1.0.0",
        json!({"properties": {"s": {"pattern": "(?<=a)b"}}}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    let mut deep = json!({"type": "integer"});
    for _ in 0..40 {
        deep = json!({"properties": {"a": deep}});
    }
    let (status, error) = add(&admin, "1.0.0", deep).await;
    assert_eq!(
        (status, error.contains("deeper than 64")),
        (400, true),
        "{error}"
    );
    let huge: Vec<String> = (0..150_000).map(|i| format!("value-{i}")).collect();
    let (status, error) = add(&admin, "1.0.0", json!({"enum": huge})).await;
    assert_eq!(status, 413, "{error}");
    assert!(error.contains("more than the limit of 1048576"), "{error}");
    let (status, error) = add(&admin, "1.0", orders_v1()).await;
    assert_eq!(status, 400);
    assert!(error.contains("not a semantic version"), "{error}");

    // Nothing of that was stored.
    let pg = k.env.pg().await;
    assert_eq!(count(&pg, "SELECT count(*) FROM schemas").await, 0);

    // The same body again: 200, same id; another body under the same version: 409.
    let id = admin.add("orders", "1.0.0", orders_v1()).await;
    let (status, answer) = admin
        .post(
            fdc_common::contract::SCHEMAS_ROUTE,
            json!({"name": "orders", "version": "1.0.0", "body": orders_v1()}),
        )
        .await;
    assert_eq!((status, answer["schema_id"].clone()), (200, json!(id)));
    let (status, error) = add(&admin, "1.0.0", json!({"type": "object"})).await;
    assert_eq!(status, 409);
    assert!(error.contains("exists with another body"), "{error}");
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM auth_decisions WHERE action = 'schema_add'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn cli_adds_lists_shows_deprecates_and_binds() {
    let k = kernel().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.json");
    std::fs::write(&file, orders_v1().to_string()).unwrap();
    let token_file = k.config.auth.admin_token_file.clone().unwrap();
    // The kernel runs on this test's runtime: the CLI waits on a blocking thread.
    let cli = |args: &[&str]| {
        let mut c = kernel_cli();
        c.args(args)
            .env("FDC_ADMIN_URL", format!("http://{}", k.admin))
            .env("FDC_ADMIN_TOKEN_FILE", &token_file);
        tokio::task::spawn_blocking(move || run_cli(c))
    };
    let schema_add = |version: &str, file: &std::path::Path| {
        let file = file.to_str().unwrap();
        cli(&[
            "schema",
            "add",
            "--name",
            "orders",
            "--version",
            version,
            "--file",
            file,
        ])
    };
    let (code, out) = schema_add("1.0.0", &file).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""version": "1.0.0""#), "{out}");
    let (code, out) = cli(&["schema", "list"]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""name": "orders""#), "{out}");
    let producer = uuid::Uuid::now_v7();
    create_producers(&k.env.pg().await, &[producer]).await;
    let id = producer.to_string();
    let (code, out) = cli(&["producer", "bind", &id, "--schema", "orders@^1"])
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""schema": "orders@^1""#), "{out}");
    let (code, out) = cli(&["schema", "show", "orders", "1.0.0"]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&id), "{out}");
    let (code, out) = cli(&["schema", "delete", "orders", "1.0.0"]).await.unwrap();
    assert_ne!(code, 0);
    assert!(out.contains("409") && out.contains("in use"), "{out}");
    let (code, out) = cli(&[
        "schema",
        "deprecate",
        "orders",
        "1.0.0",
        "--reason",
        "v2 is out",
    ])
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#""deprecated": true"#), "{out}");
    let (code, out) = cli(&["producer", "bind", &id, "--none"]).await.unwrap();
    assert_eq!(code, 0, "{out}");
    std::fs::write(dir.path().join("bad.json"), r#"{"type": 5}"#).unwrap();
    let bad = dir.path().join("bad.json");
    let (code, out) = schema_add("2.0.0", &bad).await.unwrap();
    assert_ne!(code, 0);
    assert!(
        out.contains("400") && out.contains("not a valid JSON Schema"),
        "{out}"
    );
}
