//! Ed25519 key handling: generation, standard PEM load/save, key ids and fingerprints.
//!
//! Keys are stored as standard PEM so that keys made by other tools work unchanged:
//! private keys as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, what `openssl genpkey -algorithm
//! ed25519` writes), public keys as SPKI (`-----BEGIN PUBLIC KEY-----`, what `openssl pkey
//! -pubout` writes). Errors never carry key material, only the path involved.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// File name of the private key written by [`keygen`].
pub const PRIVATE_KEY_FILE: &str = "producer.key";
/// File name of the public key written by [`keygen`].
pub const PUBLIC_KEY_FILE: &str = "producer.pub";

/// Failure to read, parse or write a key. Never contains key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write key file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a PKCS#8 PEM Ed25519 private key")]
    BadPrivateKey { path: PathBuf },
    #[error("{path} is not an SPKI PEM Ed25519 public key")]
    BadPublicKey { path: PathBuf },
    #[error("{path} already exists; refusing to overwrite a key (pass --force to replace it)")]
    Exists { path: PathBuf },
    #[error("cannot encode key as PEM")]
    Encode,
}

/// A fresh random Ed25519 signing key from the OS RNG.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Key id used in the JWT `kid` header: lowercase hex of the first 8 bytes of
/// SHA-256 over the raw 32-byte public key. Short, stable, derivable by anyone holding the
/// public key, so issuers in other languages can compute it too.
pub fn kid(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

/// Registration fingerprint: lowercase hex SHA-256 of the raw 32-byte public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Parse a PKCS#8 PEM private key. `origin` only names the source in errors.
pub fn signing_key_from_pem(pem: &str, origin: &Path) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|_| KeyError::BadPrivateKey {
        path: origin.to_path_buf(),
    })
}

/// Parse an SPKI PEM public key. `origin` only names the source in errors.
pub fn verifying_key_from_pem(pem: &str, origin: &Path) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::BadPublicKey {
        path: origin.to_path_buf(),
    })
}

/// PKCS#8 PEM of a private key. The returned string zeroizes itself on drop.
///
/// Written as PKCS#8 v1 (RFC 5208: the private key alone, no embedded public key), the form
/// `openssl genpkey` writes and every tool reads; OpenSSL 3.0 and Python `cryptography`
/// refuse the v2 form (RFC 5958 with the public key attribute) for Ed25519. Both forms load.
pub fn signing_key_to_pem(key: &SigningKey) -> Result<zeroize::Zeroizing<String>, KeyError> {
    let bytes = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    bytes
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::Encode)
}

/// SPKI PEM of a public key.
pub fn verifying_key_to_pem(key: &VerifyingKey) -> Result<String, KeyError> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|_| KeyError::Encode)
}

/// Load a private key from a PEM file.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let pem =
        zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?);
    signing_key_from_pem(&pem, path)
}

/// Load a public key from a PEM file.
pub fn load_verifying_key(path: &Path) -> Result<VerifyingKey, KeyError> {
    let pem = fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    verifying_key_from_pem(&pem, path)
}

/// Write a private key as PKCS#8 PEM with mode 0600 (also tightened if the file existed).
pub fn save_signing_key(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let pem = signing_key_to_pem(key)?;
    write_file(path, pem.as_bytes(), 0o600)
}

/// Write a public key as SPKI PEM (mode 0644).
pub fn save_verifying_key(path: &Path, key: &VerifyingKey) -> Result<(), KeyError> {
    let pem = verifying_key_to_pem(key)?;
    write_file(path, pem.as_bytes(), 0o644)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    // The mode on open only applies when the file is created; set it again for an existing file
    // so a private key never stays world-readable.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Paths and id of a key pair written by [`keygen`].
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub private_key: PathBuf,
    pub public_key: PathBuf,
    pub kid: String,
    pub fingerprint: String,
}

