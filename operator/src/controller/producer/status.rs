//! Status: the one status a Producer pass writes, computed from how the pass ended (pure).
//! A pass that fails with an error writes none. (The finalizer's cleanup path writes its
//! own `DeletionBlocked` status.)

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use uuid::Uuid;

use crate::controller::kernel_ref::Blocked;
use crate::controller::producer::build::Issued;
use crate::controller::producer::last_seen::{last_seen_at, LastSeen};
use crate::crd::condition::{self, types};
use crate::crd::{Producer, ProducerStatus};
use crate::duration;

/// How a pass ended.
#[derive(Debug, Clone)]
pub enum Report {
    /// Paused by annotation (token renewal too).
    Paused,
    /// No credentials until someone acts (kernel missing, namespace or stream refused, no
    /// issuer key yet).
    Blocked(Blocked),
    /// The kernel did not approve `spec.publicKey` (with this fingerprint).
    KeyBlocked {
        reason: &'static str,
        message: String,
        fingerprint: String,
    },
    /// The credentials Secret holds a token; `conditions` are the `KeyApproved` condition
    /// (when `spec.publicKey` is set) and the `SchemaBound` one (when a schema is bound, or
    /// its binding failed; none drops it).
    Issued {
        issued: Issued,
        fingerprint: String,
        renew: Timestamp,
        conditions: Vec<Condition>,
        /// When the kernel last saw the producer.
        last_seen: LastSeen,
    },
}

/// What `Paused=True` says of a Producer.
const PAUSED_MESSAGE: &str =
    "reconciliation is paused (token renewal too); remove the fdc.dev/paused annotation to resume";

/// `tokenExpiresIn` as shown at `now`, and how long that reading holds.
pub fn expires_in(expires_at: Timestamp, now: Timestamp) -> (String, Duration) {
    if expires_at > now {
        duration::remaining(expires_at.duration_since(now).unsigned_abs())
    } else {
        ("expired".to_string(), Duration::MAX)
    }
}

/// The status of `producer` (id `id`) after a pass that ended as `report`.
pub fn status(producer: &Producer, id: Uuid, report: &Report, now: Timestamp) -> ProducerStatus {
    let generation = producer.metadata.generation;
    let stamp = condition::Stamp { generation, now };
    let mut status = producer.status.clone().unwrap_or_default();
    // `KeyApproved` exists only while spec.publicKey is set: drop it when the key is removed.
    let old: Vec<_> = status
        .conditions
        .iter()
        .filter(|c| producer.spec.public_key.is_some() || c.type_ != types::KEY_APPROVED)
        // `SchemaBound` only while a schema is (or was, until unbound) bound.
        .filter(|c| {
            c.type_ != types::SCHEMA_BOUND
                || !matches!(report, Report::Issued { conditions, .. }
                    if conditions.iter().all(|c| c.type_ != types::SCHEMA_BOUND))
        })
        .cloned()
        .collect();
    status.producer_id = Some(id.to_string());
    status.observed_generation = generation;
    let not_paused = stamp.not_paused();
    let conditions = match report {
        Report::Paused => vec![stamp.paused(PAUSED_MESSAGE)],
        Report::Blocked(Blocked {
            reason, message, ..
        }) => vec![
            stamp.condition(types::READY, false, reason, message.clone()),
            not_paused,
        ],
        Report::KeyBlocked {
            reason,
            message,
            fingerprint,
        } => {
            status.fingerprint = Some(fingerprint.clone());
            vec![
                stamp.condition(types::READY, false, reason, message.clone()),
                stamp.condition(types::KEY_APPROVED, false, reason, message.clone()),
                not_paused,
            ]
        }
        Report::Issued {
            issued,
            fingerprint,
            renew,
            conditions: extra,
            last_seen,
        } => {
            status.last_seen_at = last_seen_at(status.last_seen_at.as_ref(), last_seen);
            let Issued {
                secret_name,
                expires_at,
                kid,
            } = issued;
            status.secret_name = Some(secret_name.clone());
            status.fingerprint = Some(fingerprint.clone());
            status.token_expires_at = Some(Time(*expires_at));
            status.token_expires_in = Some(expires_in(*expires_at, now).0);
            status.token_key_id = Some(kid.clone());
            let issued = format!(
                "Secret {secret_name} holds a token valid until {expires_at}; renewal at {renew}"
            );
            let mut conditions = vec![
                stamp.condition(types::READY, true, "CredentialsIssued", issued),
                not_paused,
            ];
            conditions.extend(extra.iter().cloned());
            conditions
        }
    };
    status.conditions = condition::merge(&old, conditions);
    status
}
