//! `Producer` with `spec.schema`: bound at the kernel (exact admin API request, checked at
//! the local kernel stand-in) on every pass, unbound once the spec drops it; a binding the
//! kernel cannot make is a `SchemaBound=False` condition and a sooner requeue, never a
//! reason to hold back the credentials.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::producer::{apply_pass, assert_requeue_near, decode, issuer, verifier};
use crate::controller::fixtures::{
    admin_secret, condition, kernel, outcome, producer, producer_uri, run, secret_uri,
    status_reason, with_status, AdminCall, ApiServer, ProducerTest, APPLY, NS, PRODUCER_UID,
};
use crate::crd::Producer;

fn bound_to(schema: &str) -> Producer {
    let mut p = producer("p", "k");
    p.spec.schema = Some(schema.into());
    p
}

fn expected_binding(schema: Value, reason: &str) -> AdminCall {
    AdminCall {
        path: format!("/v1/producers/{PRODUCER_UID}/schema"),
        authorization: "Bearer admin-secret-token".into(),
        body: json!({ "schema": schema, "reason": reason }),
    }
}

/// The reads of a pass up to the admin token Secret.
async fn reads(server: &mut ApiServer, issuer_secret: &Value, stored: Option<&Value>) {
    server
        .producer_reads_to_admin_token(issuer_secret, stored)
        .await;
}

/// The `SchemaBound` condition of an applied status: its status, reason and message.
fn schema_bound(status: &Value) -> (&str, &str, &str) {
    let bound = condition(status, "SchemaBound");
    let (status, reason) = status_reason(bound);
    (status, reason, bound["message"].as_str().expect("message"))
}

/// A pass of `p` that reuses the token stored in `secret` (no Event), up to its end: the
/// status written and the pass's action.
async fn reusing_pass(
    t: &mut ProducerTest,
    p: Producer,
    issuer_secret: &Value,
    secret: &Value,
) -> (Value, Action) {
    let task = run(p, &t.ctx);
    reads(&mut t.server, issuer_secret, Some(secret)).await;
    t.server.credentials_apply().await;
    let status = status_apply(&mut t.server).await;
    (status, outcome(task).await)
}

/// The status apply that ends a pass, after any further reads of the admin token Secret
/// (other admin calls of the pass, made after the Secret is written, read it too).
async fn status_apply(server: &mut ApiServer) -> Value {
    let status_uri = format!("{}/status{APPLY}", producer_uri());
    loop {
        let call = server.next().await;
        if call.method == "GET" && call.uri == secret_uri("k-admin-token") {
            call.ok(&admin_secret());
            continue;
        }
        assert_eq!(
            (call.method.as_str(), call.uri.as_str()),
            ("PATCH", status_uri.as_str())
        );
        let status = call.body.clone();
        call.status_ok(&producer("p", "k"));
        return status;
    }
}

