//! The kernel's credential Secrets: the token issuer key set and the admin token.
//!
//! Both are generated once. The reconciler reads them back on every pass and only writes
//! them again on an explicit rotation request; regenerating them on each reconcile would
//! roll the pods forever and invalidate every issued token.
//!
//! Issuer key Secret layout (`<kernel>-issuer-keys`):
//! - `signing.pem`: private key of the current issuer key (PKCS#8 PEM);
//! - `<kid>.pub.pem`: one public key per trusted key: the current one and rotated-out keys
//!   that still verify tokens they signed, until `trustedUntil`;
//! - `keys.json`: which kid is current and until when each other one stays trusted.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::auth::{self, AuthError, KeyPair};
use crate::builders::config::{public_key_file, ADMIN_TOKEN_FILE, SIGNING_KEY_FILE};
use crate::builders::{owner_meta, BuildError};
use crate::crd::FdcKernel;
use crate::labels::{names, ROTATION_HANDLED_ANNOTATION};

const KEYS_JSON: &str = "keys.json";

/// Extra trust after a rotated-out key's longest token expired (clock skew, leeway).
pub const RETIRE_MARGIN: Duration = Duration::from_secs(300);

/// Why a stored key Secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeySetError {
    #[error("secret has no {0}")]
    Missing(String),
    #[error("secret field {0} is malformed: {1}")]
    Malformed(String, String),
    #[error(transparent)]
    Key(#[from] AuthError),
}

/// One key the kernel trusts for verification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedKey {
    pub kid: String,
    /// `None` for the current key; for a rotated-out key, when it stops being trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_until: Option<Timestamp>,
    #[serde(skip)]
    pub public_pem: String,
}

#[derive(Serialize, Deserialize)]
struct KeysIndex {
    current: String,
    keys: Vec<TrustedKey>,
}

/// The issuer's keys: one that signs, and all that verify.
#[derive(Clone)]
pub struct IssuerKeySet {
    current: String,
    signing_pem: String,
    keys: Vec<TrustedKey>,
}

