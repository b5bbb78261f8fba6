//! Auth on the ingest path: real Redis and Postgres, exact DLQ entries, counts and metrics.

use std::time::Duration;

use crate::auth_support::*;
use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use fdc_common::keys;
use fdc_common::token::{Claims, TokenIssuer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use uuid::Uuid;

/// Claims of the kernel's issuer for producer `sub` (named "p"), for signing as they are.
fn claims(k: &AuthKernel, sub: Uuid, iat: i64, exp: i64, nbf: Option<i64>) -> Claims {
    Claims {
        nbf,
        ..k.issuer.claims(sub, "p", None, iat, exp)
    }
}

fn b64json(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn valid_token_stores_producer_id_and_every_bad_token_is_dead_lettered() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (producer, good) = k.new_producer("sensor-1");
    let now = chrono::Utc::now().timestamp();
    let kid = keys::kid(&k.signing_key.verifying_key());

    // Forged: a valid token with its payload swapped for another producer's.
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims =
        serde_json::to_value(claims(&k, Uuid::now_v7(), now, now + 600, None)).unwrap();
    let forged = format!("{}.{}.{}", parts[0], b64json(&forged_claims), parts[2]);
    let unknown_key = TokenIssuer::new(&keys::generate(), "fdc-test", "fdc-kernel-test")
        .unwrap()
        .issue(producer, "p", None, Duration::from_secs(600))
        .unwrap()
        .token;
    let expired = k
        .issuer
        .sign_claims(&claims(&k, producer, now - 7200, now - 3600, None))
        .unwrap();
    let not_yet = k
        .issuer
        .sign_claims(&claims(&k, producer, now, now + 7200, Some(now + 3600)))
        .unwrap();
    let wrong_iss = TokenIssuer::new(&k.signing_key, "someone-else", "fdc-kernel-test")
        .unwrap()
        .issue(producer, "p", None, Duration::from_secs(600))
        .unwrap()
        .token;
    let wrong_aud = TokenIssuer::new(&k.signing_key, "fdc-test", "other-audience")
        .unwrap()
        .issue(producer, "p", None, Duration::from_secs(600))
        .unwrap()
        .token;
    let body = serde_json::to_value(claims(&k, producer, now, now + 600, None)).unwrap();
    let alg_none = format!(
        "{}.{}.",
        b64json(&serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64json(&body)
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let public_pem = keys::verifying_key_to_pem(&k.signing_key.verifying_key()).unwrap();
    let hs256 = jsonwebtoken::encode(
        &hs_header,
        &body,
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let _ = k.signing_key.to_pkcs8_der().unwrap();

    let bad: Vec<(Option<&str>, &str)> = vec![
        (Some(&forged), "signature"),
        (Some(&unknown_key), "unknown_kid"),
        (Some(&expired), "expired"),
        (Some(&not_yet), "not_yet_valid"),
        (Some(&wrong_iss), "issuer"),
        (Some(&wrong_aud), "audience"),
        (Some(&alg_none), "algorithm"),
        (Some(&hs256), "algorithm"),
        (None, "missing"),
        (Some("garbage-not-a-jwt"), "malformed"),
    ];
    let mut entries = vec![data_entry(Some(&good), 0), data_entry(Some(&good), 1)];
    entries.extend(
        bad.iter()
            .enumerate()
            .map(|(i, (t, _))| data_entry(*t, 10 + i as i64)),
    );
    // A heartbeat with a good token and one without any.
    let heartbeat = |t: Option<&str>| {
        let mut f = vec![
            ("type".to_string(), "heartbeat".to_string()),
            ("version".into(), "1.0.0".into()),
            ("id".into(), Uuid::now_v7().to_string()),
            ("ts".into(), now_ns().to_string()),
        ];
        if let Some(t) = t {
            f.push(("token".into(), t.into()));
        }
        f
    };
    entries.push(heartbeat(Some(&good)));
    entries.push(heartbeat(None));
    publish(&redis, "events", &entries).await;

    let dead = wait_for(WAIT, 11, || xlen(&redis, "events:dlq")).await;
    assert_eq!(dead, 11);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 2);
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'")
        )
        .await,
        2
    );
    // last_seen_at is written in the background (best effort, off the ingest path).
    let seen = format!("SELECT count(*) FROM producers WHERE producer_id = '{producer}' AND name = 'sensor-1' AND last_seen_at IS NOT NULL");
    assert_eq!(wait_for(WAIT, 1, || count(&pg, &seen)).await, 1);
    assert_eq!(count(&pg, "SELECT count(*) FROM producers").await, 1);

    let dlq = read_stream(&redis, "events:dlq").await;
    let mut details: Vec<String> = dlq.iter().map(|e| e["detail"].clone()).collect();
    details.sort();
    let mut want: Vec<String> = bad.iter().map(|(_, w)| w.to_string()).collect();
    want.push("missing".into()); // the heartbeat without token
    want.sort();
    assert_eq!(details, want);
    for e in &dlq {
        assert_eq!(e["error"], "auth");
        assert!(
            !e.contains_key("token"),
            "token removed from the dead letter"
        );
        assert_eq!(e["source_stream"], "events");
    }
    let m = k.metrics().await;
    for (why, n) in [
        ("signature", 1.0),
        ("unknown_kid", 1.0),
        ("expired", 1.0),
        ("not_yet_valid", 1.0),
        ("issuer", 1.0),
        ("audience", 1.0),
        ("algorithm", 2.0),
        ("missing", 2.0),
        ("malformed", 1.0),
        ("revoked", 0.0),
    ] {
        assert_eq!(
            metric_value(&m, &format!("kernel_auth_denied_total{{why=\"{why}\"}}")),
            Some(n),
            "why={why}"
        );
    }
    assert_eq!(
        metric_value(&m, "kernel_redis_dlq_total{reason=\"auth\"}"),
        Some(11.0)
    );

    let mut secrets: Vec<&str> = vec![&good, &forged, &expired, &not_yet, &unknown_key, &hs256];
    secrets.push(ADMIN_TOKEN);
    let ks = key_secrets(&k.signing_key);
    secrets.extend(ks.iter().map(String::as_str));
    k.finish(&secrets, &[]).await;
}

#[tokio::test]
async fn revoked_producer_is_refused_within_cache_ttl() {
    let k = AuthKernel::start(Options {
        cache_ttl: Duration::from_secs(1),
        ..Options::default()
    })
    .await;
    let (redis, pg) = k.clients().await;
    let (producer, token) = k.new_producer("soon-revoked");
    k.assert_ingests_as(&token, producer).await;

    revoke(&k, producer, "key leaked").await;
    // The kernel's cache may still hold "not revoked" for up to cache_ttl.
    tokio::time::sleep(k.config.auth.cache_ttl + Duration::from_millis(200)).await;
    assert_dead_lettered_as_revoked(&redis, data_entry(Some(&token), 2)).await;
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 1);
    assert_eq!(
        k.metric("kernel_auth_denied_total{why=\"revoked\"}").await,
        1.0
    );
    assert_eq!(
        count(&pg, "SELECT count(*) FROM auth_decisions WHERE action = 'revoke_producer' AND reason = 'key leaked'").await,
        1
    );
    k.finish(&[&token, ADMIN_TOKEN], &[]).await;
}

