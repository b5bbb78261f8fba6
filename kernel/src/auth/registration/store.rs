//! Postgres side of one registration request: replay check, key state, rate limit, issuance.
//!
//! Everything for one key runs in one transaction under an advisory lock on the fingerprint,
//! so two replicas handling requests of the same key cannot both pass the rate limit.
//!
//! The reply is stored with the nonce in that same transaction: if it is then lost (Redis
//! down before the reply was written, reply stream expired), the identical request retried
//! with the same nonce gets the same reply instead of `invalid`/`replayed_nonce`. Any other
//! request reusing the nonce is still a replay.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use super::reply::Reply;
use super::request::RegisterRequest;
use fdc_common::token::{IssuedToken, TokenError, TokenIssuer};

/// What the kernel decided for a verified request.
#[derive(Debug)]
pub enum Decision {
    /// Approved key: a token for `producer_id`.
    Issued(IssuedToken),
    /// Unknown or not yet approved key: waits for an admin.
    Pending { registration_id: Uuid },
    /// Refused: `rejected`, `revoked`, `rate_limited`, `too_many_pending` or
    /// `no_signing_key`.
    Denied(&'static str),
}

/// What to answer a verified request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new request: decided now, its reply stored with the nonce.
    Decided(Reply),
    /// The same request again (same key, nonce and signed content): the stored reply.
    Resent(Reply),
    /// The nonce was used by a different request (or before replies were stored).
    Replayed,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("postgres error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Issuance settings.
pub struct IssuePolicy<'a> {
    pub issuer: Option<&'a TokenIssuer>,
    pub token_ttl: Duration,
    pub rate_limit: u32,
    pub rate_window: Duration,
    /// Bounds on new keys: open registrations, and new registrations per window.
    pub max_pending: u32,
    pub new_keys_limit: u32,
    pub new_keys_window: Duration,
}

/// The advisory lock every new key's registration takes, so that replicas count open and
/// recent registrations one at a time and cannot pass the bounds together.
const NEW_KEYS_LOCK: &str = "fdc:register:new-keys";

/// Decide a verified request and store its reply (built by `reply_for` from the decision)
/// with the nonce, all in one transaction; or find the stored reply of the same request.
pub async fn decide<F>(
    pool: &PgPool,
    req: &RegisterRequest,
    policy: &IssuePolicy<'_>,
    reply_for: F,
) -> Result<Outcome, StoreError>
where
    F: FnOnce(Decision) -> Result<Reply, StoreError>,
{
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&req.fingerprint)
        .execute(&mut *tx)
        .await?;
    let fresh = sqlx::query(
        "INSERT INTO auth_nonces (fingerprint, nonce, request_sha256) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(&req.fingerprint)
    .bind(&req.nonce)
    .bind(req.request_sha256.as_slice())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fresh == 0 {
        let (digest, reply): (Option<Vec<u8>>, Option<serde_json::Value>) = sqlx::query_as(
            "SELECT request_sha256, reply FROM auth_nonces WHERE fingerprint = $1 AND nonce = $2",
        )
        .bind(&req.fingerprint)
        .bind(&req.nonce)
        .fetch_one(&mut *tx)
        .await?;
        tx.rollback().await?;
        let same = digest.as_deref() == Some(req.request_sha256.as_slice());
        return Ok(match reply.as_ref().and_then(Reply::from_json) {
            Some(reply) if same => Outcome::Resent(reply),
            _ => Outcome::Replayed,
        });
    }
    let key: Option<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT status, producer_id FROM producer_keys WHERE fingerprint = $1")
            .bind(&req.fingerprint)
            .fetch_optional(&mut *tx)
            .await?;
    let decision = match key {
        // No key row is written: the key may ask again once there is room.
        None => match new_key_refused(&mut tx, policy).await? {
            Some(refused) => Decision::Denied(refused),
            None => {
                sqlx::query(
                    "INSERT INTO producer_keys (fingerprint, public_key, status) VALUES ($1, $2, 'pending')",
                )
                .bind(&req.fingerprint)
                .bind(req.public_key.as_bytes().as_slice())
                .execute(&mut *tx)
                .await?;
                pending(&mut tx, req).await?
            }
        },
        Some((status, _)) if status == "pending" => pending(&mut tx, req).await?,
        Some((status, Some(producer_id))) if status == "approved" => {
            approved(&mut tx, req, producer_id, policy).await?
        }
        Some((status, _)) if status == "revoked" => Decision::Denied("revoked"),
        Some(_) => Decision::Denied("rejected"),
    };
    let reply = reply_for(decision)?;
    sqlx::query("UPDATE auth_nonces SET reply = $3 WHERE fingerprint = $1 AND nonce = $2")
        .bind(&req.fingerprint)
        .bind(&req.nonce)
        .bind(reply.to_json())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Outcome::Decided(reply))
}

