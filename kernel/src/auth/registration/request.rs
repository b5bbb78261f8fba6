//! A registration request on the `fdc:register` stream: fields, canonical encoding, checks.
//!
//! Fields (all UTF-8 strings): `public_key` (standard base64 of the raw 32-byte Ed25519 key),
//! `name`, optional `schema`, `nonce` (standard base64 of 16–64 random bytes), `ts`
//! (nanoseconds since the Unix epoch, decimal) and `sig` (standard base64 of the 64-byte
//! Ed25519 signature over the canonical encoding):
//!
//! ```text
//! fdc-register-v1\n<public_key>\n<name>\n<schema or empty>\n<nonce>\n<ts>
//! ```
//!
//! No field may contain a control character, so the newline-joined form is unambiguous. This
//! module is pure (no I/O; the clock is an argument); replay and rate checks need Postgres and
//! live in the service.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use fdc_common::keys;

/// Domain separation: a signature for this purpose can never be replayed as anything else.
pub const CANONICAL_PREFIX: &str = "fdc-register-v1";

/// Hard caps per field, before any decoding: oversize requests are refused cheaply.
const MAX_PUBLIC_KEY_LEN: usize = 44;
const MAX_SIG_LEN: usize = 88;
const MAX_NONCE_LEN: usize = 88;
const MAX_TS_LEN: usize = 20;
const MIN_NONCE_BYTES: usize = 16;

/// A request whose signature, freshness and shape were verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterRequest {
    pub public_key: VerifyingKey,
    pub fingerprint: String,
    pub name: String,
    pub schema: Option<String>,
    pub nonce: String,
    pub ts_ns: i64,
    /// SHA-256 of the signed canonical encoding: identifies "the same request" when a
    /// producer (or the kernel) retries it with the same nonce.
    pub request_sha256: [u8; 32],
}

/// Why a request is `invalid`. Never contains field values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{0}` appears more than once")]
    Duplicate(&'static str),
    #[error("field `{0}` is too large")]
    TooLarge(&'static str),
    #[error("field `{0}` is not valid standard base64 of the expected length")]
    BadBase64(&'static str),
    #[error("field `{0}` is empty or contains control characters")]
    BadText(&'static str),
    #[error("public_key is not a valid Ed25519 key")]
    BadKey,
    #[error("ts is not a decimal integer of nanoseconds")]
    BadTs,
    #[error("ts is outside the accepted window")]
    Stale,
    #[error("signature does not verify")]
    BadSignature,
}

impl RequestError {
    /// Short label for metrics and the reply's `detail`.
    pub fn why(&self) -> &'static str {
        match self {
            RequestError::Missing(_) => "missing_field",
            RequestError::Duplicate(_) => "duplicate_field",
            RequestError::TooLarge(_) => "too_large",
            RequestError::BadBase64(_) => "bad_base64",
            RequestError::BadText(_) => "bad_text",
            RequestError::BadKey => "bad_key",
            RequestError::BadTs => "bad_ts",
            RequestError::Stale => "stale_ts",
            RequestError::BadSignature => "bad_signature",
        }
    }
}

/// An invalid request, with the fingerprint when the public key was readable (so the reply
/// can go to the producer's reply stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub fingerprint: Option<String>,
    pub nonce: Option<String>,
    pub error: RequestError,
}

/// The bytes that `sig` signs.
pub fn canonical(
    public_key: &str,
    name: &str,
    schema: Option<&str>,
    nonce: &str,
    ts: &str,
) -> Vec<u8> {
    format!(
        "{CANONICAL_PREFIX}\n{public_key}\n{name}\n{}\n{nonce}\n{ts}",
        schema.unwrap_or("")
    )
    .into_bytes()
}

/// Build the fields of a signed request (the reference producer and tests use this).
pub fn build(
    key: &SigningKey,
    name: &str,
    schema: Option<&str>,
    nonce: &str,
    ts_ns: i64,
) -> Vec<(String, String)> {
    let public_key = STANDARD.encode(key.verifying_key().as_bytes());
    let ts = ts_ns.to_string();
    let sig = key.sign(&canonical(&public_key, name, schema, nonce, &ts));
    let mut fields = vec![
        ("public_key".to_string(), public_key),
        ("name".to_string(), name.to_string()),
    ];
    if let Some(s) = schema {
        fields.push(("schema".to_string(), s.to_string()));
    }
    fields.push(("nonce".to_string(), nonce.to_string()));
    fields.push(("ts".to_string(), ts));
    fields.push(("sig".to_string(), STANDARD.encode(sig.to_bytes())));
    fields
}

/// A fresh random nonce (standard base64 of 24 bytes).
pub fn new_nonce() -> String {
    let mut b = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    STANDARD.encode(b)
}

/// Limits that come from config.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_name_len: usize,
    pub max_skew: Duration,
}

