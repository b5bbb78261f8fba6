//! Pre-approval of an externally held key (`POST /v1/producers/{id}/keys`, `admin
//! approve-key`): the key's first `register` is issued, repeats change nothing, conflicts and
//! unauthorized calls change nothing.

use crate::auth_support::*;
use crate::support::*;
use base64::Engine;
use fdc_common::keys::{self, SigningKey};
use fdc_kernel::auth::registration::reply::Status;
use serde_json::{json, Value};
use uuid::Uuid;

fn pem(key: &SigningKey) -> String {
    keys::verifying_key_to_pem(&key.verifying_key()).unwrap()
}

fn fp(key: &SigningKey) -> String {
    keys::fingerprint(&key.verifying_key())
}

/// POST the pre-approval with the admin token; returns the status and the JSON body.
async fn preapprove(k: &AuthKernel, producer: Uuid, body: &Value) -> (u16, Value) {
    k.admin_post(&format!("/v1/producers/{producer}/keys"), body)
        .await
}

fn body(key: &SigningKey, name: &str, reason: &str) -> Value {
    json!({"public_key": pem(key), "name": name, "schema": null, "reason": reason})
}

/// Counts of every table a pre-approval may touch.
async fn snapshot(pg: &sqlx::PgPool) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "SELECT count(*) FROM producers",
        "SELECT count(*) FROM producers WHERE revoked_at IS NOT NULL",
        "SELECT count(*) FROM producer_keys",
        "SELECT count(*) FROM producer_keys WHERE status = 'approved'",
        "SELECT count(*) FROM producer_registrations WHERE status = 'pending'",
        "SELECT count(*) FROM auth_decisions",
        "SELECT count(*) FROM auth_tokens_issued",
    ] {
        out.push(count(pg, sql).await);
    }
    out
}

#[tokio::test]
async fn preapproved_key_is_issued_on_first_register_and_repeats_change_nothing() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (key, fp) = new_key();
    let producer = Uuid::now_v7();

    let (status, out) = preapprove(
        &k,
        producer,
        &body(&key, "edge-1", "declared by Producer apps/edge-1"),
    )
    .await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(
        out,
        json!({"producer_id": producer, "fingerprint": fp, "changed": true, "producer_created": true})
    );
    let row: (String, String, Option<Uuid>, String) = sqlx::query_as(
        "SELECT p.name, k.status, k.producer_id, k.decision_reason
           FROM producer_keys k JOIN producers p ON p.producer_id = $2
          WHERE k.fingerprint = $1 AND k.decided_at IS NOT NULL",
    )
    .bind(&fp)
    .bind(producer)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "edge-1".to_string(),
            "approved".to_string(),
            Some(producer),
            "declared by Producer apps/edge-1".to_string()
        )
    );
    let decisions: Vec<(String, String, Option<Uuid>, String)> =
        sqlx::query_as("SELECT action, target, producer_id, reason FROM auth_decisions")
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(
        decisions,
        vec![(
            "approve".to_string(),
            fp.clone(),
            Some(producer),
            "declared by Producer apps/edge-1".to_string()
        )]
    );
    let after_first = snapshot(&pg).await;
    assert_eq!(after_first, vec![1, 0, 1, 1, 0, 1, 0]);

    // Idempotent: the same key (PEM or raw base64) for the same producer is a 200 no-op,
    // even with another name or reason; nothing is recorded.
    let (status, out) = preapprove(&k, producer, &body(&key, "renamed", "again")).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["changed"], false);
    assert_eq!(out["producer_created"], false);
    let raw = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let (status, _) = preapprove(
        &k,
        producer,
        &json!({"public_key": raw, "name": "edge-1", "reason": "raw form"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(snapshot(&pg).await, after_first);

    // The producer registers itself: issued at once, no pending step.
    let r = ask(&redis, &fp, &register_request(&key, "edge-1", None)).await;
    assert_eq!(r.status, Status::Issued, "{}", r.detail);
    let grant = r.grant.unwrap();
    assert_eq!(grant.producer_id, producer);
    assert_eq!(grant.kid, k.issuer.kid());
    let (token, claims) = k.open_grant(&key, &grant);
    assert_eq!(claims.sub, producer);
    assert_eq!(claims.name, "edge-1");
    assert_eq!(claims.schema, None);
    assert_eq!(grant.expires_at, claims.exp);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        0
    );
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM auth_tokens_issued WHERE producer_id = '{producer}' AND fingerprint = '{fp}' AND via = 'register'")).await,
        1
    );
    // The token is accepted at ingest and the event carries the producer id.
    k.assert_ingests_as(&token, producer).await;
    assert_eq!(k.register_replies("issued").await, 1.0);
    // No pending reply was ever sent (the series is absent, -1, or 0).
    let pending = k.register_replies("pending").await;
    assert!(pending <= 0.0, "pending replies: {pending}");

    k.finish(&[&token, ADMIN_TOKEN], &[&key]).await;
}

