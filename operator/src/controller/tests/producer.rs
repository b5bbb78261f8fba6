//! `Producer` reconciler against the mock API server, with tokens checked by the kernel's
//! own verifier.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use fdc_common::{keys, token::TokenVerifier};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::builders::issuer_keys::IssuerKeySet;
use crate::controller::fixtures::{
    assert_requeued, being_deleted, condition, kernel, kernel_uri, outcome, producer, run,
    secret_uri, unreachable_context, without_finalizers, AdminCall, ProducerTest, APPLY, NS,
    PRODUCER_UID,
};
use crate::crd::Producer;
use crate::labels::PRODUCER_FINALIZER;

pub(super) const DAY: u64 = 24 * 3600;

pub(super) fn decode(data: &Value, key: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD
        .decode(data[key].as_str().unwrap())
        .unwrap();
    String::from_utf8(b).unwrap()
}

/// The kernel's issuer key set and its Secret as the API returns it.
pub(super) fn issuer() -> (IssuerKeySet, Value) {
    let keys = IssuerKeySet::generate().unwrap();
    let secret = serde_json::to_value(keys.to_secret(&kernel("k", 1), None).unwrap()).unwrap();
    (keys, secret)
}

pub(super) fn verifier(keys: &IssuerKeySet) -> TokenVerifier {
    let mut v = TokenVerifier::new("fdc", "fdc-kernel");
    for k in keys.keys() {
        v.add_key(&keys::verifying_key_from_pem(&k.public_pem, Path::new("test")).unwrap());
    }
    v
}

