//! The operator's only contact with token and key formats: everything here delegates to the
//! kernel crate (`fdc_kernel::auth`), so the operator and the kernel share one implementation.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use uuid::Uuid;

/// A generated Ed25519 key pair in PEM (PKCS#8 private, SPKI public).
#[derive(Clone)]
pub struct KeyPair {
    pub kid: String,
    pub private_pem: String,
    pub public_pem: String,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("KeyPair").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// What a producer token says.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub producer_id: Uuid,
    pub name: &'a str,
    pub schema: Option<&'a str>,
    pub ttl: Duration,
}

/// A signed token and when it stops being valid.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: Timestamp,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Key or token operation failed. Messages never contain key material or tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("cannot issue token: {0}")]
    Issue(String),
}

/// A fresh Ed25519 key pair.
// TODO(auth merge): replace with fdc_kernel::auth::keys.
pub fn generate_key_pair() -> Result<KeyPair, AuthError> {
    use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, EncodePrivateKey, EncodePublicKey};
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let private_pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| AuthError::InvalidKey(e.to_string()))?
        .to_string();
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| AuthError::InvalidKey(e.to_string()))?;
    let kid = key_id(&public_pem)?;
    Ok(KeyPair { kid, private_pem, public_pem })
}

/// Key id (`kid`) of a public key.
pub fn key_id(public_pem: &str) -> Result<String, AuthError> {
    Ok(fingerprint(public_pem)?[..16].to_string())
}

/// SHA-256 fingerprint of a public key, as the kernel's registration flow computes it.
pub fn fingerprint(public_pem: &str) -> Result<String, AuthError> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    use sha2::Digest;
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(public_pem)
        .map_err(|e| AuthError::InvalidKey(e.to_string()))?;
    let digest = sha2::Sha256::digest(key.as_bytes());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Signs a producer token with the kernel's issuer key.
pub fn issue_token(
    _signing_key_pem: &str,
    _kid: &str,
    _req: &TokenRequest<'_>,
) -> Result<IssuedToken, AuthError> {
    Err(AuthError::Issue("kernel token API not merged yet".into()))
}