#[tokio::test]
async fn preapproval_answers_a_pending_request_and_keeps_an_existing_producer() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;

    // A producer the kernel knows (from a token), and a key that asked before approval.
    let producer = Uuid::now_v7();
    k.assert_ingests_as(&k.token(producer, "orders"), producer)
        .await;
    let (key, fp) = new_key();
    let r = ask(&redis, &fp, &register_request(&key, "orders", None)).await;
    assert_eq!(r.status, Status::Pending);

    let (status, out) = preapprove(&k, producer, &body(&key, "ignored", "operator")).await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["producer_created"], false);
    let reg: (String, Option<Uuid>, Option<String>) = sqlx::query_as(
        "SELECT status, producer_id, decision_reason FROM producer_registrations WHERE fingerprint = $1",
    )
    .bind(&fp)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert_eq!(
        reg,
        (
            "approved".to_string(),
            Some(producer),
            Some("operator".into())
        )
    );
    // The existing producer row is kept as it was (name from its first token).
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM producers WHERE producer_id = '{producer}' AND name = 'orders'")).await,
        1
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM producers").await, 1);

    let r = ask(&redis, &fp, &register_request(&key, "orders", None)).await;
    assert_eq!(r.status, Status::Issued, "{}", r.detail);
    let grant = r.grant.unwrap();
    assert_eq!(grant.producer_id, producer);
    let (token, claims) = k.open_grant(&key, &grant);
    assert_eq!(claims.sub, producer);
    k.finish(&[token.as_str(), ADMIN_TOKEN], &[]).await;
}

