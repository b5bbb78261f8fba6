//! `FdcSchema` reconciles against the mock API server, with the kernel's admin API played by
//! the local kernel stand-in: the exact registry requests the operator makes, and the
//! conditions a user sees for each kernel answer.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::producer::assert_requeue_near;
use crate::controller::fixtures::{
    admin_secret, assert_requeued, being_deleted, condition, fdc_schema, kernel, outcome, run,
    secret_uri, status_reason, unreachable_context, with_status, without_finalizers, AdminCall,
    ApiServer, ProducerTest, APPLY, NS, SCHEMA_ID,
};
use crate::crd::FdcSchema;
use crate::labels::SCHEMA_FINALIZER;

fn schema_uri() -> String {
    format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdcschemas/s")
}

/// The reads of a pass: FdcKernel `k`, then its admin token Secret.
async fn reads(server: &mut ApiServer) {
    server
        .get(
            &format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdckernels/k"),
            Some(&serde_json::to_value(kernel("k", 1)).unwrap()),
        )
        .await;
    server
        .get(&secret_uri("k-admin-token"), Some(&admin_secret()))
        .await;
}

/// The status apply of FdcSchema `s`, answered; returns what was applied.
async fn status_apply(server: &mut ApiServer, schema: &FdcSchema) -> Value {
    let call = server
        .expect("PATCH", &format!("{}/status{APPLY}", schema_uri()))
        .await;
    let status = call.body.clone();
    call.status_ok(schema);
    status
}

/// The patch of FdcSchema `s`'s finalizers, answered with `schema`; returns the patch.
async fn finalizer_patch(server: &mut ApiServer, schema: &FdcSchema) -> Value {
    let call = server.expect("PATCH", &format!("{}?", schema_uri())).await;
    let patch = call.body.clone();
    call.ok(&serde_json::to_value(schema).unwrap());
    patch
}

/// The request the operator must send to add the fixture's version.
fn expected_add() -> AdminCall {
    AdminCall {
        path: "POST /v1/schemas".into(),
        authorization: "Bearer admin-secret-token".into(),
        body: json!({
            "name": "orders",
            "version": "1.2.0",
            "body": fdc_schema("s", "k").spec.body,
            "reason": "FdcSchema apps/s declares it",
        }),
    }
}

/// The kernel's answer to adding the fixture's version when it holds it already (200).
fn unchanged_answer(deprecated: bool) -> Value {
    json!({"schema_id": SCHEMA_ID, "name": "orders", "version": "1.2.0", "deprecated": deprecated, "created_at": "x"})
}

/// A pass of `schema` that reads and writes its status, and nothing else (no Event); returns
/// the status written.
async fn quiet_pass(t: &mut ProducerTest, schema: &FdcSchema) -> Value {
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    let status = status_apply(&mut t.server, schema).await;
    outcome(task).await;
    status
}

#[tokio::test]
async fn a_valid_schema_is_added_at_the_kernel_and_accepted() {
    let mut t = ProducerTest::start().await;
    let schema = fdc_schema("s", "k");
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    let event = t.server.expect_event(NS, "SchemaAdded").await;
    assert_eq!(
        event["note"],
        format!(
            "orders@1.2.0 added to the schema registry of FdcKernel apps/k (schema id {SCHEMA_ID})"
        )
    );
    let status = status_apply(&mut t.server, &schema).await;
    let action = outcome(task).await;
    assert_eq!(t.fake.schema_calls(), vec![expected_add()]);
    assert_eq!(action, Action::requeue(Duration::from_secs(600)));
    assert_eq!(status["status"]["schemaId"], SCHEMA_ID);
    assert_eq!(status["status"]["schemaName"], "orders");
    assert_eq!(status["status"]["observedGeneration"], 1);
    let accepted = condition(&status, "Accepted");
    assert_eq!(accepted["status"], "True");
    assert_eq!(accepted["reason"], "Accepted");
    assert_eq!(
        accepted["message"],
        format!(
            "orders@1.2.0 is in the schema registry of FdcKernel apps/k (schema id {SCHEMA_ID})"
        )
    );
    assert_eq!(condition(&status, "Deprecated")["status"], "False");

    // The next pass: the kernel answers "unchanged" (200); no Event, same condition.
    t.fake.set_schema_add_response(200, unchanged_answer(false));
    let again = quiet_pass(&mut t, &with_status(schema, &status)).await;
    assert_eq!(t.fake.schema_calls(), vec![expected_add(); 2]);
    assert_eq!(
        condition(&again, "Accepted")["lastTransitionTime"],
        accepted["lastTransitionTime"]
    );
    t.done().await;
}

