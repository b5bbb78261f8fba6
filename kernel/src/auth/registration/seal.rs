//! Sealing an issued token to the producer's own key, so it never crosses Redis in clear.
//!
//! The producer registers with an Ed25519 key; we convert it to X25519 (the birational map
//! Edwards -> Montgomery for the public key, the SHA-512-derived scalar for the private key;
//! the same conversion as libsodium's `crypto_sign_ed25519_*_to_curve25519`) and use a
//! libsodium-compatible sealed box (`crypto_box_seal`: ephemeral X25519 + XSalsa20-Poly1305).
//! Only the holder of the Ed25519 private key can open it.

use ed25519_dalek::{SigningKey, VerifyingKey};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("cannot seal message")]
    Seal,
    #[error("sealed message does not open with this key")]
    Open,
}

/// X25519 public key of an Ed25519 public key.
pub fn x25519_public(key: &VerifyingKey) -> crypto_box::PublicKey {
    crypto_box::PublicKey::from_bytes(key.to_montgomery().to_bytes())
}

/// X25519 secret key of an Ed25519 private key (clamped by crypto_box).
pub fn x25519_secret(key: &SigningKey) -> crypto_box::SecretKey {
    crypto_box::SecretKey::from_bytes(key.to_scalar_bytes())
}

/// Seal `plaintext` to the owner of `recipient`.
pub fn seal(recipient: &VerifyingKey, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    x25519_public(recipient)
        .seal(&mut rand::rngs::OsRng, plaintext)
        .map_err(|_| SealError::Seal)
}

/// Open a sealed box with the recipient's Ed25519 private key.
pub fn open(key: &SigningKey, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    x25519_secret(key)
        .unseal(sealed)
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fdc_common::keys;

    #[test]
    fn derived_x25519_pair_matches() {
        let sk = keys::generate();
        assert_eq!(
            x25519_secret(&sk).public_key(),
            x25519_public(&sk.verifying_key())
        );
    }

    #[test]
    fn opens_only_with_the_recipient_key() {
        let sk = keys::generate();
        let other = keys::generate();
        let sealed = seal(&sk.verifying_key(), b"the token").unwrap();
        assert_eq!(sealed.len(), 32 + 16 + 9);
        assert!(!sealed.windows(9).any(|w| w == b"the token"));
        assert_eq!(open(&sk, &sealed).unwrap(), b"the token");
        assert_eq!(open(&other, &sealed), Err(SealError::Open));
        let mut tampered = sealed.clone();
        tampered[40] ^= 1;
        assert_eq!(open(&sk, &tampered), Err(SealError::Open));
    }
}
