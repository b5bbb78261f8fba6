//! Pre-approval of an externally held key: an admin (or the operator, for a `Producer` with
//! `spec.publicKey`) binds a public key to a producer id before the producer ever registers,
//! so its first `register` request is answered `issued`.
//!
//! Idempotent, because the operator repeats it on every reconcile: the same key for the same
//! producer changes nothing and records nothing. A key bound to another producer, revoked or
//! rejected, or a revoked producer, is a conflict: those are decisions a pre-approval must not
//! silently undo.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::store::{audit_and_commit, require_reason, AdminError};
use fdc_common::keys;

/// Bound on `name` and `schema` (a Kubernetes object name is at most 253 characters).
const MAX_TEXT_LEN: usize = 256;
/// Bound on the public key text, before parsing (a PEM Ed25519 key is about 113 bytes).
const MAX_KEY_LEN: usize = 1024;

/// What to pre-approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreApproveBody {
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`), or standard base64 of the raw 32-byte key
    /// (the registration request's `public_key` encoding).
    pub public_key: String,
    /// Producer name; used only when the producer row is created.
    pub name: String,
    /// Schema id or name; used only when the producer row is created.
    #[serde(default)]
    pub schema: Option<String>,
    pub reason: String,
}

/// The outcome of a pre-approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreApproval {
    pub producer_id: Uuid,
    pub fingerprint: String,
    /// `false`: the key was already approved for this producer; nothing changed.
    pub changed: bool,
    /// The producer row was created by this call.
    pub producer_created: bool,
}

/// Parse a public key given as SPKI PEM or as base64 of the raw key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, AdminError> {
    const BAD: AdminError = AdminError::BadRequest(
        "public_key must be an Ed25519 SPKI PEM or standard base64 of the raw 32-byte key",
    );
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_KEY_LEN {
        return Err(BAD);
    }
    if text.starts_with("-----BEGIN") {
        return keys::verifying_key_from_pem(text, std::path::Path::new("<request>"))
            .map_err(|_| BAD);
    }
    let raw: [u8; 32] = STANDARD
        .decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(BAD)?;
    VerifyingKey::from_bytes(&raw).map_err(|_| BAD)
}

fn check_text(value: &str, what: &'static str) -> Result<(), AdminError> {
    if value.trim().is_empty() || value.len() > MAX_TEXT_LEN || value.chars().any(char::is_control)
    {
        return Err(AdminError::BadRequest(what));
    }
    Ok(())
}

/// Approve `body.public_key` for `producer_id`, creating the producer when missing. The
/// change, its `auth_decisions` row (`approve`, target = fingerprint) and the closing of a
/// pending registration of the key happen in one transaction.
pub async fn preapprove(
    pool: &PgPool,
    producer_id: Uuid,
    body: &PreApproveBody,
) -> Result<PreApproval, AdminError> {
    require_reason(&body.reason)?;
    check_text(
        &body.name,
        "name must be 1..256 characters, no control characters",
    )?;
    if let Some(schema) = &body.schema {
        check_text(
            schema,
            "schema must be 1..256 characters, no control characters",
        )?;
    }
    let key = parse_public_key(&body.public_key)?;
    let fingerprint = keys::fingerprint(&key);

    let mut tx = pool.begin().await?;
    // The registration service takes the same lock per key: a request of this key waits
    // for the decision instead of racing it (and inserting a `pending` row under it).
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&fingerprint)
        .execute(&mut *tx)
        .await?;

    let producer_created = sqlx::query(
        "INSERT INTO producers (producer_id, name, schema_binding, created_at)         VALUES ($1, $2, fdc_schema_binding($3), now())
         ON CONFLICT (producer_id) DO NOTHING",
    )
    .bind(producer_id)
    .bind(&body.name)
    .bind(&body.schema)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    let revoked: bool = sqlx::query_scalar(
        "SELECT revoked_at IS NOT NULL FROM producers WHERE producer_id = $1 FOR UPDATE",
    )
    .bind(producer_id)
    .fetch_one(&mut *tx)
    .await?;
    if revoked {
        return Err(AdminError::ConflictDetail(format!(
            "producer {producer_id} is revoked; a revoked producer gets no keys (use a new producer id)"
        )));
    }

    let current: Option<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT status, producer_id FROM producer_keys WHERE fingerprint = $1 FOR UPDATE",
    )
    .bind(&fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    match current {
        None => {}
        Some((status, _)) if status == "pending" => {}
        Some((status, Some(bound))) if status == "approved" && bound == producer_id => {
            // Already so: nothing to change, nothing to record.
            return Ok(PreApproval {
                producer_id,
                fingerprint,
                changed: false,
                producer_created: false,
            });
        }
        Some((status, bound)) if status == "approved" => {
            let to = bound.map_or_else(|| "another producer".to_string(), |b| b.to_string());
            return Err(AdminError::ConflictDetail(format!(
                "key {fingerprint} is already approved for producer {to}; a key serves one producer (use another key)"
            )));
        }
        Some((status, _)) => {
            // `revoked` or `rejected`: final for this key.
            return Err(AdminError::ConflictDetail(format!(
                "key {fingerprint} is {status}; it cannot be approved again (generate a new key)"
            )));
        }
    }

    sqlx::query(
        "INSERT INTO producer_keys
                (fingerprint, public_key, producer_id, status, decided_at, decision_reason)
         VALUES ($1, $2, $3, 'approved', now(), $4)
         ON CONFLICT (fingerprint) DO UPDATE
            SET status = 'approved', producer_id = EXCLUDED.producer_id,
                decided_at = EXCLUDED.decided_at, decision_reason = EXCLUDED.decision_reason",
    )
    .bind(&fingerprint)
    .bind(key.as_bytes().as_slice())
    .bind(producer_id)
    .bind(&body.reason)
    .execute(&mut *tx)
    .await?;
    // A request the key sent before the pre-approval is answered by it.
    sqlx::query(
        "UPDATE producer_registrations SET status = 'approved', producer_id = $2,
                decided_at = now(), decision_reason = $3
          WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(&fingerprint)
    .bind(producer_id)
    .bind(&body.reason)
    .execute(&mut *tx)
    .await?;
    audit_and_commit(tx, "approve", &fingerprint, Some(producer_id), &body.reason).await?;
    Ok(PreApproval {
        producer_id,
        fingerprint,
        changed: true,
        producer_created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_as_pem_or_raw_base64_and_nothing_else() {
        let key = keys::generate().verifying_key();
        let pem = keys::verifying_key_to_pem(&key).unwrap();
        assert_eq!(parse_public_key(&pem).unwrap(), key);
        assert_eq!(parse_public_key(&format!("\n{pem}\n")).unwrap(), key);
        let raw = STANDARD.encode(key.as_bytes());
        assert_eq!(parse_public_key(&raw).unwrap(), key);
        for bad in [
            "",
            "not base64 !",
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
            &"A".repeat(2000),
        ] {
            assert!(
                matches!(parse_public_key(bad), Err(AdminError::BadRequest(_))),
                "{bad:?}"
            );
        }
        // A private key PEM is not a public key.
        let private = keys::signing_key_to_pem(&keys::generate()).unwrap();
        assert!(parse_public_key(&private).is_err());
    }
}
