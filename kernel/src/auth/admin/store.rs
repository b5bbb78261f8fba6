//! Postgres side of admin decisions. Every decision writes an `auth_decisions` row (time,
//! action, target, reason) in the same transaction as the change it records.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::registration::store::record_issue;
use fdc_common::token::{IssuedToken, TokenError, TokenIssuer};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A conflict whose message names what is in the way (ids, fingerprints; never secrets).
    #[error("conflict: {0}")]
    ConflictDetail(String),
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A bad request whose message comes from a checker (a schema compiler, a binding parser).
    #[error("bad request: {0}")]
    BadRequestDetail(String),
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("this kernel has no auth.signing_key and cannot issue tokens")]
    NoSigningKey,
    #[error("postgres error: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Token(#[from] TokenError),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct Registration {
    pub registration_id: Uuid,
    pub fingerprint: String,
    pub name: String,
    pub schema: Option<String>,
    pub status: String,
    pub requested_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub decision_reason: Option<String>,
    pub producer_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct DecisionRecord {
    pub decision_id: i64,
    pub decided_at: DateTime<Utc>,
    pub action: String,
    pub target: String,
    pub producer_id: Option<Uuid>,
    pub reason: String,
}

pub(super) fn require_reason(reason: &str) -> Result<(), AdminError> {
    if reason.trim().is_empty() || reason.len() > 1000 {
        return Err(AdminError::BadRequest("reason must be 1..1000 characters"));
    }
    Ok(())
}

pub(super) async fn record(
    conn: &mut sqlx::PgConnection,
    action: &str,
    target: &str,
    producer_id: Option<Uuid>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO auth_decisions (action, target, producer_id, reason) VALUES ($1, $2, $3, $4)",
    )
    .bind(action)
    .bind(target)
    .bind(producer_id)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the decision (see [`record`]) and commits `tx`: the decision and its audit row
/// land together or not at all.
pub(super) async fn audit_and_commit(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    action: &str,
    target: &str,
    producer_id: Option<Uuid>,
    reason: &str,
) -> Result<(), sqlx::Error> {
    record(&mut tx, action, target, producer_id, reason).await?;
    tx.commit().await
}

/// Registrations with `status` (all when `None`), oldest first.
pub async fn list_registrations(
    pool: &PgPool,
    status: Option<&str>,
) -> Result<Vec<Registration>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT registration_id, fingerprint, name, schema, status, requested_at, decided_at,
                decision_reason, producer_id
           FROM producer_registrations
          WHERE $1::text IS NULL OR status = $1
          ORDER BY requested_at, registration_id
          LIMIT 1000",
    )
    .bind(status)
    .fetch_all(pool)
    .await?)
}