/// One pass where the kernel refuses the version with `status` and `error`: the Warning Event
/// (`event_reason`), the status written and the pass's action.
async fn refused_pass(status: u16, error: &str, event_reason: &str) -> (Value, Value, Action) {
    let mut t = ProducerTest::start().await;
    t.fake
        .set_schema_add_response(status, json!({ "error": error }));
    let schema = fdc_schema("s", "k");
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    let event = t.server.expect_event(NS, event_reason).await;
    assert_eq!(event["type"], "Warning");
    let status = status_apply(&mut t.server, &schema).await;
    let action = outcome(task).await;
    assert_eq!(t.fake.schema_calls(), vec![expected_add()]);
    t.done().await;
    (event, status, action)
}

#[tokio::test]
async fn an_invalid_body_shows_the_compilers_message() {
    let compiler = "\"strng\" is not valid under any of the schemas listed in the 'anyOf' keyword at /properties/order_id/type";
    let (event, status, action) = refused_pass(400, compiler, "SchemaInvalid").await;
    let expected = format!("FdcKernel apps/k refused orders@1.2.0: spec.body is not a valid JSON Schema: {compiler}. Fix spec.body");
    assert_eq!(event["note"], expected.as_str());
    assert_eq!(action, Action::await_change());
    let accepted = condition(&status, "Accepted");
    assert_eq!(status_reason(accepted), ("False", "Invalid"));
    assert_eq!(accepted["message"], expected.as_str());
    assert!(status["status"].get("schemaId").is_none());
}

#[tokio::test]
async fn another_body_for_an_existing_version_says_versions_are_immutable() {
    let kernel_says = "schema orders@1.2.0 exists with another body";
    let (event, status, action) = refused_pass(409, kernel_says, "VersionImmutable").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    let accepted = condition(&status, "Accepted");
    assert_eq!(status_reason(accepted), ("False", "VersionImmutable"));
    let expected = format!("orders@1.2.0 exists at FdcKernel apps/k with another body ({kernel_says}): a version never changes once added. Give the new body a new version (another FdcSchema with a higher spec.version), or put the old body back");
    assert_eq!(accepted["message"], expected.as_str());
    assert_eq!(event["note"], expected.as_str());
}

#[tokio::test]
async fn spec_deprecated_deprecates_the_version_once() {
    let mut t = ProducerTest::start().await;
    let mut schema = fdc_schema("s", "k");
    schema.spec.deprecated = true;
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    t.server.expect_event(NS, "SchemaAdded").await;
    let event = t.server.expect_event(NS, "SchemaDeprecated").await;
    assert_eq!(event["note"], "orders@1.2.0 deprecated at FdcKernel apps/k");
    let status = status_apply(&mut t.server, &schema).await;
    outcome(task).await;
    let add = expected_add();
    let deprecate = AdminCall {
        path: "POST /v1/schemas/orders/1.2.0/deprecate".into(),
        authorization: "Bearer admin-secret-token".into(),
        body: json!({"reason": "FdcSchema apps/s declares it"}),
    };
    assert_eq!(t.fake.schema_calls(), vec![add.clone(), deprecate]);
    let deprecated = condition(&status, "Deprecated");
    assert_eq!(deprecated["status"], "True");
    assert_eq!(
        deprecated["message"],
        "orders@1.2.0 is deprecated at FdcKernel apps/k: producers bound to it keep being validated against it, no new binding picks it"
    );

    // The kernel now reports it deprecated: no second deprecation call.
    t.fake.set_schema_add_response(200, unchanged_answer(true));
    quiet_pass(&mut t, &with_status(schema, &status)).await;
    assert_eq!(t.fake.schema_calls().len(), 3);
    assert_eq!(t.fake.schema_calls()[2], add);
    t.done().await;
}

