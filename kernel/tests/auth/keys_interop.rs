//! Keys interoperate with standard tools in both directions: `fdc-kernel keygen` keys open in
//! the real `openssl` (and Python `cryptography` when it is installed), keys those tools write
//! load in the kernel.

use std::path::Path;
use std::process::Command;

use fdc_common::keys;

const BIN: &str = env!("CARGO_BIN_EXE_fdc-kernel");

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn keygen(dir: &Path) {
    run(Command::new(BIN)
        .arg("keygen")
        .arg("--out")
        .arg(dir)
        .env_clear());
}

/// A temp dir for a test against Python `cryptography`, if this machine has python3 with it
/// importable; `None` (and a note) when not: openssl covers interop then.
fn python_cryptography_dir() -> Option<tempfile::TempDir> {
    let importable = Command::new("python3")
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !importable {
        eprintln!("python3 with cryptography not installed; openssl covers interop");
        return None;
    }
    Some(tempfile::tempdir().unwrap())
}

#[test]
fn keygen_keys_open_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let keys_dir = dir.path().join("keys");
    keygen(&keys_dir);
    let private = keys_dir.join(keys::PRIVATE_KEY_FILE);
    run(Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(&private));
    // OpenSSL derives the same public key as the one keygen wrote.
    let derived = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private));
    let written = std::fs::read_to_string(keys_dir.join(keys::PUBLIC_KEY_FILE)).unwrap();
    assert_eq!(derived, written);
    let text = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(keys_dir.join(keys::PUBLIC_KEY_FILE)));
    assert!(text.contains("ED25519 Public-Key"), "{text}");
}

#[test]
fn keygen_keys_open_in_python_cryptography() {
    let Some(dir) = python_cryptography_dir() else {
        return;
    };
    keygen(dir.path());
    let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
key = s.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
pub = s.load_pem_public_key(open(sys.argv[2], "rb").read())
raw = lambda k: k.public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
assert raw(key.public_key()) == raw(pub)
print(type(key).__name__)
"#;
    let out = run(Command::new("python3")
        .args(["-c", script])
        .arg(dir.path().join(keys::PRIVATE_KEY_FILE))
        .arg(dir.path().join(keys::PUBLIC_KEY_FILE)));
    assert!(out.contains("Ed25519PrivateKey"), "{out}");
}

#[test]
fn openssl_keys_load_in_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("issuer.key");
    let public = dir.path().join("issuer.pub");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public));
    let sk = keys::load_signing_key(&private).unwrap();
    let vk = keys::load_verifying_key(&public).unwrap();
    assert_eq!(sk.verifying_key(), vk);
    // Re-written by the kernel, the key is byte for byte what OpenSSL wrote.
    assert_eq!(
        keys::signing_key_to_pem(&sk).unwrap().as_str(),
        std::fs::read_to_string(&private).unwrap()
    );
}

#[test]
fn python_cryptography_keys_load_in_the_kernel() {
    let Some(dir) = python_cryptography_dir() else {
        return;
    };
    let private = dir.path().join("py.key");
    let script = r#"
import sys
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
key = Ed25519PrivateKey.generate()
open(sys.argv[1], "wb").write(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
print(key.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())
"#;
    let public_hex = run(Command::new("python3").args(["-c", script]).arg(&private));
    let sk = keys::load_signing_key(&private).unwrap();
    assert_eq!(
        hex::encode(sk.verifying_key().as_bytes()),
        public_hex.trim()
    );
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_token_without_kid_minted_by_openssl_is_verified_against_the_configured_keys() {
    use fdc_common::token::{TokenError, TokenVerifier};

    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("issuer.key");
    run(Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private));
    let now = chrono::Utc::now().timestamp();
    let producer = uuid::Uuid::now_v7();
    // A JWS with no `kid` in its header, signed by the openssl binary over the signing input.
    let mint = |exp: i64| {
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": "fdc", "aud": "fdc-kernel", "sub": producer, "name": "sensor",
            "iat": now, "exp": exp, "jti": "openssl-1",
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let input_file = dir.path().join("input");
        let sig_file = dir.path().join("sig");
        std::fs::write(&input_file, &input).unwrap();
        run(Command::new("openssl")
            .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
            .arg(&private)
            .arg("-in")
            .arg(&input_file)
            .arg("-out")
            .arg(&sig_file));
        format!("{input}.{}", b64url(&std::fs::read(&sig_file).unwrap()))
    };
    let signer = keys::load_signing_key(&private).unwrap();
    // The right key among others (a rotation): accepted.
    let verifier = TokenVerifier::new("fdc", "fdc-kernel")
        .with_key(&keys::generate().verifying_key())
        .with_key(&signer.verifying_key())
        .with_key(&keys::generate().verifying_key());
    let claims = verifier.verify(&mint(now + 600)).unwrap();
    assert_eq!(claims.sub, producer);
    assert_eq!(verifier.verify(&mint(now - 600)), Err(TokenError::Expired));
    // None of the configured keys signed it: refused for its signature.
    let others =
        TokenVerifier::new("fdc", "fdc-kernel").with_key(&keys::generate().verifying_key());
    assert_eq!(others.verify(&mint(now + 600)), Err(TokenError::Signature));
}