/// Generate a key pair into `dir` as [`PRIVATE_KEY_FILE`] and [`PUBLIC_KEY_FILE`], creating the
/// directory (0700) if needed. Refuses to replace an existing private key unless `overwrite`.
pub fn keygen(dir: &Path, overwrite: bool) -> Result<KeyPairFiles, KeyError> {
    let private_key = dir.join(PRIVATE_KEY_FILE);
    let public_key = dir.join(PUBLIC_KEY_FILE);
    if !overwrite && private_key.exists() {
        return Err(KeyError::Exists { path: private_key });
    }
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|source| KeyError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            KeyError::Write {
                path: dir.to_path_buf(),
                source,
            }
        })?;
    }
    let key = generate();
    save_signing_key(&private_key, &key)?;
    let vk = key.verifying_key();
    save_verifying_key(&public_key, &vk)?;
    Ok(KeyPairFiles {
        private_key,
        public_key,
        kid: kid(&vk),
        fingerprint: fingerprint(&vk),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Generated with `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout`
    // (OpenSSL 3.0); a throwaway test key.
    pub(crate) const OPENSSL_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\n\
MC4CAQAwBQYDK2VwBCIEICYioIzfaVq6s8QB3cdiXBj7QVtOdzNeE7SDubUXfIJk\n\
-----END PRIVATE KEY-----\n";
    pub(crate) const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\n\
MCowBQYDK2VwAyEAs9eYqNbHRuuTZafmRtVl8oxjo9TMIieFfGgyOtxcn+M=\n\
-----END PUBLIC KEY-----\n";

    #[test]
    fn openssl_keys_load_and_match() {
        let sk = signing_key_from_pem(OPENSSL_PRIVATE, Path::new("mem")).unwrap();
        let vk = verifying_key_from_pem(OPENSSL_PUBLIC, Path::new("mem")).unwrap();
        assert_eq!(sk.verifying_key(), vk);
    }

    #[test]
    fn kid_is_first_8_bytes_of_sha256_hex() {
        let vk = verifying_key_from_pem(OPENSSL_PUBLIC, Path::new("mem")).unwrap();
        let full = hex::encode(Sha256::digest(vk.as_bytes()));
        assert_eq!(kid(&vk).len(), 16);
        assert_eq!(kid(&vk), full[..16]);
        assert_eq!(fingerprint(&vk), full);
        assert_eq!(kid(&vk), kid(&vk).to_lowercase());
    }

    #[test]
    fn private_keys_are_written_as_pkcs8_v1_and_v2_keys_still_load() {
        let sk = generate();
        let pem = signing_key_to_pem(&sk).unwrap();
        // v1: SEQUENCE { INTEGER 0, AlgorithmIdentifier, OCTET STRING } = 48 bytes of DER.
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(b64.len(), 64, "{}", pem.as_str());
        assert!(b64.starts_with("MC4CAQAw"), "{}", pem.as_str());
        // What earlier kernels wrote (v2, public key included) keeps loading.
        let v2 = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
        assert_ne!(v2.as_str(), pem.as_str());
        assert_eq!(
            signing_key_from_pem(&v2, Path::new("mem"))
                .unwrap()
                .to_bytes(),
            sk.to_bytes()
        );
    }

    #[test]
    fn pem_roundtrip() {
        let sk = generate();
        let pem = signing_key_to_pem(&sk).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = signing_key_from_pem(&pem, Path::new("mem")).unwrap();
        assert_eq!(back.to_bytes(), sk.to_bytes());
        let pub_pem = verifying_key_to_pem(&sk.verifying_key()).unwrap();
        assert!(pub_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(
            verifying_key_from_pem(&pub_pem, Path::new("mem")).unwrap(),
            sk.verifying_key()
        );
    }

    #[test]
    fn keygen_writes_pair_with_private_mode_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("keys");
        let files = keygen(&out, false).unwrap();
        assert_eq!(files.private_key, out.join(PRIVATE_KEY_FILE));
        let mode = fs::metadata(&files.private_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let sk = load_signing_key(&files.private_key).unwrap();
        let vk = load_verifying_key(&files.public_key).unwrap();
        assert_eq!(sk.verifying_key(), vk);
        assert_eq!(files.kid, kid(&vk));
        assert!(matches!(keygen(&out, false), Err(KeyError::Exists { .. })));
        let again = keygen(&out, true).unwrap();
        assert_ne!(again.kid, files.kid);
    }

    #[test]
    fn existing_world_readable_file_is_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        fs::write(&p, "x").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        save_signing_key(&p, &generate()).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn bad_pem_errors_name_path_not_contents() {
        let err = signing_key_from_pem("not a key SECRETSTUFF", Path::new("/x/y.key")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/x/y.key"));
        assert!(!msg.contains("SECRETSTUFF"));
        // A public key is not a private key and vice versa.
        assert!(signing_key_from_pem(OPENSSL_PUBLIC, Path::new("p")).is_err());
        assert!(verifying_key_from_pem(OPENSSL_PRIVATE, Path::new("p")).is_err());
    }
}
