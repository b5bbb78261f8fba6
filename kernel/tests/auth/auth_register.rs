//! The registration flow on `fdc:register` against a running kernel: exact replies and rows.

use std::time::Duration;

use crate::auth_support::*;
use crate::support::*;
use fdc_common::keys::{self, SigningKey};
use fdc_kernel::auth::registration::reply::{Reply, Status};
use fdc_kernel::auth::registration::request;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use uuid::Uuid;

fn set(f: &mut [(String, String)], name: &str, value: &str) {
    f.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_string();
}

/// A request of `key` as producer `name`, bound to the schema `temperature`.
fn request_for(key: &SigningKey, name: &str) -> Vec<(String, String)> {
    register_request(key, name, Some("temperature"))
}

async fn approve(k: &AuthKernel, registration_id: Uuid, producer_id: Option<Uuid>) -> Uuid {
    let path = format!("/v1/registrations/{registration_id}/approve");
    let body = json!({"producer_id": producer_id, "reason": "known device"});
    let (status, answer) = k.admin_post(&path, &body).await;
    assert_eq!(status, 200, "{answer}");
    answer["producer_id"].as_str().unwrap().parse().unwrap()
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
    let (redis, pg) = k.clients().await;
    let (key, fp) = new_key();

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
    let (token, claims) = k.open_grant(&key, &grant);
    assert_eq!(claims.sub, producer_id);
    assert_eq!(claims.name, "sensor-7");
    assert_eq!(claims.schema.as_deref(), Some("temperature"));
    assert_eq!(grant.expires_at, claims.exp);

    // The token works for ingest, and the stored event carries the producer id.
    k.assert_ingests_as(&token, producer_id).await;
    // The token is on Redis only sealed.
    let all = read_stream(&redis, &format!("fdc:register:reply:{fp}")).await;
    assert!(all.iter().all(|e| e.values().all(|v| !v.contains(&token))));
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM auth_tokens_issued WHERE producer_id = '{producer_id}' AND via = 'register' AND jti = '{}'", claims.jti)).await,
        1
    );
    assert_eq!(k.register_replies("issued").await, 1.0);
    assert_eq!(k.register_replies("pending").await, 2.0);

    assert_logs_clean_of(&[&token, ADMIN_TOKEN], &[&key, &k.signing_key]);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn replay_stale_bad_signature_malformed_and_oversize_are_invalid() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (key, fp) = new_key();

    let first = request_for(&key, "sensor");
    let answer = ask(&redis, &fp, &first).await;
    assert_eq!(answer.status, Status::Pending);
    // The identical request again (its reply was lost): the same reply, resent.
    assert_eq!(ask(&redis, &fp, &first).await, answer);
    // Any other request reusing the nonce is a replay.
    let nonce = first.iter().find(|(k, _)| k == "nonce").unwrap().1.clone();
    let reused = request::build(&key, "sensor", None, &nonce, now_ns());
    assert_answer(&redis, &fp, &reused, (Status::Invalid, "replayed_nonce")).await;

    let stale = request::build(
        &key,
        "sensor",
        None,
        &request::new_nonce(),
        now_ns() - 600_000_000_000,
    );
    assert_answer(&redis, &fp, &stale, (Status::Invalid, "stale_ts")).await;

    let mut bad_sig = request_for(&key, "sensor");
    set(&mut bad_sig, "name", "someone-else");
    assert_answer(&redis, &fp, &bad_sig, (Status::Invalid, "bad_signature")).await;

    let mut bad_b64 = request_for(&key, "sensor");
    set(&mut bad_b64, "sig", "%%%not-base64%%%");
    assert_answer(&redis, &fp, &bad_b64, (Status::Invalid, "bad_base64")).await;

    let oversize = register_request(&key, &"x".repeat(500), None);
    assert_answer(&redis, &fp, &oversize, (Status::Invalid, "too_large")).await;

    // An unreadable public key has no reply stream; it is counted and changes nothing.
    let mut bad_key = request_for(&keys::generate(), "sensor");
    set(&mut bad_key, "public_key", "***");
    publish(&redis, "fdc:register", &[bad_key]).await;
    assert_eq!(
        wait_for(WAIT, 6.0, || k.register_replies("invalid")).await,
        6.0
    );
    assert_eq!(k.register_replies("pending").await, 1.0);
    assert_eq!(k.metric("kernel_auth_register_resent_total").await, 1.0);
    // Only the first request left rows; each valid-signature request used its nonce once.
    assert_eq!(count(&pg, "SELECT count(*) FROM producer_keys").await, 1);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        1
    );
    assert_eq!(count(&pg, "SELECT count(*) FROM auth_nonces").await, 1);
    // Processed requests are acknowledged and removed.
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    k.finish(&[], &[&key]).await;
}

