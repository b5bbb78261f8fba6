//! The operator's only contact with token and key formats: everything here delegates to
//! `fdc_common::{keys, token}`, the implementation the kernel uses too.

use std::path::Path;
use std::time::Duration;

use fdc_common::keys;
use fdc_common::token::TokenIssuer;

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
        f.debug_struct("KeyPair")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
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
    /// The token's `iat`: the reconcile pass's clock, so that the pass's arithmetic on the
    /// expiry (when to renew, how long `tokenExpiresIn` holds) never sees a token issued
    /// after its `now`.
    pub issued_at: Timestamp,
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
pub fn generate_key_pair() -> Result<KeyPair, AuthError> {
    let signing = keys::generate();
    let verifying = signing.verifying_key();
    let private_pem = keys::signing_key_to_pem(&signing)
        .map_err(invalid_key)?
        .to_string();
    let public_pem = keys::verifying_key_to_pem(&verifying).map_err(invalid_key)?;
    Ok(KeyPair {
        kid: keys::kid(&verifying),
        private_pem,
        public_pem,
    })
}

/// Key id (`kid`) of a public key (SPKI PEM), as the kernel's verifier selects keys by.
pub fn key_id(public_pem: &str) -> Result<String, AuthError> {
    Ok(keys::kid(&parse_public(public_pem)?))
}

/// SHA-256 fingerprint of a public key (SPKI PEM), as the kernel's registration flow computes it.
pub fn fingerprint(public_pem: &str) -> Result<String, AuthError> {
    Ok(keys::fingerprint(&parse_public(public_pem)?))
}

/// Signs a producer token with the kernel's issuer key (PKCS#8 PEM); the token's `kid` is
/// that key's id.
pub fn issue_token(
    signing_key_pem: &str,
    req: &TokenRequest<'_>,
) -> Result<IssuedToken, AuthError> {
    let key =
        keys::signing_key_from_pem(signing_key_pem, Path::new(ORIGIN)).map_err(invalid_key)?;
    let issuer = TokenIssuer::new(&key, req.issuer, req.audience)
        .map_err(|e| AuthError::Issue(e.to_string()))?;
    let iat = req.issued_at.as_second();
    let exp = iat.saturating_add(i64::try_from(req.ttl.as_secs()).unwrap_or(i64::MAX));
    let claims = issuer.claims(req.producer_id, req.name, req.schema, iat, exp);
    let token = issuer
        .sign_claims(&claims)
        .map_err(|e| AuthError::Issue(e.to_string()))?;
    let expires_at = Timestamp::from_second(exp).map_err(|e| AuthError::Issue(e.to_string()))?;
    Ok(IssuedToken { token, expires_at })
}

/// Names the key source in kernel key errors (the operator reads keys from Secrets, not files).
const ORIGIN: &str = "<issuer key Secret>";

fn parse_public(pem: &str) -> Result<keys::VerifyingKey, AuthError> {
    keys::verifying_key_from_pem(pem, Path::new("<public key>")).map_err(invalid_key)
}

fn invalid_key(e: keys::KeyError) -> AuthError {
    AuthError::InvalidKey(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_issued_at_the_pass_clock_not_the_wall_clock() {
        let key = keys::generate();
        let pem = keys::signing_key_to_pem(&key).unwrap();
        let at = Timestamp::from_second(1_600_000_000).unwrap();
        let req = TokenRequest {
            issuer: "fdc",
            audience: "fdc-kernel",
            producer_id: Uuid::nil(),
            name: "p",
            schema: None,
            ttl: Duration::from_secs(3600),
            issued_at: at,
        };
        let issued = issue_token(&pem, &req).unwrap();
        assert_eq!(issued.expires_at.as_second(), 1_600_003_600);
        let claims = fdc_common::token::precheck(&issued.token, 1_600_000_001).unwrap();
        assert_eq!((claims.iat, claims.exp), (1_600_000_000, 1_600_003_600));
    }
}