/// One apply pass of `p` (with `stored` credentials) to its end; returns the applied Secret,
/// whether a token event was published (its reason), the status and the pass's action.
pub(super) async fn apply_pass(
    t: &mut ProducerTest,
    p: Producer,
    issuer_secret: &Value,
    stored: Option<&Value>,
) -> (Value, Option<String>, Value, Action) {
    let task = run(p, &t.ctx);
    let server = &mut t.server;
    server
        .producer_reads(&kernel("k", 1), issuer_secret, stored)
        .await;
    let mut event = None;
    let next = server.next().await;
    // An Event: created, or patched into a series when the same one repeats.
    let call = if next
        .uri
        .starts_with(&format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"))
    {
        event = Some(next.body["reason"].as_str().unwrap().to_string());
        assert!(
            !next.body.to_string().contains("eyJ"),
            "no token in events: {}",
            next.body
        );
        next.echo();
        server
            .expect("PATCH", &format!("{}{APPLY}", secret_uri("p-credentials")))
            .await
    } else {
        assert_eq!(
            (next.method.as_str(), next.uri.as_str()),
            (
                "PATCH",
                format!("{}{APPLY}", secret_uri("p-credentials")).as_str()
            )
        );
        next
    };
    let secret = call.body.clone();
    call.echo();
    server.admin_token_read(NS).await;
    let status = server.producer_status_apply().await;
    (secret, event, status, outcome(task).await)
}

/// The requeue delay of `action` is within 5s below `expected` (time passes during the test).
pub(super) fn assert_requeue_near(action: Action, expected: Duration) {
    // Action keeps its delay private; its Debug form shows it (e.g. `57599.99s`).
    let debug = format!("{action:?}");
    let secs: f64 = debug
        .split("Some(")
        .nth(1)
        .and_then(|rest| rest.split("s)").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no requeue delay in {debug}"));
    let expected = expected.as_secs_f64();
    assert!(
        secs <= expected && secs >= expected - 5.0,
        "expected a requeue of about {expected}s, got {debug}"
    );
}

#[tokio::test]
async fn new_producer_gets_a_token_the_kernel_accepts_and_renewal_is_scheduled() {
    let mut t = ProducerTest::start().await;
    let (keys, issuer_secret) = issuer();

    let (secret, event, status, action) =
        apply_pass(&mut t, producer("p", "k"), &issuer_secret, None).await;
    assert_eq!(event.as_deref(), Some("TokenIssued"));

    let data = &secret["data"];
    assert_eq!(decode(data, "producer-id"), PRODUCER_UID);
    assert_eq!(decode(data, "stream"), "events");
    let claims = verifier(&keys)
        .verify(&decode(data, "token"))
        .expect("kernel verifier accepts the token");
    assert_eq!(claims.sub.to_string(), PRODUCER_UID);
    assert_eq!(claims.name, "p");
    assert_eq!(claims.schema, None, "no spec.schema, no schema claim");
    assert_eq!(claims.exp - claims.iat, DAY as i64);
    // A generated key pair, whose fingerprint is the one reported.
    let public = decode(data, "public-key.pem");
    assert!(decode(data, "private-key.pem").starts_with("-----BEGIN PRIVATE KEY-----"));
    let fingerprint = crate::auth::fingerprint(&public).unwrap();
    assert_eq!(decode(data, "fingerprint"), fingerprint);
    assert_eq!(
        secret["metadata"]["ownerReferences"][0]["uid"],
        PRODUCER_UID
    );

    let st = &status["status"];
    assert_eq!(st["producerId"], PRODUCER_UID);
    assert_eq!(st["secretName"], "p-credentials");
    assert_eq!(st["fingerprint"], fingerprint.as_str());
    assert_eq!(st["tokenKeyId"], keys.current_kid());
    let expires: Timestamp = st["tokenExpiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.as_second(), claims.exp);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "True");
    assert!(
        !status.to_string().contains(&decode(data, "token")),
        "no token in status"
    );
    // The expiry column reads "23h" (24h minus the moments since issuance, rounded down)
    // until an hour has passed, well before renewal (16h); the last-seen time is read again
    // sooner.
    assert_eq!(st["tokenExpiresIn"], "23h");
    assert_requeue_near(action, Duration::from_secs(300));
    // The kernel never saw the producer (404): no last-seen time.
    assert_eq!(st.get("lastSeenAt"), None);

    // Second pass: the stored token is still fresh: reused as is, no Event, same key pair.
    // The kernel has seen the producer now: the time it shows is the status's.
    t.fake
        .set_producer_seen(PRODUCER_UID, json!("2026-12-07T04:20:01.250Z"));
    let (again, event, status, _) =
        apply_pass(&mut t, producer("p", "k"), &issuer_secret, Some(&secret)).await;
    assert_eq!(event, None);
    assert_eq!(again["data"], secret["data"]);
    // (Kubernetes times are whole seconds.)
    assert_eq!(status["status"]["lastSeenAt"], "2026-12-07T04:20:01Z");
    let reads = t.fake.producer_reads();
    assert_eq!(reads.len(), 2);
    assert_eq!(reads[1].path, format!("/v1/producers/{PRODUCER_UID}"));
    assert_eq!(reads[1].authorization, "Bearer admin-secret-token");

    t.done().await;
}

#[tokio::test]
async fn token_due_for_renewal_or_signed_by_a_rotated_key_is_reissued() {
    let mut t = ProducerTest::start().await;
    let (keys, issuer_secret) = issuer();
    let (secret, _, _, _) = apply_pass(&mut t, producer("p", "k"), &issuer_secret, None).await;

    // Renewal: the stored token expires in 1h, past its renewal point (24h/3 before expiry).
    let mut due = secret.clone();
    due["metadata"]["annotations"]["fdc.dev/token-expires-at"] =
        json!((Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1)).to_string());
    let (renewed, event, _, _) =
        apply_pass(&mut t, producer("p", "k"), &issuer_secret, Some(&due)).await;
    assert_eq!(event.as_deref(), Some("TokenRenewed"));
    assert_ne!(
        decode(&renewed["data"], "token"),
        decode(&secret["data"], "token")
    );
    assert_eq!(
        decode(&renewed["data"], "private-key.pem"),
        decode(&secret["data"], "private-key.pem"),
        "key pair kept"
    );

    // Rotation: the kernel signs with a new key now; the token follows.
    let mut rotated = keys.clone();
    let new_kid = rotated
        .rotate(Duration::from_secs(DAY), Timestamp::now())
        .unwrap();
    let rotated_secret =
        serde_json::to_value(rotated.to_secret(&kernel("k", 1), Some("r1")).unwrap()).unwrap();
    let (resigned, event, status, _) =
        apply_pass(&mut t, producer("p", "k"), &rotated_secret, Some(&renewed)).await;
    assert_eq!(event.as_deref(), Some("TokenRenewed"));
    assert_eq!(status["status"]["tokenKeyId"], new_kid.as_str());
    assert_eq!(
        resigned["metadata"]["annotations"]["fdc.dev/token-kid"],
        new_kid.as_str()
    );
    verifier(&rotated)
        .verify(&decode(&resigned["data"], "token"))
        .unwrap();
    // The old token still verifies during the overlap (old key kept), as promised.
    verifier(&rotated)
        .verify(&decode(&renewed["data"], "token"))
        .unwrap();

    t.done().await;
}

#[tokio::test]
async fn missing_kernel_is_reported_without_an_error() {
    let mut t = ProducerTest::start().await;
    let task = run(producer("p", "k"), &t.ctx);
    t.server.expect("GET", &kernel_uri()).await.not_found();
    let status = t.server.producer_status_apply().await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KernelNotFound");
    assert_eq!(
        ready["message"],
        "FdcKernel apps/k not found; create it or fix spec.kernelRef"
    );
    assert_requeued(task, Duration::from_secs(30)).await;
    t.done().await;
}

#[tokio::test]
async fn a_new_producer_first_gets_the_finalizer() {
    let mut t = ProducerTest::start().await;
    let task = run(without_finalizers(producer("p", "k")), &t.ctx);
    assert_eq!(
        t.server.producer_patch().await,
        json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": [PRODUCER_FINALIZER]}
        ])
    );
    assert_eq!(outcome(task).await, Action::await_change());
    t.done().await;
}