#[tokio::test]
async fn rate_limit_per_key_and_rejected_or_revoked_keys_are_denied() {
    let k = AuthKernel::start(Options {
        rate_limit: 2,
        ..Options::default()
    })
    .await;
    let (redis, pg) = k.clients().await;

    // An approved key: two tokens, then rate limited.
    let (key, fp) = approved_key(&k, &redis, "a").await;
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
    let (other, ofp) = approved_key(&k, &redis, "b").await;
    assert_eq!(
        ask(&redis, &ofp, &request_for(&other, "b")).await.status,
        Status::Issued
    );
    assert_eq!(tokens_issued(&pg).await, 3);

    // A rejected key is refused.
    let (rejected, rfp) = pending_key(&redis, "c").await;
    let reg = pending_registration(&pg, &rfp).await;
    let reject = format!("/v1/registrations/{reg}/reject");
    assert_eq!(k.decide(&reject, "unknown device").await, 204);
    let again = request_for(&rejected, "c");
    assert_answer(&redis, &rfp, &again, (Status::Denied, "rejected")).await;

    // A revoked key is refused.
    let revoke = format!("/v1/keys/{ofp}/revoke");
    assert_eq!(k.decide(&revoke, "device lost").await, 204);
    let again = request_for(&other, "b");
    assert_answer(&redis, &ofp, &again, (Status::Denied, "revoked")).await;
    assert_eq!(tokens_issued(&pg).await, 3);
    assert_eq!(k.register_replies("denied").await, 3.0);
    // Two public keys as base64 never make a secret; the private halves must not be logged.
    k.finish(&[], &[&key, &other, &rejected]).await;
}

/// Asks with `request` and asserts the reply's status and detail.
async fn assert_answer(
    redis: &MultiplexedConnection,
    fp: &str,
    request: &[(String, String)],
    want: (Status, &str),
) {
    let r = ask(redis, fp, request).await;
    assert_eq!((r.status, r.detail.as_str()), want);
}

/// Tokens issued so far (rows of `auth_tokens_issued`).
async fn tokens_issued(pg: &sqlx::PgPool) -> i64 {
    count(pg, "SELECT count(*) FROM auth_tokens_issued").await
}

/// A new key whose first request (as producer `name`) is answered `pending`, and its fingerprint.
async fn pending_key(redis: &MultiplexedConnection, name: &str) -> (SigningKey, String) {
    let (key, fp) = new_key();
    assert_eq!(
        ask(redis, &fp, &request_for(&key, name)).await.status,
        Status::Pending
    );
    (key, fp)
}

/// A new key with its pending registration approved: its next request is `issued`.
async fn approved_key(
    k: &AuthKernel,
    redis: &MultiplexedConnection,
    name: &str,
) -> (SigningKey, String) {
    let pg = k.env.pg().await;
    let (key, fp) = pending_key(redis, name).await;
    approve(k, pending_registration(&pg, &fp).await, None).await;
    (key, fp)
}

/// The claims of the token sealed in `reply`, opened with `key`.
fn open_token(k: &AuthKernel, key: &SigningKey, reply: &Reply) -> fdc_common::token::Claims {
    k.open_grant(key, reply.grant.as_ref().expect("a sealed token"))
        .1
}