struct Fields<'a> {
    fields: &'a [(String, Vec<u8>)],
}

impl<'a> Fields<'a> {
    /// The single value of `name` as text, bounded by `max` bytes.
    fn get(&self, name: &'static str, max: usize) -> Result<Option<&'a str>, RequestError> {
        let mut found = None;
        for (k, v) in self.fields {
            if k == name {
                if found.is_some() {
                    return Err(RequestError::Duplicate(name));
                }
                found = Some(v.as_slice());
            }
        }
        let Some(v) = found else { return Ok(None) };
        if v.len() > max {
            return Err(RequestError::TooLarge(name));
        }
        let s = std::str::from_utf8(v).map_err(|_| RequestError::BadText(name))?;
        if s.is_empty() || s.chars().any(char::is_control) {
            return Err(RequestError::BadText(name));
        }
        Ok(Some(s))
    }

    fn require(&self, name: &'static str, max: usize) -> Result<&'a str, RequestError> {
        self.get(name, max)?.ok_or(RequestError::Missing(name))
    }
}

fn decode_exact(
    field: &'static str,
    s: &str,
    min: usize,
    max: usize,
) -> Result<Vec<u8>, RequestError> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|_| RequestError::BadBase64(field))?;
    if bytes.len() < min || bytes.len() > max {
        return Err(RequestError::BadBase64(field));
    }
    Ok(bytes)
}

/// Check shape, signature and freshness of a request. `now_ns`: the kernel's clock.
pub fn verify(
    fields: &[(String, Vec<u8>)],
    limits: &RequestLimits,
    now_ns: i64,
) -> Result<RegisterRequest, Invalid> {
    let f = Fields { fields };
    // The key first: with it we know where to send the reply even when the rest is bad.
    let key = f.require("public_key", MAX_PUBLIC_KEY_LEN).and_then(|pk| {
        let raw = decode_exact("public_key", pk, 32, 32)?;
        let arr: [u8; 32] = raw.try_into().map_err(|_| RequestError::BadKey)?;
        let vk = VerifyingKey::from_bytes(&arr).map_err(|_| RequestError::BadKey)?;
        Ok((pk, vk))
    });
    let (pk_text, public_key) = match key {
        Ok(k) => k,
        Err(error) => {
            return Err(Invalid {
                fingerprint: None,
                nonce: None,
                error,
            })
        }
    };
    let fingerprint = keys::fingerprint(&public_key);
    let mut nonce_seen = None;
    let rest = (|| {
        let nonce = f.require("nonce", MAX_NONCE_LEN)?;
        nonce_seen = Some(nonce.to_string());
        decode_exact("nonce", nonce, MIN_NONCE_BYTES, 64)?;
        let name = f.require("name", limits.max_name_len)?;
        let schema = f.get("schema", limits.max_name_len)?;
        let ts = f.require("ts", MAX_TS_LEN)?;
        let sig_text = f.require("sig", MAX_SIG_LEN)?;
        let sig_raw = decode_exact("sig", sig_text, 64, 64)?;
        let sig = Signature::from_slice(&sig_raw).map_err(|_| RequestError::BadSignature)?;
        // Signature before freshness: an unsigned request learns nothing about our clock.
        let signed = canonical(pk_text, name, schema, nonce, ts);
        public_key
            .verify(&signed, &sig)
            .map_err(|_| RequestError::BadSignature)?;
        if !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RequestError::BadTs);
        }
        let ts_ns: i64 = ts.parse().map_err(|_| RequestError::BadTs)?;
        let skew = i64::try_from(limits.max_skew.as_nanos()).unwrap_or(i64::MAX);
        if (i128::from(now_ns) - i128::from(ts_ns)).abs() > i128::from(skew) {
            return Err(RequestError::Stale);
        }
        Ok(RegisterRequest {
            public_key,
            fingerprint: fingerprint.clone(),
            name: name.to_string(),
            schema: schema.map(str::to_string),
            nonce: nonce.to_string(),
            ts_ns,
            request_sha256: Sha256::digest(&signed).into(),
        })
    })();
    rest.map_err(|error| Invalid {
        fingerprint: Some(fingerprint.clone()),
        nonce: nonce_seen.clone(),
        error,
    })
}