#[tokio::test]
async fn spec_schema_binds_the_producer_and_removing_it_unbinds() {
    let mut t = ProducerTest::start().await;
    let (keys, issuer_secret) = issuer();
    let task = run(bound_to("orders@^1.2"), &t.ctx);
    reads(&mut t.server, &issuer_secret, None).await;
    let event = t.server.expect_event(NS, "SchemaBound").await;
    assert_eq!(
        event["note"],
        format!("producer {PRODUCER_UID} bound to schema orders@^1.2 at FdcKernel apps/k")
    );
    assert_eq!(
        t.fake.bindings(),
        vec![expected_binding(
            json!("orders@^1.2"),
            "Producer apps/p declares spec.schema orders@^1.2"
        )]
    );
    t.server.expect_event(NS, "TokenIssued").await;
    let secret = t.server.credentials_apply().await;
    let status = status_apply(&mut t.server).await;
    outcome(task).await;
    // The token still names the schema (its `schema` claim).
    let claims = verifier(&keys)
        .verify(&decode(&secret["data"], "token"))
        .unwrap();
    assert_eq!(claims.schema.as_deref(), Some("orders@^1.2"));
    let expected = format!("producer {PRODUCER_UID} is bound to schema orders@^1.2 at FdcKernel apps/k: its data entries are validated against the newest version of the schema the range admits, and dead-lettered with reason `schema` when they do not conform");
    assert_eq!(schema_bound(&status), ("True", "Bound", expected.as_str()));
    assert_eq!(condition(&status, "Ready")["status"], "True");

    // Next pass: bound again (idempotent at the kernel), no second Event.
    let p = with_status(bound_to("orders@^1.2"), &status);
    let (again, _) = reusing_pass(&mut t, p, &issuer_secret, &secret).await;
    assert_eq!(t.fake.bindings().len(), 2);
    assert_eq!(condition(&again, "SchemaBound")["status"], "True");

    // spec.schema removed: unbound (`null`), and the condition goes.
    let p = with_status(producer("p", "k"), &again);
    let task = run(p, &t.ctx);
    reads(&mut t.server, &issuer_secret, Some(&secret)).await;
    // The token's inputs changed (no schema claim): a new one.
    t.server.expect_event(NS, "TokenRenewed").await;
    let secret = t.server.credentials_apply().await;
    let status = status_apply(&mut t.server).await;
    outcome(task).await;
    assert_eq!(
        t.fake.bindings()[2],
        expected_binding(
            Value::Null,
            "Producer apps/p no longer declares spec.schema"
        )
    );
    assert!(
        status["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["type"] != "SchemaBound"),
        "{status}"
    );

    // Nothing bound and no schema: no call at all.
    let p = with_status(producer("p", "k"), &status);
    let (_, event, _, _) = apply_pass(&mut t, p, &issuer_secret, Some(&secret)).await;
    assert_eq!(event, None, "the token is reused");
    assert_eq!(t.fake.bindings().len(), 3);
    t.done().await;
}

#[tokio::test]
async fn a_binding_the_kernel_cannot_make_is_a_condition_and_the_credentials_are_written() {
    let mut t = ProducerTest::start().await;
    let (_, issuer_secret) = issuer();

    // The kernel has not seen the producer yet.
    t.fake.set_bind_response(
        404,
        json!({"error": format!("unknown producer {PRODUCER_UID}")}),
    );
    let task = run(bound_to("orders@^1.2"), &t.ctx);
    reads(&mut t.server, &issuer_secret, None).await;
    t.server.expect_event(NS, "TokenIssued").await;
    let secret = t.server.credentials_apply().await;
    let status = status_apply(&mut t.server).await;
    assert_requeue_near(outcome(task).await, Duration::from_secs(60));
    let expected = format!("FdcKernel apps/k does not know producer {PRODUCER_UID} yet (unknown producer {PRODUCER_UID}); the binding is made once it does (it knows a producer from its first entry or registration); asked again every 1m");
    assert_eq!(
        schema_bound(&status),
        ("False", "ProducerNotSeen", expected.as_str())
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");

    // No such schema at the kernel.
    t.fake.set_bind_response(
        409,
        json!({"error": "no version of schema orders matches ^1.2"}),
    );
    let (status, action) =
        reusing_pass(&mut t, bound_to("orders@^1.2"), &issuer_secret, &secret).await;
    assert_requeue_near(action, Duration::from_secs(120));
    let expected = "FdcKernel apps/k refused to bind spec.schema orders@^1.2: no version of schema orders matches ^1.2. Add the schema (an FdcSchema, or `fdc-kernel schema add`) or fix spec.schema (name@range, e.g. orders@^1.2); asked again every 2m";
    assert_eq!(schema_bound(&status), ("False", "BindingRefused", expected));
    assert_eq!(t.fake.bindings().len(), 2);

    // A kernel without the binding route (404 with no `error`): an error answer, not an
    // unknown producer.
    t.fake.set_bind_response(404, Value::Null);
    let (status, action) =
        reusing_pass(&mut t, bound_to("orders@^1.2"), &issuer_secret, &secret).await;
    assert_requeue_near(action, Duration::from_secs(30));
    let expected = format!("FdcKernel apps/k failed to bind spec.schema ({}/v1/producers/{PRODUCER_UID}/schema answered HTTP 404); see the kernel's logs; retrying every 30s", t.fake.base);
    assert_eq!(
        schema_bound(&status),
        ("False", "AdminCallFailed", expected.as_str())
    );
    t.done().await;
}

#[tokio::test]
async fn a_kernel_without_auth_is_not_asked_and_says_how_to_bind_a_stream() {
    let mut t = ProducerTest::start().await;
    let (_, issuer_secret) = issuer();
    let mut k = kernel("k", 1);
    k.spec.auth.enabled = false;
    let task = run(bound_to("orders@1.2.0"), &t.ctx);
    t.server.producer_reads(&k, &issuer_secret, None).await;
    t.server.expect_event(NS, "TokenIssued").await;
    t.server.credentials_apply().await;
    let status = status_apply(&mut t.server).await;
    outcome(task).await;
    let expected = "FdcKernel apps/k runs with spec.auth.enabled=false: it does not know which producer sent an entry, so spec.schema (orders@1.2.0) binds nothing; bind the stream instead in the kernel's spec.config.ingest.schemas ({stream: name@version})";
    assert_eq!(
        schema_bound(&status),
        ("False", "KernelAuthDisabled", expected)
    );
    assert!(t.fake.bindings().is_empty());
    t.done().await;
}
