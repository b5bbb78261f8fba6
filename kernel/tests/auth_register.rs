//! The registration flow on `fdc:register` against a running kernel: exact replies and rows.

mod auth_support;

use auth_support::*;
use fdc_kernel::auth::keys::{self, SigningKey};
use fdc_kernel::auth::registration::reply::Status;
use fdc_kernel::auth::registration::{request, seal};
use fdc_kernel::auth::token::TokenVerifier;
use fdc_kernel::testsupport::*;
use uuid::Uuid;

fn fields_of(f: &[(String, String)]) -> Vec<(String, String)> {
    f.to_vec()
}

fn set(f: &mut [(String, String)], name: &str, value: &str) {
    f.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_string();
}

fn request_for(key: &SigningKey, name: &str) -> Vec<(String, String)> {
    request::build(
        key,
        name,
        Some("temperature"),
        &request::new_nonce(),
        now_ns(),
    )
}

async fn approve(k: &AuthKernel, registration_id: Uuid, producer_id: Option<Uuid>) -> Uuid {
    let resp = reqwest::Client::new()
        .post(k.admin_url(&format!("/v1/registrations/{registration_id}/approve")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"producer_id": producer_id, "reason": "known device"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    v["producer_id"].as_str().unwrap().parse().unwrap()
}

async fn pending_registration(pg: &sqlx::PgPool, fp: &str) -> Uuid {
    sqlx::query_scalar(
        "SELECT registration_id FROM producer_registrations WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(fp)
    .fetch_one(pg)
    .await
    .unwrap()
}

#[tokio::test]
async fn unknown_key_is_pending_then_issued_after_approval_and_token_opens_only_with_its_key() {
    let k = AuthKernel::start(Options::default()).await;
    let redis = k.env.redis_conn().await;
    let pg = k.env.pg().await;
    let key = keys::generate();
    let fp = keys::fingerprint(&key.verifying_key());

    let r = ask(&redis, &fp, &request_for(&key, "sensor-7")).await;
    assert_eq!(r.status, Status::Pending);
    assert!(r.grant.is_none());
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM producer_keys WHERE fingerprint = '{fp}' AND status = 'pending'")).await,
        1
    );
    // Asking again while pending keeps a single open registration.
    let r = ask(&redis, &fp, &request_for(&key, "sensor-7")).await;
    assert_eq!(r.status, Status::Pending);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        1
    );

    let registration = pending_registration(&pg, &fp).await;
    let producer_id = approve(&k, registration, None).await;

    let r = ask(&redis, &fp, &request_for(&key, "sensor-7")).await;
    assert_eq!(r.status, Status::Issued);
    let grant = r.grant.unwrap();
    assert_eq!(grant.producer_id, producer_id);
    // Only the producer's own private key opens the sealed token.
    assert!(seal::open(&keys::generate(), &grant.sealed_token).is_err());
    assert!(seal::open(&k.signing_key, &grant.sealed_token).is_err());
    let token = String::from_utf8(seal::open(&key, &grant.sealed_token).unwrap()).unwrap();
    let verifier =
        TokenVerifier::new("fdc-test", "fdc-kernel-test").with_key(&k.signing_key.verifying_key());
    let claims = verifier.verify(&token).unwrap();
    assert_eq!(claims.sub, producer_id);
    assert_eq!(claims.name, "sensor-7");
    assert_eq!(claims.schema.as_deref(), Some("temperature"));
    assert_eq!(grant.expires_at, claims.exp);

    // The token works for ingest, and the stored event carries the producer id.
    publish(&redis, "events", &[data_entry(Some(&token), 1)]).await;
    let sql = format!("SELECT count(*) FROM events WHERE producer_id = '{producer_id}'");
    assert_eq!(wait_for(WAIT, 1, || count(&pg, &sql)).await, 1);
    // The token is on Redis only sealed.
    let all = read_stream(&redis, &format!("fdc:register:reply:{fp}")).await;
    assert!(all.iter().all(|e| e.values().all(|v| !v.contains(&token))));
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM auth_tokens_issued WHERE producer_id = '{producer_id}' AND via = 'register' AND jti = '{}'", claims.jti)).await,
        1
    );
    assert_eq!(
        k.metric("kernel_auth_register_total{status=\"issued\"}")
            .await,
        1.0
    );
    assert_eq!(
        k.metric("kernel_auth_register_total{status=\"pending\"}")
            .await,
        2.0
    );

    let mut secrets = vec![token.as_str(), ADMIN_TOKEN];
    let ks: Vec<String> = key_secrets(&key)
        .into_iter()
        .chain(key_secrets(&k.signing_key))
        .collect();
    secrets.extend(ks.iter().map(String::as_str));
    assert_logs_clean(&secrets);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn replay_stale_bad_signature_malformed_and_oversize_are_invalid() {
    let k = AuthKernel::start(Options::default()).await;
    let redis = k.env.redis_conn().await;
    let pg = k.env.pg().await;
    let key = keys::generate();
    let fp = keys::fingerprint(&key.verifying_key());

    let first = request_for(&key, "sensor");
    assert_eq!(ask(&redis, &fp, &first).await.status, Status::Pending);
    let replay = ask(&redis, &fp, &first).await;
    assert_eq!(
        (replay.status, replay.detail.as_str()),
        (Status::Invalid, "replayed_nonce")
    );

    let stale = request::build(
        &key,
        "sensor",
        None,
        &request::new_nonce(),
        now_ns() - 600_000_000_000,
    );
    let r = ask(&redis, &fp, &stale).await;
    assert_eq!((r.status, r.detail.as_str()), (Status::Invalid, "stale_ts"));

    let mut bad_sig = fields_of(&request_for(&key, "sensor"));
    set(&mut bad_sig, "name", "someone-else");
    let r = ask(&redis, &fp, &bad_sig).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Invalid, "bad_signature")
    );

    let mut bad_b64 = request_for(&key, "sensor");
    set(&mut bad_b64, "sig", "%%%not-base64%%%");
    let r = ask(&redis, &fp, &bad_b64).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Invalid, "bad_base64")
    );

    let oversize = request::build(
        &key,
        &"x".repeat(500),
        None,
        &request::new_nonce(),
        now_ns(),
    );
    let r = ask(&redis, &fp, &oversize).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Invalid, "too_large")
    );

    // An unreadable public key has no reply stream; it is counted and changes nothing.
    let mut bad_key = request_for(&keys::generate(), "sensor");
    set(&mut bad_key, "public_key", "***");
    publish(&redis, "fdc:register", &[bad_key]).await;
    assert_eq!(
        wait_for(WAIT, 6.0, || k
            .metric("kernel_auth_register_total{status=\"invalid\"}"))
        .await,
        6.0
    );
    assert_eq!(
        k.metric("kernel_auth_register_total{status=\"pending\"}")
            .await,
        1.0
    );
    // Only the first request left rows; each valid-signature request used its nonce once.
    assert_eq!(count(&pg, "SELECT count(*) FROM producer_keys").await, 1);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        1
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM auth_nonces").await, 1);
    // Processed requests are acknowledged and removed.
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    let ks = key_secrets(&key);
    let secrets: Vec<&str> = ks.iter().map(String::as_str).collect();
    assert_logs_clean(&secrets);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn rate_limit_per_key_and_rejected_or_revoked_keys_are_denied() {
    let k = AuthKernel::start(Options {
        rate_limit: 2,
        ..Options::default()
    })
    .await;
    let redis = k.env.redis_conn().await;
    let pg = k.env.pg().await;
    let http = reqwest::Client::new();

    // An approved key: two tokens, then rate limited.
    let key = keys::generate();
    let fp = keys::fingerprint(&key.verifying_key());
    assert_eq!(
        ask(&redis, &fp, &request_for(&key, "a")).await.status,
        Status::Pending
    );
    approve(&k, pending_registration(&pg, &fp).await, None).await;
    assert_eq!(
        ask(&redis, &fp, &request_for(&key, "a")).await.status,
        Status::Issued
    );
    assert_eq!(
        ask(&redis, &fp, &request_for(&key, "a")).await.status,
        Status::Issued
    );
    let r = ask(&redis, &fp, &request_for(&key, "a")).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Denied, "rate_limited")
    );
    assert!(r.grant.is_none());
    // The limit is per key: another approved key still gets its token.
    let other = keys::generate();
    let ofp = keys::fingerprint(&other.verifying_key());
    assert_eq!(
        ask(&redis, &ofp, &request_for(&other, "b")).await.status,
        Status::Pending
    );
    approve(&k, pending_registration(&pg, &ofp).await, None).await;
    assert_eq!(
        ask(&redis, &ofp, &request_for(&other, "b")).await.status,
        Status::Issued
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM auth_tokens_issued").await,
        3
    );

    // A rejected key is refused.
    let rejected = keys::generate();
    let rfp = keys::fingerprint(&rejected.verifying_key());
    assert_eq!(
        ask(&redis, &rfp, &request_for(&rejected, "c")).await.status,
        Status::Pending
    );
    let reg = pending_registration(&pg, &rfp).await;
    let resp = http
        .post(k.admin_url(&format!("/v1/registrations/{reg}/reject")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "unknown device"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let r = ask(&redis, &rfp, &request_for(&rejected, "c")).await;
    assert_eq!((r.status, r.detail.as_str()), (Status::Denied, "rejected"));

    // A revoked key is refused.
    let resp = http
        .post(k.admin_url(&format!("/v1/keys/{ofp}/revoke")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"reason": "device lost"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let r = ask(&redis, &ofp, &request_for(&other, "b")).await;
    assert_eq!((r.status, r.detail.as_str()), (Status::Denied, "revoked"));
    assert_eq!(
        count(&pg, "SELECT count(*) FROM auth_tokens_issued").await,
        3
    );
    assert_eq!(
        k.metric("kernel_auth_register_total{status=\"denied\"}")
            .await,
        3.0
    );
    // Two public keys as base64 never make a secret; the private halves must not be logged.
    let ks: Vec<String> = [&key, &other, &rejected]
        .iter()
        .flat_map(|k| key_secrets(k))
        .collect();
    let secrets: Vec<&str> = ks.iter().map(String::as_str).collect();
    assert_logs_clean(&secrets);
    k.kernel.shutdown().await;
}