/// Revokes `producer` through the admin API, with `reason`.
async fn revoke(k: &AuthKernel, producer: Uuid, reason: &str) {
    let path = format!("/v1/producers/{producer}/revoke");
    assert_eq!(k.decide(&path, reason).await, 204);
}

/// Publishes `entry` to an empty DLQ and asserts that it is dead-lettered as an auth failure,
/// its producer revoked.
async fn assert_dead_lettered_as_revoked(
    redis: &redis::aio::MultiplexedConnection,
    entry: Vec<(String, String)>,
) {
    publish(redis, "events", &[entry]).await;
    assert_eq!(wait_for(WAIT, 1, || xlen(redis, "events:dlq")).await, 1);
    let dlq = read_stream(redis, "events:dlq").await;
    assert_eq!(dlq[0]["error"], "auth");
    assert_eq!(dlq[0]["detail"], "revoked");
}

#[tokio::test]
async fn a_producer_revoked_before_its_first_event_is_refused() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (producer, token) = k.new_producer("never-seen");
    revoke(&k, producer, "deleted before use").await;
    assert_dead_lettered_as_revoked(&redis, data_entry(Some(&token), 1)).await;
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, 0);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn auth_off_ignores_tokens_and_stores_no_producer() {
    let (env, kernel, redis) = env_with_kernel().await;
    let pg = env.pg().await;
    publish(
        &redis,
        "events",
        &[data_entry(None, 1), data_entry(Some("junk"), 2)],
    )
    .await;
    assert_eq!(
        wait_for(WAIT, 2, || count(&pg, "SELECT count(*) FROM events")).await,
        2
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM events WHERE producer_id IS NOT NULL"
        )
        .await,
        0
    );
    assert_eq!(xlen(&redis, "events:dlq").await, 0);
    kernel.shutdown().await;
}

#[tokio::test]
async fn a_token_without_kid_is_verified_against_the_configured_keys() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let producer = Uuid::now_v7();
    let now = chrono::Utc::now().timestamp();
    let body = claims(&k, producer, now, now + 600, None);
    let sign_without_kid = |key: &ed25519_dalek::SigningKey| {
        let der = key.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &body,
            &EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap()
    };
    let ours = sign_without_kid(&k.signing_key);
    let strangers = sign_without_kid(&keys::generate());
    publish(
        &redis,
        "events",
        &[data_entry(Some(&ours), 1), data_entry(Some(&strangers), 2)],
    )
    .await;

    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, "events:dlq")).await, 1);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(
        count(
            &pg,
            &format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'")
        )
        .await,
        1
    );
    let dlq = read_stream(&redis, "events:dlq").await;
    assert_eq!(
        (dlq[0]["error"].as_str(), dlq[0]["detail"].as_str()),
        ("auth", "signature")
    );
    assert_eq!(
        k.metric("kernel_auth_denied_total{why=\"unknown_kid\"}")
            .await,
        0.0
    );
    k.kernel.shutdown().await;
}