/// A request refused before its fields could be read in full (over the stream's byte bound,
/// or a field name that is not UTF-8): `invalid` with `error`, addressed to the key's reply
/// stream when `readable` (the fields that were read whole) holds a valid `public_key`.
pub fn refuse(readable: &[(String, Vec<u8>)], error: RequestError) -> Invalid {
    let f = Fields { fields: readable };
    let fingerprint = f
        .require("public_key", MAX_PUBLIC_KEY_LEN)
        .and_then(|pk| decode_exact("public_key", pk, 32, 32))
        .ok()
        .and_then(|raw| <[u8; 32]>::try_from(raw).ok())
        .and_then(|arr| VerifyingKey::from_bytes(&arr).ok())
        .map(|vk| keys::fingerprint(&vk));
    let nonce = f
        .get("nonce", MAX_NONCE_LEN)
        .ok()
        .flatten()
        .map(str::to_string);
    Invalid {
        fingerprint,
        nonce,
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_000_000_000;
    const LIMITS: RequestLimits = RequestLimits {
        max_name_len: 32,
        max_skew: Duration::from_secs(300),
    };

    fn bytes(fields: Vec<(String, String)>) -> Vec<(String, Vec<u8>)> {
        fields
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect()
    }

    fn set(fields: &mut [(String, Vec<u8>)], name: &str, value: &[u8]) {
        fields.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_vec();
    }

    fn err(fields: &[(String, Vec<u8>)]) -> RequestError {
        verify(fields, &LIMITS, NOW).unwrap_err().error
    }

    #[test]
    fn valid_request_verifies() {
        let sk = keys::generate();
        let nonce = new_nonce();
        let f = bytes(build(&sk, "sensor", Some("temp"), &nonce, NOW - 1_000));
        let r = verify(&f, &LIMITS, NOW).unwrap();
        assert_eq!(r.fingerprint, keys::fingerprint(&sk.verifying_key()));
        assert_eq!(r.name, "sensor");
        assert_eq!(r.schema.as_deref(), Some("temp"));
        assert_eq!(r.nonce, nonce);
        assert_eq!(r.ts_ns, NOW - 1_000);
    }

    #[test]
    fn digest_names_the_signed_request() {
        let sk = keys::generate();
        let nonce = new_nonce();
        let a = bytes(build(&sk, "sensor", None, &nonce, NOW));
        let again = bytes(build(&sk, "sensor", None, &nonce, NOW));
        let other = bytes(build(&sk, "sensor-2", None, &nonce, NOW));
        let d = |f: &[(String, Vec<u8>)]| verify(f, &LIMITS, NOW).unwrap().request_sha256;
        assert_eq!(d(&a), d(&again));
        assert_ne!(d(&a), d(&other));
        assert_eq!(
            d(&a),
            <[u8; 32]>::from(Sha256::digest(canonical(
                &STANDARD.encode(sk.verifying_key().as_bytes()),
                "sensor",
                None,
                &nonce,
                &NOW.to_string()
            )))
        );
    }

    #[test]
    fn canonical_form_is_exactly_documented() {
        assert_eq!(
            canonical("PK", "n", None, "N", "1"),
            b"fdc-register-v1\nPK\nn\n\nN\n1".to_vec()
        );
    }

    #[test]
    fn tampered_field_fails_signature_but_keeps_fingerprint() {
        let sk = keys::generate();
        let mut f = bytes(build(&sk, "sensor", None, &new_nonce(), NOW));
        set(&mut f, "name", b"other");
        let inv = verify(&f, &LIMITS, NOW).unwrap_err();
        assert_eq!(inv.error, RequestError::BadSignature);
        assert_eq!(
            inv.fingerprint,
            Some(keys::fingerprint(&sk.verifying_key()))
        );
    }

    #[test]
    fn stale_and_future_ts_rejected() {
        let sk = keys::generate();
        let old = bytes(build(&sk, "s", None, &new_nonce(), NOW - 301_000_000_000));
        assert_eq!(err(&old), RequestError::Stale);
        let future = bytes(build(&sk, "s", None, &new_nonce(), NOW + 301_000_000_000));
        assert_eq!(err(&future), RequestError::Stale);
    }

    #[test]
    fn malformed_base64_rejected() {
        let sk = keys::generate();
        let good = bytes(build(&sk, "s", None, &new_nonce(), NOW));
        for field in ["public_key", "nonce", "sig"] {
            let mut f = good.clone();
            set(&mut f, field, b"!!not*base64!!");
            assert_eq!(
                err(&f),
                RequestError::BadBase64(match field {
                    "public_key" => "public_key",
                    "nonce" => "nonce",
                    _ => "sig",
                })
            );
        }
        // A short nonce is refused too.
        let short = bytes(build(&sk, "s", None, &STANDARD.encode([1u8; 8]), NOW));
        assert_eq!(err(&short), RequestError::BadBase64("nonce"));
    }

    #[test]
    fn oversize_fields_rejected() {
        let sk = keys::generate();
        let long_name = "x".repeat(33);
        let f = bytes(build(&sk, &long_name, None, &new_nonce(), NOW));
        assert_eq!(err(&f), RequestError::TooLarge("name"));
        let mut f = bytes(build(&sk, "s", None, &new_nonce(), NOW));
        set(&mut f, "sig", &[b'A'; 200]);
        assert_eq!(err(&f), RequestError::TooLarge("sig"));
    }

    #[test]
    fn missing_duplicate_and_control_chars_rejected() {
        let sk = keys::generate();
        let good = bytes(build(&sk, "s", None, &new_nonce(), NOW));
        let no_nonce: Vec<_> = good.iter().filter(|(k, _)| k != "nonce").cloned().collect();
        assert_eq!(err(&no_nonce), RequestError::Missing("nonce"));
        let mut dup = good.clone();
        dup.push(("name".into(), b"s".to_vec()));
        assert_eq!(err(&dup), RequestError::Duplicate("name"));
        let nl = bytes(build(&sk, "a\nb", None, &new_nonce(), NOW));
        assert_eq!(err(&nl), RequestError::BadText("name"));
        let no_key: Vec<_> = good
            .iter()
            .filter(|(k, _)| k != "public_key")
            .cloned()
            .collect();
        let inv = verify(&no_key, &LIMITS, NOW).unwrap_err();
        assert_eq!(inv.error, RequestError::Missing("public_key"));
        assert_eq!(inv.fingerprint, None);
    }
}