#[tokio::test]
async fn conflicts_bad_input_and_unauthorized_calls_change_nothing() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;

    // Key A approved for P1; key C approved for P3 then revoked; P4 revoked; key B rejected.
    let (a, c, b, d) = (
        keys::generate(),
        keys::generate(),
        keys::generate(),
        keys::generate(),
    );
    let (p1, p2, p3, p4) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    assert_eq!(preapprove(&k, p1, &body(&a, "a", "r")).await.0, 201);
    assert_eq!(preapprove(&k, p3, &body(&c, "c", "r")).await.0, 201);
    let revoke_key = format!("/v1/keys/{}/revoke", fp(&c));
    assert_eq!(k.decide(&revoke_key, "lost").await, 204);
    let revoke_producer = format!("/v1/producers/{p4}/revoke");
    assert_eq!(k.decide(&revoke_producer, "gone").await, 204);
    let r = ask(&redis, &fp(&b), &register_request(&b, "b", None)).await;
    assert_eq!(r.status, Status::Pending);
    let reg: Uuid = sqlx::query_scalar("SELECT registration_id FROM producer_registrations")
        .fetch_one(&pg)
        .await
        .unwrap();
    let reject = format!("/v1/registrations/{reg}/reject");
    assert_eq!(k.decide(&reject, "unknown device").await, 204);
    let before = snapshot(&pg).await;
    // producers p1, p3, p4 (revoked); keys a, c, b; approved: a; decisions: 2 approves,
    // 2 revokes, 1 reject.
    assert_eq!(before, vec![3, 1, 3, 1, 0, 5, 0]);

    let key_is = |key: &SigningKey, state: &str| format!("conflict: key {} is {state}", fp(key));
    let final_state =
        |state: &str| format!("{state}; it cannot be approved again (generate a new key)");
    let conflicts = [
        (
            p2,
            body(&a, "a2", "r"),
            key_is(
                &a,
                &format!("already approved for producer {p1}; a key serves one producer (use another key)"),
            ),
        ),
        (p3, body(&c, "c", "r"), key_is(&c, &final_state("revoked"))),
        (p2, body(&b, "b", "r"), key_is(&b, &final_state("rejected"))),
        (
            p4,
            body(&d, "d", "r"),
            format!(
                "conflict: producer {p4} is revoked; a revoked producer gets no keys (use a new producer id)"
            ),
        ),
    ];
    for (producer, req, message) in &conflicts {
        let (status, out) = preapprove(&k, *producer, req).await;
        assert_eq!((status, out), (409, json!({ "error": message })));
    }
    let bad = [
        json!({"public_key": "not a key", "name": "x", "reason": "r"}),
        json!({"public_key": pem(&d), "name": "", "reason": "r"}),
        json!({"public_key": pem(&d), "name": "x", "schema": "a\nb", "reason": "r"}),
        json!({"public_key": pem(&d), "name": "x", "reason": " "}),
    ];
    for req in &bad {
        assert_eq!(preapprove(&k, p2, req).await.0, 400, "{req}");
    }
    assert_eq!(snapshot(&pg).await, before);

    // Without, with a wrong, or with a truncated admin token: 401, nothing changes.
    let good = body(&d, "d", "r");
    let path = format!("/v1/producers/{p2}/keys");
    for auth in [
        None,
        Some("wrong-token"),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
    ] {
        let mut req = reqwest::Client::new().post(k.admin_url(&path)).json(&good);
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401, "{auth:?}");
    }
    assert_eq!(snapshot(&pg).await, before);
    assert_eq!(k.metric("kernel_auth_admin_unauthorized_total").await, 3.0);
    // The same body with the admin token is accepted (the 401s were about the token only).
    assert_eq!(preapprove(&k, p2, &good).await.0, 201);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM auth_decisions").await,
        before[5] + 1
    );
    k.finish(&[ADMIN_TOKEN], &[]).await;
}

// Multi-threaded: the test blocks on the CLI processes while the kernel runs on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_approve_key_then_register_gets_a_token_without_waiting() {
    let k = AuthKernel::start(Options::default()).await;
    let pg = k.env.pg().await;
    let dir = k.dir.path().join("producer");
    let (code, out) = run_cli({
        let mut c = kernel_cli();
        c.arg("keygen").arg("--out").arg(&dir);
        c
    });
    assert_eq!(code, 0, "{out}");
    let key = keys::load_signing_key(&dir.join(keys::PRIVATE_KEY_FILE)).unwrap();
    let producer = Uuid::now_v7();
    let approve = || {
        let mut c = kernel_cli();
        c.arg("admin")
            .arg("--url")
            .arg(format!("http://{}", k.admin))
            .arg("--token-file")
            .arg(k.dir.path().join("admin-token"))
            .arg("approve-key")
            .arg(producer.to_string())
            .arg("--public-key")
            .arg(dir.join(keys::PUBLIC_KEY_FILE))
            .args(["--name", "cli-edge", "--reason", "provisioned"]);
        c
    };
    let (code, out) = run_cli(approve());
    assert_eq!(code, 0, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        json!({"producer_id": producer, "fingerprint": fp(&key), "changed": true, "producer_created": true})
    );
    let (code, out) = run_cli(approve());
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["changed"],
        false
    );

    // No --wait: a pending answer would exit 2.
    let (code, out) = run_cli({
        let mut c = kernel_cli();
        c.args(["register", "--name", "cli-edge", "--timeout", "20s"])
            .arg("--key")
            .arg(&dir)
            .env("FDC_REDIS__URL", k.env.redis.url());
        c
    });
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("producer id: {producer}")), "{out}");
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    assert_eq!(k.verify(token.trim()).sub, producer);
    assert!(!out.contains(token.trim()));
    assert_eq!(count(&pg, "SELECT count(*) FROM auth_decisions").await, 1);
    k.finish(&[token.trim(), ADMIN_TOKEN], &[&key]).await;
}