#[tokio::test]
async fn a_reply_lost_by_the_producer_is_resent_for_the_same_request() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (key, fp) = approved_key(&k, &redis, "sensor").await;

    let req = request_for(&key, "sensor");
    let first = ask(&redis, &fp, &req).await;
    assert_eq!(first.status, Status::Issued);
    let claims = open_token(&k, &key, &first);
    // The producer never read it: the reply stream expired or was trimmed.
    delete_key(&redis, &format!("fdc:register:reply:{fp}")).await;
    let again = ask(&redis, &fp, &req).await;
    assert_eq!(again, first, "the same reply, the same sealed token");
    assert_eq!(open_token(&k, &key, &again).jti, claims.jti);
    // One token issued, one decision counted, one resend.
    assert_eq!(tokens_issued(&pg).await, 1);
    assert_eq!(k.register_replies("issued").await, 1.0);
    assert_eq!(k.metric("kernel_auth_register_resent_total").await, 1.0);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn a_reply_the_kernel_could_not_write_is_sent_on_retry_not_turned_invalid() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    let (key, fp) = approved_key(&k, &redis, "sensor").await;
    let reply_key = format!("fdc:register:reply:{fp}");
    delete_key(&redis, &reply_key).await;
    // A key of the wrong type makes every XADD of the reply fail after the decision committed.
    occupy_key(&redis, &reply_key, "in-the-way").await;
    let req = request_for(&key, "sensor");
    let nonce = req.iter().find(|(k, _)| k == "nonce").unwrap().1.clone();
    publish(&redis, "fdc:register", std::slice::from_ref(&req)).await;
    let issued = wait_for(WAIT, 1, || tokens_issued(&pg)).await;
    assert_eq!(issued, 1, "token issued and committed");
    // At least one retry fails too (the service retries every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        xlen(&redis, "fdc:register").await,
        1,
        "request not acknowledged"
    );
    delete_key(&redis, &reply_key).await;

    let deadline = std::time::Instant::now() + WAIT;
    let reply = loop {
        let entries = stream_fields(&redis, &reply_key).await;
        if let Some(r) = entries.iter().find_map(|f| Reply::from_fields(f)) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "no reply");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(reply.nonce.as_deref(), Some(nonce.as_str()));
    assert_eq!(
        (reply.status, reply.detail.as_str()),
        (Status::Issued, "issued")
    );
    let claims = open_token(&k, &key, &reply);
    let jti: String = sqlx::query_scalar("SELECT jti FROM auth_tokens_issued")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(claims.jti, jti, "the token issued before the reply failed");
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    assert_eq!(tokens_issued(&pg).await, 1);
    assert!(k.metric("kernel_auth_register_resent_total").await >= 1.0);
    k.kernel.shutdown().await;
}

/// Redis restarted under the kernel (`aof`: with the append-only file, so the group survives;
/// without, stream and group are lost): registration goes on, replies still arrive.
async fn registration_after_redis_restart(aof: bool) {
    let (redis, postgres) = tokio::join!(
        RedisServer::start_with(RedisOptions { appendonly: aof }),
        PostgresServer::start()
    );
    let env = TestEnv {
        redis: redis.unwrap(),
        postgres: postgres.unwrap(),
    };
    let mut k = AuthKernel::start_with(env, Options::default(), |_| {}).await;
    let (before, bfp) = new_key();
    {
        let redis = k.env.redis_conn().await;
        assert_eq!(
            ask(&redis, &bfp, &request_for(&before, "before"))
                .await
                .status,
            Status::Pending
        );
    }
    k.env.redis.restart().await.unwrap();
    let redis = k.env.redis_conn().await;
    let (after, afp) = new_key();
    assert_answer(
        &redis,
        &afp,
        &request_for(&after, "after"),
        (Status::Pending, "awaiting_approval"),
    )
    .await;
    let pg = k.env.pg().await;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        2
    );
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn registration_survives_a_redis_restart_without_persistence() {
    registration_after_redis_restart(false).await;
}

#[tokio::test]
async fn registration_survives_a_redis_restart_with_aof() {
    registration_after_redis_restart(true).await;
}