/// Recent decisions, newest first.
pub async fn list_decisions(pool: &PgPool, limit: i64) -> Result<Vec<DecisionRecord>, AdminError> {
    Ok(sqlx::query_as(
        "SELECT decision_id, decided_at, action, target, producer_id, reason
           FROM auth_decisions ORDER BY decision_id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

async fn lock_pending(
    tx: &mut sqlx::PgConnection,
    registration_id: Uuid,
) -> Result<Registration, AdminError> {
    let reg: Option<Registration> = sqlx::query_as(
        "SELECT registration_id, fingerprint, name, schema, status, requested_at, decided_at,
                decision_reason, producer_id
           FROM producer_registrations WHERE registration_id = $1 FOR UPDATE",
    )
    .bind(registration_id)
    .fetch_optional(&mut *tx)
    .await?;
    let reg = reg.ok_or(AdminError::NotFound("registration"))?;
    if reg.status != "pending" {
        return Err(AdminError::Conflict("registration is not pending"));
    }
    Ok(reg)
}

/// Approve a pending registration: bind its key to `producer_id` (an existing producer) or to
/// a new producer named as requested. Returns the producer id.
pub async fn approve(
    pool: &PgPool,
    registration_id: Uuid,
    producer_id: Option<Uuid>,
    reason: &str,
) -> Result<Uuid, AdminError> {
    require_reason(reason)?;
    let mut tx = pool.begin().await?;
    let reg = lock_pending(&mut tx, registration_id).await?;
    let producer_id = match producer_id {
        Some(id) => {
            let revoked: Option<bool> = sqlx::query_scalar(
                "SELECT revoked_at IS NOT NULL FROM producers WHERE producer_id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            match revoked {
                None => return Err(AdminError::NotFound("producer")),
                Some(true) => return Err(AdminError::Conflict("producer is revoked")),
                Some(false) => id,
            }
        }
        None => {
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO producers (producer_id, name, schema_binding, created_at)                 VALUES ($1, $2, fdc_schema_binding($3), now())",
            )
            .bind(id)
            .bind(&reg.name)
            .bind(&reg.schema)
            .execute(&mut *tx)
            .await?;
            id
        }
    };
    sqlx::query(
        "UPDATE producer_keys SET status = 'approved', producer_id = $2, decided_at = now(),
                decision_reason = $3
          WHERE fingerprint = $1",
    )
    .bind(&reg.fingerprint)
    .bind(producer_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE producer_registrations SET status = 'approved', producer_id = $2,
                decided_at = now(), decision_reason = $3
          WHERE registration_id = $1",
    )
    .bind(registration_id)
    .bind(producer_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    audit_and_commit(
        tx,
        "approve",
        &registration_id.to_string(),
        Some(producer_id),
        reason,
    )
    .await?;
    Ok(producer_id)
}

/// Reject a pending registration; its key is refused from then on.
pub async fn reject(pool: &PgPool, registration_id: Uuid, reason: &str) -> Result<(), AdminError> {
    require_reason(reason)?;
    let mut tx = pool.begin().await?;
    let reg = lock_pending(&mut tx, registration_id).await?;
    sqlx::query(
        "UPDATE producer_registrations SET status = 'rejected', decided_at = now(),
                decision_reason = $2
          WHERE registration_id = $1",
    )
    .bind(registration_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE producer_keys SET status = 'rejected', decided_at = now(), decision_reason = $2
          WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(&reg.fingerprint)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    audit_and_commit(tx, "reject", &registration_id.to_string(), None, reason).await?;
    Ok(())
}

/// One producer row, as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, sqlx::FromRow)]
pub struct ProducerRow {
    pub producer_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Last data or heartbeat entry with a valid token (written about every second).
    pub last_seen_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Producer `producer_id`'s row.
pub async fn producer(pool: &PgPool, producer_id: Uuid) -> Result<ProducerRow, AdminError> {
    sqlx::query_as(
        "SELECT producer_id, name, created_at, last_seen_at, revoked_at
           FROM producers WHERE producer_id = $1",
    )
    .bind(producer_id)
    .fetch_optional(pool)
    .await?
    .ok_or(AdminError::NotFound("producer"))
}

/// Revoke a producer: all its tokens are refused within `auth.cache_ttl`.
pub async fn revoke_producer(
    pool: &PgPool,
    producer_id: Uuid,
    reason: &str,
) -> Result<(), AdminError> {
    require_reason(reason)?;
    let mut tx = pool.begin().await?;
    // A producer the kernel has never seen (its token not used yet) is revoked too: the row
    // is created revoked, so the token is refused on first use.
    sqlx::query(
        "INSERT INTO producers (producer_id, name, revoked_at, revoked_reason)
         VALUES ($1, '', now(), $2)
         ON CONFLICT (producer_id) DO UPDATE
            SET revoked_at = coalesce(producers.revoked_at, now()),
                revoked_reason = coalesce(producers.revoked_reason, EXCLUDED.revoked_reason)",
    )
    .bind(producer_id)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    audit_and_commit(
        tx,
        "revoke_producer",
        &producer_id.to_string(),
        Some(producer_id),
        reason,
    )
    .await?;
    Ok(())
}

/// Revoke a key: it gets no more tokens through registration.
pub async fn revoke_key(pool: &PgPool, fingerprint: &str, reason: &str) -> Result<(), AdminError> {
    require_reason(reason)?;
    let mut tx = pool.begin().await?;
    let producer: Option<Option<Uuid>> = sqlx::query_scalar(
        "UPDATE producer_keys SET status = 'revoked', decided_at = now(), decision_reason = $2
          WHERE fingerprint = $1 RETURNING producer_id",
    )
    .bind(fingerprint)
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(producer_id) = producer else {
        return Err(AdminError::NotFound("key"));
    };
    // A pending request of that key is closed as rejected.
    sqlx::query(
        "UPDATE producer_registrations SET status = 'rejected', decided_at = now(),
                decision_reason = $2
          WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(fingerprint)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    audit_and_commit(tx, "revoke_key", fingerprint, producer_id, reason).await?;
    Ok(())
}

/// Issue a token for an existing, non-revoked producer.
pub async fn issue_token(
    pool: &PgPool,
    issuer: Option<&TokenIssuer>,
    producer_id: Uuid,
    ttl: Duration,
    reason: &str,
) -> Result<IssuedToken, AdminError> {
    require_reason(reason)?;
    let issuer = issuer.ok_or(AdminError::NoSigningKey)?;
    let mut tx = pool.begin().await?;
    let row: Option<(String, Option<String>, bool)> = sqlx::query_as(
        "SELECT name, schema_binding, revoked_at IS NOT NULL FROM producers WHERE producer_id = $1",
    )
    .bind(producer_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (name, schema, revoked) = row.ok_or(AdminError::NotFound("producer"))?;
    if revoked {
        return Err(AdminError::Conflict("producer is revoked"));
    }
    let issued = issuer.issue(producer_id, &name, schema.as_deref(), ttl)?;
    record_issue(&mut tx, &issued, issuer.kid(), None, "admin").await?;
    audit_and_commit(
        tx,
        "issue_token",
        &producer_id.to_string(),
        Some(producer_id),
        reason,
    )
    .await?;
    Ok(issued)
}
