//! `Producer` with `spec.publicKey`: the key is approved at the kernel (exact admin API
//! request, checked at the local kernel stand-in) before the Secret is written; a kernel that
//! cannot be reached or refuses blocks the Producer with a condition and a requeue.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

use super::producer::{apply_pass, assert_requeue_near, decode, issuer, verifier};
use crate::auth::KeyPair;
use crate::builders::issuer_keys::IssuerKeySet;
use crate::controller::fixtures::{
    assert_requeued, kernel, outcome, producer, run, secret_uri, status_reason,
    unreachable_context, with_status, AdminCall, ApiServer, ProducerTest, NS, PRODUCER_UID,
};
use crate::crd::Producer;

fn condition(status: &Value, type_: &str) -> Value {
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

fn with_key(own: &KeyPair) -> Producer {
    let mut p = producer("p", "k");
    p.spec.public_key = Some(own.public_pem.clone());
    p.spec.token_ttl = Some("1h".into());
    p
}

/// The admin API call the operator must make for `own`.
fn expected_call(own: &KeyPair) -> AdminCall {
    AdminCall {
        path: format!("/v1/producers/{PRODUCER_UID}/keys"),
        authorization: "Bearer admin-secret-token".into(),
        body: json!({
            "public_key": own.public_pem,
            "name": "p",
            "schema": null,
            "reason": "Producer apps/p declares this public key (spec.publicKey)",
        }),
    }
}

/// A Producer test, the kernel's issuer keys and their Secret, and a key pair the producer
/// holds itself.
async fn start_with_own_key() -> (ProducerTest, IssuerKeySet, Value, KeyPair) {
    let t = ProducerTest::start().await;
    let (keys, issuer_secret) = issuer();
    let own = crate::auth::generate_key_pair().unwrap();
    (t, keys, issuer_secret, own)
}

/// GETs of a reconcile up to the admin token Secret (nothing stored yet).
async fn reads_up_to_admin_token(server: &mut ApiServer, issuer_secret: &Value) {
    server
        .producer_reads_to_admin_token(issuer_secret, None)
        .await;
}

/// The status apply of a blocked reconcile: Ready and KeyApproved False with `reason`.
async fn blocked_status(server: &mut ApiServer, reason: &str) -> (Value, String) {
    let status = server.producer_status_apply().await;
    let ready = condition(&status, "Ready");
    let key = condition(&status, "KeyApproved");
    assert_eq!(status_reason(&ready), ("False", reason));
    assert_eq!(status_reason(&key), ("False", reason));
    assert_eq!(ready["message"], key["message"]);
    assert_eq!(ready["observedGeneration"], 1);
    (
        status.clone(),
        ready["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn external_key_is_approved_at_the_kernel_before_the_secret_is_written() {
    let (mut t, keys, issuer_secret, own) = start_with_own_key().await;
    let fingerprint = crate::auth::fingerprint(&own.public_pem).unwrap();

    let task = run(with_key(&own), &t.ctx);
    reads_up_to_admin_token(&mut t.server, &issuer_secret).await;
    let event = t.server.expect_event(NS, "KeyApproved").await;
    assert_eq!(
        event["note"],
        format!(
            "public key {fingerprint} approved at FdcKernel apps/k for producer {PRODUCER_UID}"
        )
    );
    // Approved at the kernel, with exactly this request, before anything is written.
    assert_eq!(t.fake.key_approvals(), vec![expected_call(&own)]);
    t.server.expect_event(NS, "TokenIssued").await;
    let secret = t.server.credentials_apply().await;
    t.server.admin_token_read(NS).await;
    let status = t.server.producer_status_apply().await;
    let action = outcome(task).await;

    // The Secret: the kernel-accepted token, the fingerprint, no key material of ours.
    let data = &secret["data"];
    assert!(data.get("private-key.pem").is_none());
    assert!(data.get("public-key.pem").is_none());
    assert_eq!(decode(data, "fingerprint"), fingerprint);
    let claims = verifier(&keys).verify(&decode(data, "token")).unwrap();
    assert_eq!(claims.sub.to_string(), PRODUCER_UID);
    // Status: KeyApproved with a message saying what the producer can do now.
    assert_eq!(status["status"]["fingerprint"], fingerprint.as_str());
    let key = condition(&status, "KeyApproved");
    assert_eq!(key["status"], "True");
    assert_eq!(key["reason"], "ApprovedAtKernel");
    assert_eq!(
        key["message"],
        format!("public key {fingerprint} is approved at FdcKernel apps/k for producer {PRODUCER_UID}: the producer can run `fdc-kernel register` to get tokens sealed to its key")
    );
    assert_eq!(key["observedGeneration"], 1);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    // A 1h token: the expiry column reads "55m" for 5 minutes, then the next pass refreshes
    // it (renewal itself is at 40m).
    assert_eq!(status["status"]["tokenExpiresIn"], "55m");
    assert_requeue_near(action, Duration::from_secs(300));

    // Next reconcile: the kernel says "already approved" (200): asked again, no Event, and
    // the fresh token is reused, so nothing but the Secret and status applies follows.
    t.fake.set_key_response(200, json!({"changed": false}));
    let p = with_status(with_key(&own), &status);
    let task = run(p, &t.ctx);
    t.server
        .producer_reads_to_admin_token(&issuer_secret, Some(&secret))
        .await;
    assert_eq!(t.server.credentials_apply().await["data"], secret["data"]);
    t.server.admin_token_read(NS).await;
    let again = t.server.producer_status_apply().await;
    outcome(task).await;
    assert_eq!(t.fake.key_approvals(), vec![expected_call(&own); 2]);
    assert_eq!(
        condition(&again, "KeyApproved")["reason"],
        "ApprovedAtKernel"
    );
    assert_eq!(
        condition(&again, "KeyApproved")["lastTransitionTime"],
        key["lastTransitionTime"],
        "unchanged status keeps its transition time"
    );

    // spec.publicKey removed: a key pair is generated, no kernel call, and the KeyApproved
    // condition goes away.
    let p = with_status(producer("p", "k"), &again);
    let (_, _, status, _) = apply_pass(&mut t, p, &issuer_secret, Some(&secret)).await;
    assert_eq!(condition(&status, "KeyApproved"), Value::Null);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(t.fake.key_approvals().len(), 2);

    t.done().await;
}

#[tokio::test]
async fn unreachable_kernel_blocks_with_a_requeue_and_writes_no_secret() {
    let (ctx, mut server, base) = unreachable_context();
    let (_, issuer_secret) = issuer();
    let own = crate::auth::generate_key_pair().unwrap();

    let task = run(with_key(&own), &ctx);
    reads_up_to_admin_token(&mut server, &issuer_secret).await;
    let (status, message) = blocked_status(&mut server, "KernelUnreachable").await;
    let action = outcome(task).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let url = format!("{base}/v1/producers/{PRODUCER_UID}/keys");
    assert!(
        message.starts_with(&format!(
            "cannot reach the admin API of FdcKernel apps/k to approve spec.publicKey (request to {url} failed: "
        )),
        "{message}"
    );
    assert!(
        message.ends_with("); retrying every 30s. Check that the kernel is Ready: kubectl -n apps get fdckernel k"),
        "{message}"
    );
    assert!(!message.contains("admin-secret-token"));
    assert_eq!(
        status["status"]["fingerprint"],
        crate::auth::fingerprint(&own.public_pem).unwrap().as_str()
    );
    // No Secret was applied (expect_done), and no token is in the status.
    assert!(status["status"].get("tokenExpiresAt").is_none());
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn refusal_and_a_rejected_admin_token_are_reported_in_words_a_human_can_act_on() {
    let (mut t, _, issuer_secret, own) = start_with_own_key().await;
    let fingerprint = crate::auth::fingerprint(&own.public_pem).unwrap();
    let kernel_says = format!("conflict: key {fingerprint} is already approved for producer 0190c0de-0000-7000-8000-000000000001; a key serves one producer (use another key)");
    t.fake
        .set_key_response(409, json!({ "error": kernel_says }));

    let task = run(with_key(&own), &t.ctx);
    reads_up_to_admin_token(&mut t.server, &issuer_secret).await;
    let expected = format!("FdcKernel apps/k refused to approve spec.publicKey (fingerprint {fingerprint}): {kernel_says}. Put another key in spec.publicKey, or settle it at the kernel with `fdc-kernel admin`; asked again every 5m");
    let event = t.server.expect_event(NS, "KeyApprovalRefused").await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["note"], expected.as_str());
    let (_, message) = blocked_status(&mut t.server, "KeyRefusedByKernel").await;
    assert_eq!(message, expected);
    assert_requeued(task, Duration::from_secs(300)).await;
    assert_eq!(t.fake.key_approvals(), vec![expected_call(&own)]);

    // The kernel does not take the operator's admin token.
    t.fake
        .set_key_response(401, json!({"error": "unauthorized"}));
    let task = run(with_key(&own), &t.ctx);
    reads_up_to_admin_token(&mut t.server, &issuer_secret).await;
    let (_, message) = blocked_status(&mut t.server, "KeyApprovalFailed").await;
    assert_eq!(
        message,
        format!("FdcKernel apps/k did not accept the operator's admin token ({}/v1/producers/{PRODUCER_UID}/keys answered HTTP 401) while approving spec.publicKey; Secret k-admin-token and the kernel pods disagree (restart the pods to reload it); retrying every 30s", t.fake.base)
    );
    assert_requeued(task, Duration::from_secs(30)).await;
    t.done().await;
}

#[tokio::test]
async fn missing_admin_token_secret_waits_without_calling_the_kernel() {
    let (mut t, _, issuer_secret, own) = start_with_own_key().await;
    let task = run(with_key(&own), &t.ctx);
    t.server
        .producer_reads(&kernel("k", 1), &issuer_secret, None)
        .await;
    t.server.get(&secret_uri("k-admin-token"), None).await;
    let (_, message) = blocked_status(&mut t.server, "AdminTokenNotReady").await;
    assert_eq!(message, "FdcKernel apps/k has no admin token Secret k-admin-token yet, which is needed to approve spec.publicKey; see the kernel's status");
    assert_requeued(task, Duration::from_secs(30)).await;
    assert!(t.fake.key_approvals().is_empty());
    t.done().await;
}

#[tokio::test]
async fn kernel_without_auth_gets_no_approval_call_and_the_secret_is_still_written() {
    let (mut t, _, issuer_secret, own) = start_with_own_key().await;
    let mut k = kernel("k", 1);
    k.spec.auth.enabled = false;
    let task = run(with_key(&own), &t.ctx);
    t.server.producer_reads(&k, &issuer_secret, None).await;
    t.server.expect_event(NS, "TokenIssued").await;
    t.server.credentials_apply().await;
    let status = t.server.producer_status_apply().await;
    outcome(task).await;
    let key = condition(&status, "KeyApproved");
    assert_eq!(status_reason(&key), ("False", "KernelAuthDisabled"));
    assert_eq!(
        key["message"],
        "FdcKernel apps/k runs with spec.auth.enabled=false: it has no registration flow to approve spec.publicKey for (and checks no tokens)"
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert!(t.fake.key_approvals().is_empty());
    t.done().await;
}