fn deleting() -> Producer {
    being_deleted(producer("p", "k"))
}

#[tokio::test]
async fn deletion_revokes_at_the_kernel_then_removes_the_finalizer() {
    let mut t = ProducerTest::start().await;
    let task = run(deleting(), &t.ctx);
    t.server.deletion_reads().await;
    let event = t.server.expect_event(NS, "Revoked").await;
    assert!(!event.to_string().contains("admin-secret-token"));
    assert_eq!(
        t.server.producer_patch().await,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": PRODUCER_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"}
        ])
    );
    assert_eq!(outcome(task).await, Action::await_change());
    assert_eq!(
        t.fake.revokes(),
        vec![AdminCall {
            path: format!("/v1/producers/{PRODUCER_UID}/revoke"),
            authorization: "Bearer admin-secret-token".into(),
            body: json!({"reason": "Producer apps/p deleted"}),
        }]
    );
    t.done().await;
}

#[tokio::test]
async fn failed_revocation_keeps_the_finalizer_and_says_how_to_give_up() {
    let mut t = ProducerTest::start().await;
    t.fake.set_revoke_status(503);
    let task = run(deleting(), &t.ctx);
    t.server.deletion_reads().await;
    let event = t.server.expect_event(NS, "RevocationFailed").await;
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("fdc.dev/skip-revoke=true"),
        "{event}"
    );
    // The Producer no longer claims its credentials are fine: Ready=False with the cause.
    let status = t.server.producer_status_apply().await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "DeletionBlocked");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with("deletion waits: the producer must be revoked at FdcKernel apps/k first, which failed: kernel API: "),
        "{message}"
    );
    assert!(message.contains("answered HTTP 503"), "{message}");
    assert!(
        message.ends_with("To delete without revoking: kubectl -n apps annotate producer p fdc.dev/skip-revoke=true"),
        "{message}"
    );
    let err = task.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("answered HTTP 503"), "{err}");
    assert_eq!(t.fake.revokes().len(), 1);
    t.done().await;
}

