//! A producer's credentials Secret (`<producer>-credentials`, in the Producer's namespace).
//!
//! Data keys (what an application mounts or reads as env):
//! - `producer-id`: the producer's UUID (the token's `sub`);
//! - `token`: the JWT to put in each entry's `token` field;
//! - `stream`: the Redis stream to publish to;
//! - `fingerprint`: SHA-256 fingerprint of the producer's public key;
//! - `private-key.pem` / `public-key.pem`: only when the operator generated the key pair.
//!
//! Annotations record what the token was issued for, so a reconcile can tell whether the
//! stored token is still right without decoding it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};

use crate::builders::BuildError;
use crate::crd::Producer;
use crate::labels::{names, producer_labels};

pub const PRODUCER_ID_KEY: &str = "producer-id";
pub const TOKEN_KEY: &str = "token";
pub const STREAM_KEY: &str = "stream";
pub const FINGERPRINT_KEY: &str = "fingerprint";
pub const PRIVATE_KEY_KEY: &str = "private-key.pem";
pub const PUBLIC_KEY_KEY: &str = "public-key.pem";

/// When the stored token expires (RFC 3339).
pub const EXPIRES_ANNOTATION: &str = "fdc.dev/token-expires-at";
/// Hash of everything the stored token was issued for (claims, TTL, signing kid).
pub const TOKEN_INPUTS_ANNOTATION: &str = "fdc.dev/token-inputs";
/// Kid of the issuer key that signed the stored token.
pub const TOKEN_KID_ANNOTATION: &str = "fdc.dev/token-kid";

/// Everything that goes into the Secret.
#[derive(Clone)]
pub struct Credentials {
    pub producer_id: String,
    pub token: String,
    pub expires_at: Timestamp,
    pub kid: String,
    pub inputs_hash: String,
    pub stream: String,
    pub fingerprint: String,
    /// `(private PEM, public PEM)` when the operator generated the pair.
    pub key_pair: Option<(String, String)>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("producer_id", &self.producer_id)
            .field("expires_at", &self.expires_at)
            .field("kid", &self.kid)
            .field("stream", &self.stream)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What a stored Secret holds, as far as it can be read.
#[derive(Clone, Default)]
pub struct Stored {
    pub token: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub inputs_hash: Option<String>,
    pub kid: Option<String>,
    pub key_pair: Option<(String, String)>,
}

impl Stored {
    pub fn read(secret: &Secret) -> Stored {
        let text = |k: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(k))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let ann = |k: &str| secret.annotations().get(k).cloned();
        Stored {
            token: text(TOKEN_KEY),
            expires_at: ann(EXPIRES_ANNOTATION).and_then(|s| s.parse().ok()),
            inputs_hash: ann(TOKEN_INPUTS_ANNOTATION),
            kid: ann(TOKEN_KID_ANNOTATION),
            key_pair: text(PRIVATE_KEY_KEY).zip(text(PUBLIC_KEY_KEY)),
        }
    }
}

/// The Secret, owned by the Producer (deleted with it, after the finalizer revoked it).
pub fn credentials_secret(producer: &Producer, c: &Credentials) -> Result<Secret, BuildError> {
    let owner = producer
        .controller_owner_ref(&())
        .ok_or(BuildError::MissingField("metadata.uid"))?;
    let name = producer.name_any();
    let mut data = BTreeMap::from([
        (PRODUCER_ID_KEY.to_string(), bytes(&c.producer_id)),
        (TOKEN_KEY.to_string(), bytes(&c.token)),
        (STREAM_KEY.to_string(), bytes(&c.stream)),
        (FINGERPRINT_KEY.to_string(), bytes(&c.fingerprint)),
    ]);
    if let Some((private, public)) = &c.key_pair {
        data.insert(PRIVATE_KEY_KEY.to_string(), bytes(private));
        data.insert(PUBLIC_KEY_KEY.to_string(), bytes(public));
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(names::producer_secret(&name)),
            namespace: producer.namespace(),
            labels: Some(producer_labels(&name)),
            annotations: Some(BTreeMap::from([
                (EXPIRES_ANNOTATION.to_string(), c.expires_at.to_string()),
                (TOKEN_INPUTS_ANNOTATION.to_string(), c.inputs_hash.clone()),
                (TOKEN_KID_ANNOTATION.to_string(), c.kid.clone()),
            ])),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

fn bytes(s: &str) -> ByteString {
    ByteString(s.as_bytes().to_vec())
}
