//! Build: the credentials a valid Producer should hold (pure: no API calls; the clock is
//! passed in, a new key pair comes from the OS RNG).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::auth::{self, TokenRequest};
use crate::builders::config::short_hash;
use crate::builders::issuer_keys::IssuerKeySet;
use crate::builders::producer_secret::{self, Credentials, Stored};
use crate::controller::apply::Note;
use crate::controller::producer::renew_at;
use crate::controller::producer::validate::ValidProducer;
use crate::controller::DesiredError;
use crate::labels::names;

/// What a pass writes for a Producer, in the order the apply step writes it.
pub struct Desired {
    /// The public key the credentials are for (`spec.publicKey`, or the generated one).
    pub public_pem: String,
    pub fingerprint: String,
    /// Approve `public_pem` at the kernel first (`spec.publicKey` is set).
    pub approve_key: bool,
    /// Events published once the key is approved (a token issued or renewed).
    pub announce: Vec<Note>,
    /// The credentials Secret, server-side applied.
    pub secret: Secret,
    /// What the Secret holds, for the status.
    pub issued: Issued,
}

/// The token the credentials Secret holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub secret_name: String,
    pub expires_at: Timestamp,
    /// The issuer key that signed it.
    pub kid: String,
}

/// Builds the credentials of `valid` from the kernel's issuer `keys` and what is `stored`.
pub fn build(
    valid: &ValidProducer<'_>,
    keys: &IssuerKeySet,
    stored: &Stored,
    now: Timestamp,
) -> Result<Desired, DesiredError> {
    let producer = valid.producer;
    let (id, ttl) = (valid.id, valid.ttl);

    // Key pair: the producer's own public key, else the stored generated pair, else a new one.
    let (public_pem, key_pair) = match &producer.spec.public_key {
        Some(pem) => (pem.clone(), None),
        None => match stored.key_pair.clone() {
            Some(pair) => (pair.1.clone(), Some(pair)),
            None => {
                let pair = auth::generate_key_pair()?;
                (
                    pair.public_pem.clone(),
                    Some((pair.private_pem, pair.public_pem)),
                )
            }
        },
    };
    let fingerprint = auth::fingerprint(&public_pem)?;

    // Token: reuse while it was issued for the same inputs and is not due for renewal.
    let auth_spec = &valid.kernel.spec.auth;
    let inputs_hash = short_hash(&format!(
        "{}|{}|{}|{}|{}|{}|{}|{}",
        auth_spec.issuer,
        auth_spec.audience,
        id,
        producer.name_any(),
        producer.spec.schema.as_deref().unwrap_or(""),
        ttl.as_secs(),
        keys.current_kid(),
        fingerprint,
    ));
    let reusable = match (&stored.token, stored.expires_at, &stored.inputs_hash) {
        (Some(token), Some(exp), Some(hash))
            if *hash == inputs_hash && now < renew_at(exp, ttl) =>
        {
            Some((token.clone(), exp))
        }
        _ => None,
    };
    let mut announce = Vec::new();
    let (token, expires_at) = match reusable {
        Some(t) => t,
        None => {
            let issued = auth::issue_token(
                keys.signing_pem(),
                &TokenRequest {
                    issuer: &auth_spec.issuer,
                    audience: &auth_spec.audience,
                    producer_id: id,
                    name: &producer.name_any(),
                    schema: producer.spec.schema.as_deref(),
                    ttl,
                    issued_at: now,
                },
            )?;
            let (reason, verb) = if stored.token.is_some() {
                ("TokenRenewed", "renewed")
            } else {
                ("TokenIssued", "issued")
            };
            announce.push(Note::normal(
                reason,
                "IssueToken",
                format!(
                    "token {verb} with issuer key {}, expires {}",
                    keys.current_kid(),
                    issued.expires_at
                ),
            ));
            (issued.token, issued.expires_at)
        }
    };

    let credentials = Credentials {
        producer_id: id.to_string(),
        token,
        expires_at,
        kid: keys.current_kid().to_string(),
        inputs_hash,
        stream: valid.stream.clone(),
        fingerprint: fingerprint.clone(),
        key_pair,
    };
    let secret = producer_secret::credentials_secret(producer, &credentials)?;
    Ok(Desired {
        approve_key: producer.spec.public_key.is_some(),
        public_pem,
        fingerprint,
        announce,
        secret,
        issued: Issued {
            secret_name: names::producer_secret(&producer.name_any()),
            expires_at,
            kid: keys.current_kid().to_string(),
        },
    })
}