/// Why a new key may not open a registration now (`too_many_pending`, `rate_limited`), if so.
async fn new_key_refused(
    tx: &mut sqlx::PgConnection,
    policy: &IssuePolicy<'_>,
) -> Result<Option<&'static str>, StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(NEW_KEYS_LOCK)
        .execute(&mut *tx)
        .await?;
    let open: i64 =
        sqlx::query_scalar("SELECT count(*) FROM producer_registrations WHERE status = 'pending'")
            .fetch_one(&mut *tx)
            .await?;
    if open >= i64::from(policy.max_pending) {
        return Ok(Some("too_many_pending"));
    }
    let recent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM producer_registrations
          WHERE status IN ('pending', 'approved', 'rejected')
            AND requested_at > now() - make_interval(secs => $1)",
    )
    .bind(policy.new_keys_window.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    if recent >= i64::from(policy.new_keys_limit) {
        return Ok(Some("rate_limited"));
    }
    Ok(None)
}

/// Open (or keep) the key's single pending registration.
async fn pending(
    tx: &mut sqlx::PgConnection,
    req: &RegisterRequest,
) -> Result<Decision, StoreError> {
    sqlx::query(
        "INSERT INTO producer_registrations (registration_id, fingerprint, name, schema, status)
         VALUES ($1, $2, $3, $4, 'pending')
         ON CONFLICT (fingerprint) WHERE status = 'pending' DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(&req.fingerprint)
    .bind(&req.name)
    .bind(&req.schema)
    .execute(&mut *tx)
    .await?;
    let registration_id: Uuid = sqlx::query_scalar(
        "SELECT registration_id FROM producer_registrations
          WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(&req.fingerprint)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Decision::Pending { registration_id })
}

async fn approved(
    tx: &mut sqlx::PgConnection,
    req: &RegisterRequest,
    producer_id: Uuid,
    policy: &IssuePolicy<'_>,
) -> Result<Decision, StoreError> {
    let (name, revoked): (String, bool) =
        sqlx::query_as("SELECT name, revoked_at IS NOT NULL FROM producers WHERE producer_id = $1")
            .bind(producer_id)
            .fetch_one(&mut *tx)
            .await?;
    if revoked {
        return Ok(Decision::Denied("revoked"));
    }
    let recent: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth_tokens_issued
          WHERE fingerprint = $1 AND via = 'register'
            AND issued_at > now() - make_interval(secs => $2)",
    )
    .bind(&req.fingerprint)
    .bind(policy.rate_window.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    if recent >= i64::from(policy.rate_limit) {
        return Ok(Decision::Denied("rate_limited"));
    }
    let Some(issuer) = policy.issuer else {
        return Ok(Decision::Denied("no_signing_key"));
    };
    let issued = issuer.issue(producer_id, &name, req.schema.as_deref(), policy.token_ttl)?;
    record_issue(
        &mut *tx,
        &issued,
        issuer.kid(),
        Some(&req.fingerprint),
        "register",
    )
    .await?;
    Ok(Decision::Issued(issued))
}

/// Audit row for an issued token (its id and times, never the token).
pub async fn record_issue(
    conn: &mut sqlx::PgConnection,
    issued: &IssuedToken,
    kid: &str,
    fingerprint: Option<&str>,
    via: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_tokens_issued (jti, producer_id, fingerprint, via, kid, issued_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7))",
    )
    .bind(&issued.claims.jti)
    .bind(issued.claims.sub)
    .bind(fingerprint)
    .bind(via)
    .bind(kid)
    .bind(issued.claims.iat as f64)
    .bind(issued.claims.exp as f64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forget nonces older than `retention` (older requests fail the `ts` check anyway).
pub async fn prune_nonces(pool: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM auth_nonces WHERE used_at < now() - make_interval(secs => $1)")
            .bind(retention.as_secs_f64())
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