#[tokio::test]
async fn registration_starts_once_redis_comes_up_after_the_kernel() {
    let mut env = TestEnv::start().await.unwrap();
    env.redis.kill();
    let mut k = AuthKernel::start_with(env, Options::default(), |_| {}).await;
    // Long enough for a run to fail at start (it used to end the service for good).
    tokio::time::sleep(Duration::from_secs(2)).await;
    k.env.redis.restart().await.unwrap();
    let redis = k.env.redis_conn().await;
    pending_key(&redis, "late").await;
    k.kernel.shutdown().await;
}

#[tokio::test]
async fn registration_floods_are_denied_by_open_registrations_and_new_key_rate() {
    let k = AuthKernel::start_with(TestEnv::start().await.unwrap(), Options::default(), |c| {
        c.auth.register.max_pending = 3;
        c.auth.register.new_keys_limit = 4;
        c.auth.register.new_keys_window = Duration::from_secs(3600);
    })
    .await;
    let (redis, pg) = k.clients().await;
    let (keys, fps): (Vec<SigningKey>, Vec<String>) = (0..5).map(|_| new_key()).unzip();
    let asks = |i: usize| {
        let request = request_for(&keys[i], "flood");
        let (redis, fp) = (&redis, &fps[i]);
        async move { ask(redis, fp, &request).await }
    };

    for i in 0..3 {
        assert_eq!(asks(i).await.status, Status::Pending);
    }
    // A fourth open registration would pass max_pending: refused, and nothing is kept.
    let r = asks(3).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Denied, "too_many_pending")
    );
    let keys_of =
        |fp: &str| format!("SELECT count(*) FROM producer_keys WHERE fingerprint = '{fp}'");
    assert_eq!(count(&pg, &keys_of(&fps[3])).await, 0);
    // A key already waiting is not new: it still gets its pending answer.
    assert_eq!(asks(2).await.status, Status::Pending);

    // An admin decides one: there is room again for the refused key.
    approve(&k, pending_registration(&pg, &fps[0]).await, None).await;
    assert_eq!(asks(3).await.status, Status::Pending);
    // Four new keys within new_keys_window: the fifth is refused although one is decided.
    approve(&k, pending_registration(&pg, &fps[1]).await, None).await;
    let r = asks(4).await;
    assert_eq!(
        (r.status, r.detail.as_str()),
        (Status::Denied, "rate_limited")
    );
    assert_eq!(count(&pg, &keys_of(&fps[4])).await, 0);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM producer_registrations").await,
        4
    );
    assert_eq!(
        k.metric("kernel_auth_register_denied_total{reason=\"too_many_pending\"}")
            .await,
        1.0
    );
    assert_eq!(
        k.metric("kernel_auth_register_denied_total{reason=\"rate_limited\"}")
            .await,
        1.0
    );
    // Every reply stream, a refused key's too, is capped and expires.
    let mut conn = redis.clone();
    for fp in &fps {
        let ttl: i64 = redis::cmd("TTL")
            .arg(format!("fdc:register:reply:{fp}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 600, "reply stream TTL {ttl}");
    }
    k.kernel.shutdown().await;
}

/// A reply key that holds another type (a producer's own doing) fails only its own request:
/// the requests behind it are answered meanwhile, and it is answered once the key is gone.
#[tokio::test]
async fn an_unwritable_reply_stream_does_not_hold_up_other_requests() {
    let k = AuthKernel::start(Options::default()).await;
    let redis = k.env.redis_conn().await;
    let (blocked, blocked_fp) = new_key();
    let reply_key = format!("fdc:register:reply:{blocked_fp}");
    occupy_key(&redis, &reply_key, "in-the-way").await;
    let blocked_request = request_for(&blocked, "squatter");
    publish(
        &redis,
        "fdc:register",
        std::slice::from_ref(&blocked_request),
    )
    .await;

    for name in ["first", "second"] {
        let (key, fp) = new_key();
        let r = ask(&redis, &fp, &request_for(&key, name)).await;
        assert_eq!(
            (r.status, r.detail.as_str()),
            (Status::Pending, "awaiting_approval")
        );
    }
    assert_eq!(
        xlen(&redis, "fdc:register").await,
        1,
        "the blocked request waits"
    );

    delete_key(&redis, &reply_key).await;
    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, &reply_key)).await, 1);
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    k.kernel.shutdown().await;
}