impl std::fmt::Debug for IssuerKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeySet")
            .field("current", &self.current)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl IssuerKeySet {
    /// A new set with one freshly generated key.
    pub fn generate() -> Result<Self, AuthError> {
        Ok(Self::from_pair(auth::generate_key_pair()?))
    }

    fn from_pair(pair: KeyPair) -> Self {
        IssuerKeySet {
            current: pair.kid.clone(),
            signing_pem: pair.private_pem,
            keys: vec![TrustedKey {
                kid: pair.kid,
                trusted_until: None,
                public_pem: pair.public_pem,
            }],
        }
    }

    /// Reads a set back from its Secret.
    pub fn from_secret(secret: &Secret) -> Result<Self, KeySetError> {
        let data = secret
            .data
            .as_ref()
            .ok_or_else(|| KeySetError::Missing("data".into()))?;
        let text = |key: &str| -> Result<String, KeySetError> {
            let bytes = data
                .get(key)
                .ok_or_else(|| KeySetError::Missing(key.into()))?;
            String::from_utf8(bytes.0.clone())
                .map_err(|e| KeySetError::Malformed(key.into(), e.to_string()))
        };
        let index: KeysIndex = serde_json::from_str(&text(KEYS_JSON)?)
            .map_err(|e| KeySetError::Malformed(KEYS_JSON.into(), e.to_string()))?;
        let mut keys = Vec::with_capacity(index.keys.len());
        for mut key in index.keys {
            key.public_pem = text(&public_key_file(&key.kid))?;
            keys.push(key);
        }
        if !keys.iter().any(|k| k.kid == index.current) {
            return Err(KeySetError::Malformed(
                KEYS_JSON.into(),
                format!("current kid {} is not among the keys", index.current),
            ));
        }
        Ok(IssuerKeySet {
            current: index.current,
            signing_pem: text(SIGNING_KEY_FILE)?,
            keys,
        })
    }

    /// Kid of the key that signs new tokens.
    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// Private key (PEM) of the current key. Never log it.
    pub fn signing_pem(&self) -> &str {
        &self.signing_pem
    }

    /// Kids the kernel must accept, current first, then the others in stored order.
    pub fn verify_kids(&self) -> Vec<String> {
        let mut kids = vec![self.current.clone()];
        kids.extend(
            self.keys
                .iter()
                .filter(|k| k.kid != self.current)
                .map(|k| k.kid.clone()),
        );
        kids
    }

    /// All trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Replaces the signing key; the old one stays trusted for `keep_for` (the longest token
    /// it may have signed) plus [`RETIRE_MARGIN`]. Returns the new kid.
    pub fn rotate(&mut self, keep_for: Duration, now: Timestamp) -> Result<String, AuthError> {
        let pair = auth::generate_key_pair()?;
        let until =
            now + SignedDuration::try_from(keep_for + RETIRE_MARGIN).unwrap_or(SignedDuration::MAX);
        for key in &mut self.keys {
            if key.trusted_until.is_none() {
                key.trusted_until = Some(until);
            }
        }
        self.current = pair.kid.clone();
        self.signing_pem = pair.private_pem;
        self.keys.push(TrustedKey {
            kid: pair.kid.clone(),
            trusted_until: None,
            public_pem: pair.public_pem,
        });
        Ok(pair.kid)
    }

    /// Drops rotated-out keys whose trust has ended; returns their kids.
    pub fn prune(&mut self, now: Timestamp) -> Vec<String> {
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.keys)
            .into_iter()
            .partition(|k| k.trusted_until.is_some_and(|t| t <= now));
        self.keys = kept;
        expired.into_iter().map(|k| k.kid).collect()
    }

    /// When the next rotated-out key stops being trusted (to requeue then).
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.keys.iter().filter_map(|k| k.trusted_until).min()
    }

    /// The Secret `<kernel>-issuer-keys`; `rotation_handled` records the last handled
    /// rotation request.
    pub fn to_secret(
        &self,
        kernel: &FdcKernel,
        rotation_handled: Option<&str>,
    ) -> Result<Secret, BuildError> {
        let name = kernel
            .metadata
            .name
            .as_deref()
            .ok_or(BuildError::MissingField("metadata.name"))?;
        let mut meta = owner_meta(kernel, names::issuer_secret(name))?;
        if let Some(value) = rotation_handled {
            meta.annotations = Some(BTreeMap::from([(
                ROTATION_HANDLED_ANNOTATION.to_string(),
                value.to_string(),
            )]));
        }
        let index = KeysIndex {
            current: self.current.clone(),
            keys: self.keys.clone(),
        };
        let mut data = BTreeMap::new();
        data.insert(
            SIGNING_KEY_FILE.to_string(),
            ByteString(self.signing_pem.clone().into_bytes()),
        );
        for key in &self.keys {
            data.insert(
                public_key_file(&key.kid),
                ByteString(key.public_pem.clone().into_bytes()),
            );
        }
        let index = serde_json::to_vec(&index).map_err(|e| BuildError::Invalid(e.to_string()))?;
        data.insert(KEYS_JSON.to_string(), ByteString(index));
        Ok(Secret {
            metadata: meta,
            type_: Some("Opaque".into()),
            data: Some(data),
            ..Secret::default()
        })
    }
}

/// A fresh admin API token: 32 random bytes, base64url.
pub fn generate_admin_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The Secret `<kernel>-admin-token`.
pub fn admin_secret(kernel: &FdcKernel, token: &str) -> Result<Secret, BuildError> {
    let name = kernel
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::MissingField("metadata.name"))?;
    Ok(Secret {
        metadata: owner_meta(kernel, names::admin_secret(name))?,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            ADMIN_TOKEN_FILE.to_string(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

/// The admin token stored in its Secret.
pub fn admin_token_from_secret(secret: &Secret) -> Result<String, KeySetError> {
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(ADMIN_TOKEN_FILE))
        .ok_or_else(|| KeySetError::Missing(ADMIN_TOKEN_FILE.into()))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|e| KeySetError::Malformed(ADMIN_TOKEN_FILE.into(), e.to_string()))
}