#[tokio::test]
async fn an_unreachable_kernel_is_a_condition_and_a_requeue() {
    let (ctx, mut server, base) = unreachable_context();
    let schema = fdc_schema("s", "k");
    let task = run(schema.clone(), &ctx);
    reads(&mut server).await;
    let status = status_apply(&mut server, &schema).await;
    assert_requeued(task, Duration::from_secs(30)).await;
    let accepted = condition(&status, "Accepted");
    assert_eq!(accepted["reason"], "KernelUnreachable");
    let message = accepted["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("cannot reach the admin API of FdcKernel apps/k to register the schema (request to {base}/v1/schemas failed: ")),
        "{message}"
    );
    assert!(!message.contains("admin-secret-token"));
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn a_new_schema_first_gets_the_finalizer() {
    let mut t = ProducerTest::start().await;
    let task = run(without_finalizers(fdc_schema("s", "k")), &t.ctx);
    assert_eq!(
        finalizer_patch(&mut t.server, &fdc_schema("s", "k")).await,
        json!({"metadata": {"finalizers": [SCHEMA_FINALIZER], "resourceVersion": "7"}})
    );
    assert_eq!(outcome(task).await, Action::await_change());
    assert!(t.fake.schema_calls().is_empty());
    t.done().await;
}

fn deleting(accepted: bool) -> FdcSchema {
    let mut s = being_deleted(fdc_schema("s", "k"));
    if accepted {
        s.status = Some(crate::crd::FdcSchemaStatus {
            schema_id: Some(SCHEMA_ID.into()),
            ..Default::default()
        });
    }
    s
}

#[tokio::test]
async fn deletion_waits_while_producers_are_bound_then_goes() {
    let mut t = ProducerTest::start().await;
    let kernel_says = "schema orders@1.2.0 is in use";
    t.fake
        .set_schema_delete_response(409, json!({ "error": kernel_says }));
    t.fake.set_schema_show_response(
        200,
        json!({"schema_id": SCHEMA_ID, "name": "orders", "version": "1.2.0", "deprecated": false,
               "body": {}, "bound_producers": ["0190c0de-0000-7000-8000-000000000001", "0190c0de-0000-7000-8000-000000000002"]}),
    );
    let schema = deleting(true);
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    let expected = format!("deletion waits: 2 producers are bound to orders@1.2.0 at FdcKernel apps/k ({kernel_says}). Bind them to another version (Producer spec.schema, or `fdc-kernel producer bind`) or unbind them; to retire the version without deleting it, set spec.deprecated=true instead. Asked again every 30s");
    let event = t.server.expect_event(NS, "DeletionBlocked").await;
    assert_eq!(event["note"], expected.as_str());
    let status = status_apply(&mut t.server, &schema).await;
    // The finalizer stays (no patch of the object), and the deletion is asked again.
    assert_requeued(task, Duration::from_secs(30)).await;
    let in_use = condition(&status, "InUse");
    assert_eq!(status_reason(in_use), ("True", "InUse"));
    assert_eq!(in_use["message"], expected.as_str());
    let paths: Vec<_> = t.fake.schema_calls().into_iter().map(|c| c.path).collect();
    assert_eq!(
        paths,
        vec![
            "DELETE /v1/schemas/orders/1.2.0?reason=FdcSchema%20apps%2Fs%20deleted",
            "GET /v1/schemas/orders/1.2.0"
        ]
    );

    // Still in use on the next pass: same condition, no second Event.
    let schema = with_status(schema, &status);
    quiet_pass(&mut t, &schema).await;

    // The producers were rebound: the kernel deletes it, and the finalizer goes.
    t.fake.set_schema_delete_response(204, Value::Null);
    let task = run(schema.clone(), &t.ctx);
    reads(&mut t.server).await;
    let event = t.server.expect_event(NS, "SchemaDeleted").await;
    assert_eq!(
        event["note"],
        "orders@1.2.0 deleted from the schema registry of FdcKernel apps/k"
    );
    assert_eq!(
        finalizer_patch(&mut t.server, &schema).await,
        json!({"metadata": {"finalizers": [], "resourceVersion": "7"}})
    );
    assert_eq!(outcome(task).await, Action::await_change());
    assert_eq!(t.fake.schema_calls().len(), 5);
    assert_eq!(
        t.fake.schema_calls()[4],
        AdminCall {
            path: "DELETE /v1/schemas/orders/1.2.0?reason=FdcSchema%20apps%2Fs%20deleted".into(),
            authorization: "Bearer admin-secret-token".into(),
            body: Value::Null,
        }
    );
    t.done().await;
}

#[tokio::test]
async fn a_version_this_object_never_got_accepted_is_not_deleted_at_the_kernel() {
    let mut t = ProducerTest::start().await;
    let schema = deleting(false);
    let task = run(schema.clone(), &t.ctx);
    finalizer_patch(&mut t.server, &schema).await;
    outcome(task).await;
    assert!(t.fake.schema_calls().is_empty());
    t.done().await;
}

#[tokio::test]
async fn a_missing_kernel_blocks_without_an_error() {
    let mut t = ProducerTest::start().await;
    let schema = fdc_schema("s", "k");
    let task = run(schema.clone(), &t.ctx);
    t.server
        .get(
            &format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdckernels/k"),
            None,
        )
        .await;
    let status = status_apply(&mut t.server, &schema).await;
    assert_requeue_near(outcome(task).await, Duration::from_secs(30));
    let accepted = condition(&status, "Accepted");
    assert_eq!(accepted["reason"], "KernelNotFound");
    assert_eq!(
        accepted["message"],
        "FdcKernel apps/k not found; create it or fix spec.kernelRef"
    );
    t.done().await;
}