#[tokio::test]
async fn an_unreachable_kernel_blocks_deletion_with_the_os_cause() {
    // Nothing listens there: the connection is refused, and the message says so (not just
    // hyper's "client error (Connect)").
    let (ctx, mut server, base) = unreachable_context();
    let mut p = deleting();
    p.status = Some(crate::crd::ProducerStatus {
        token_expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2030-01-01T00:00:00Z".parse().unwrap(),
        )),
        ..Default::default()
    });
    let task = run(p, &ctx);
    server.deletion_reads().await;
    server.expect_event(NS, "RevocationFailed").await;
    let status = server.producer_status_apply().await;
    let ready = condition(&status, "Ready");
    task.await.unwrap().unwrap_err();
    assert_eq!(ready["status"], "False");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("request to {base}/v1/producers/")),
        "{message}"
    );
    assert!(message.contains("Connection refused"), "{message}");
    assert!(
        message.contains("its token stays valid until 2030-01-01T00:00:00Z"),
        "{message}"
    );
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn deletion_after_the_kernel_is_gone_just_releases() {
    let mut t = ProducerTest::start().await;
    let task = run(deleting(), &t.ctx);
    t.server.expect("GET", &kernel_uri()).await.not_found();
    t.server.producer_patch().await;
    outcome(task).await;
    assert!(t.fake.revokes().is_empty());
    t.done().await;
}

#[tokio::test]
async fn cross_namespace_reference_needs_the_kernels_permission() {
    let mut t = ProducerTest::start().await;
    let mut p = producer("p", "k");
    p.spec.kernel_ref.namespace = Some("ingest".into());
    let mut k = kernel("k", 1);
    k.metadata.namespace = Some("ingest".into());
    let task = run(p, &t.ctx);
    t.server
        .get(
            "/apis/fdc.dev/v1alpha1/namespaces/ingest/fdckernels/k",
            Some(&serde_json::to_value(&k).unwrap()),
        )
        .await;
    let status = t.server.producer_status_apply().await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "NamespaceNotAllowed");
    assert_eq!(
        ready["message"],
        "FdcKernel ingest/k does not accept Producers from namespace apps; add it to the kernel's spec.auth.allowedProducerNamespaces"
    );
    assert_eq!(outcome(task).await, Action::await_change());

    // Allowed: the issuer key is read in the kernel's namespace, the Secret written in the
    // Producer's own.
    k.spec.auth.allowed_producer_namespaces = vec![NS.to_string()];
    let mut p = producer("p", "k");
    p.spec.kernel_ref.namespace = Some("ingest".into());
    let task = run(p, &t.ctx);
    let (_, issuer_secret) = issuer();
    t.server.producer_reads(&k, &issuer_secret, None).await;
    t.server.expect_event(NS, "TokenIssued").await;
    t.server.credentials_apply().await;
    t.server.admin_token_read("ingest").await;
    t.server.producer_status_apply().await;
    outcome(task).await;
    t.done().await;
}

#[tokio::test]
async fn a_producer_the_kernel_never_saw_is_released_with_an_honest_warning() {
    let mut t = ProducerTest::start().await;
    t.fake.set_revoke_status(404);
    let mut p = deleting();
    p.status = Some(crate::crd::ProducerStatus {
        token_expires_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_900_000_000).unwrap(),
        )),
        ..Default::default()
    });
    let task = run(p, &t.ctx);
    t.server.deletion_reads().await;
    let event = t.server.expect_event(NS, "NotRevocable").await;
    assert_eq!(event["type"], "Warning");
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("stays valid until 2030-03-17T17:46:40Z"),
        "{event}"
    );
    t.server.producer_patch().await;
    outcome(task).await;
    t.done().await;
}
