//! Producer access tokens: standard JWTs signed with EdDSA (Ed25519).
//!
//! Any JWT library with EdDSA can mint a token the kernel accepts: header
//! `{"alg":"EdDSA","typ":"JWT","kid":"<kid>"}` and the claims in [`Claims`]. The `kid` selects
//! one of several verification keys so keys can be rotated without downtime.
//!
//! Security notes (why the verifier looks the way it does):
//! - the header is inspected before any key is chosen, and only `alg: EdDSA` is accepted, so
//!   `alg: none` and HS256-signed-with-the-public-key tokens are refused up front;
//! - the verify key comes only from our configured set, by `kid`; there is no default key
//!   (a token without `kid` is tried against each configured key, never another one);
//! - errors carry a short reason and never the token text.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::keys;

/// Default clock leeway for `exp`/`nbf`: small, to absorb clock skew between hosts.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);

/// JWT claims of a producer token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// Audience. Tokens from other issuers may carry an array; see [`deserialize_aud`].
    #[serde(deserialize_with = "deserialize_aud")]
    pub aud: String,
    /// The producer id.
    pub sub: Uuid,
    /// Producer name.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub jti: String,
}

/// RFC 7519 allows `aud` to be a string or an array of strings. We keep the first entry; the
/// verifier replaces it with the configured audience after validation proved it is present.
fn deserialize_aud<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    match Aud::deserialize(d)? {
        Aud::One(s) => Ok(s),
        Aud::Many(v) => v
            .into_iter()
            .next()
            .ok_or_else(|| serde::de::Error::custom("empty aud")),
    }
}

/// A freshly issued token and its claims.
#[derive(Clone)]
pub struct IssuedToken {
    pub token: String,
    pub claims: Claims,
}

// The token is a bearer secret: Debug must not print it.
impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Why a token was refused (or could not be made). Display never includes the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is not a well-formed JWT")]
    Malformed,
    #[error("token algorithm is not EdDSA")]
    Algorithm,
    #[error("token kid is unknown, or no verify key is configured")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token issuer does not match")]
    Issuer,
    #[error("token audience does not match")]
    Audience,
    #[error("token claims are missing or invalid")]
    Claims,
    #[error("cannot sign token")]
    Signing,
}

impl TokenError {
    /// Short stable label for the `why` label of `kernel_auth_denied_total` and DLQ details.
    pub fn why(&self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
            TokenError::Claims => "claims",
            TokenError::Signing => "signing",
        }
    }
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
        ErrorKind::MissingRequiredClaim(_)
        | ErrorKind::InvalidClaimFormat(_)
        | ErrorKind::InvalidSubject => TokenError::Claims,
        // A payload that is valid JSON but not our claim shape (e.g. `sub` not a UUID).
        ErrorKind::Json(_) => TokenError::Claims,
        _ => TokenError::Malformed,
    }
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs producer tokens with one Ed25519 key.
pub struct TokenIssuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    pub fn new(
        signing_key: &SigningKey,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Result<Self, TokenError> {
        let der = signing_key
            .to_pkcs8_der()
            .map_err(|_| TokenError::Signing)?;
        Ok(Self {
            key: EncodingKey::from_ed_der(der.as_bytes()),
            kid: keys::kid(&signing_key.verifying_key()),
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Issue a token for `producer_id` valid from now for `ttl`.
    pub fn issue(
        &self,
        producer_id: Uuid,
        name: &str,
        schema: Option<&str>,
        ttl: Duration,
    ) -> Result<IssuedToken, TokenError> {
        let iat = now_secs();
        let exp = iat.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let claims = self.claims(producer_id, name, schema, iat, exp);
        let token = self.sign_claims(&claims)?;
        Ok(IssuedToken { token, claims })
    }

    /// The claims of a token of this issuer for `producer_id`, valid from `iat` until `exp`
    /// (seconds since the epoch), with a fresh `jti` and no `nbf`: what `issue` signs. Tests
    /// that need unusual times or claims change a copy and sign it with `sign_claims`.
    pub fn claims(
        &self,
        producer_id: Uuid,
        name: &str,
        schema: Option<&str>,
        iat: i64,
        exp: i64,
    ) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: producer_id,
            name: name.to_string(),
            schema: schema.map(str::to_string),
            iat,
            exp,
            nbf: None,
            jti: Uuid::now_v7().to_string(),
        }
    }

    /// Sign arbitrary claims as-is (with this issuer's `kid`). Used by `issue` and by tests
    /// that need tokens with unusual times or claims.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| TokenError::Signing)
    }
}

/// Verifies producer tokens against a set of Ed25519 public keys selected by `kid`.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    audience: String,
    validation: Validation,
}

impl fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.keys.keys().collect();
        kids.sort();
        f.debug_struct("TokenVerifier")
            .field("kids", &kids)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

impl TokenVerifier {
    /// A verifier with no keys yet (it rejects everything until keys are added).
    pub fn new(issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        Self {
            keys: HashMap::new(),
            audience: audience.to_string(),
            validation,
        }
    }

    /// A verifier with every public key (SPKI PEM) in `paths`.
    pub fn from_key_files(
        paths: &[std::path::PathBuf],
        issuer: &str,
        audience: &str,
    ) -> Result<Self, keys::KeyError> {
        let mut v = Self::new(issuer, audience);
        for p in paths {
            v.add_key(&keys::load_verifying_key(p)?);
        }
        Ok(v)
    }

    /// Set the clock leeway applied to `exp` and `nbf`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// Add a verification key; returns its kid.
    pub fn add_key(&mut self, key: &VerifyingKey) -> String {
        let kid = keys::kid(key);
        let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
        // from_ed_components takes the JWK `x` value (base64url raw public key); it cannot fail
        // for the 32 bytes we just encoded.
        if let Ok(dk) = DecodingKey::from_ed_components(&x) {
            self.keys.insert(kid.clone(), dk);
        }
        kid
    }

    /// Builder form of [`add_key`](Self::add_key).
    pub fn with_key(mut self, key: &VerifyingKey) -> Self {
        self.add_key(key);
        self
    }

    /// Kids of the configured keys, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut v: Vec<_> = self.keys.keys().cloned().collect();
        v.sort();
        v
    }

    /// Verify signature, algorithm, kid, `iss`, `aud`, `exp`, `nbf` and the claim shape.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = parse_header(token)?;
        if header.alg.as_deref() != Some("EdDSA") {
            return Err(TokenError::Algorithm);
        }
        let data = match header.kid.as_deref() {
            Some(kid) => {
                let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;
                jsonwebtoken::decode::<Claims>(token, key, &self.validation)
                    .map_err(map_jwt_error)?
            }
            None => self.decode_without_kid(token)?,
        };
        let mut claims = data.claims;
        // Validation proved the configured audience is among the token's; normalize to it.
        claims.aud = self.audience.clone();
        Ok(claims)
    }
}

impl TokenVerifier {
    /// A token without `kid` (optional in JWS, RFC 7515) is tried against every configured
    /// key, in kid order. The signature is checked before the claims, so the first key whose
    /// verdict is not "bad signature" signed it and its verdict stands; when none did, the
    /// token is refused for its signature. The key set is small (a rotation's worth), so this
    /// costs a few signature checks at most.
    fn decode_without_kid(
        &self,
        token: &str,
    ) -> Result<jsonwebtoken::TokenData<Claims>, TokenError> {
        if self.keys.is_empty() {
            return Err(TokenError::UnknownKey);
        }
        for kid in self.kids() {
            match jsonwebtoken::decode::<Claims>(token, &self.keys[&kid], &self.validation)
                .map_err(map_jwt_error)
            {
                Err(TokenError::Signature) => continue,
                verdict => return verdict,
            }
        }
        Err(TokenError::Signature)
    }
}

/// What a producer can check about its own token without the kernel's keys: a JWT with an
/// `EdDSA` header (a `kid` is optional), claims of the right shape, not expired at `now` (seconds since
/// the epoch). The signature is not checked. `publish` uses it to refuse entries the kernel
/// would dead-letter for sure.
pub fn precheck(token: &str, now: i64) -> Result<Claims, TokenError> {
    let header = parse_header(token)?;
    if header.alg.as_deref() != Some("EdDSA") {
        return Err(TokenError::Algorithm);
    }
    let payload = token.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Claims)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Decode the JOSE header ourselves so the algorithm is checked before anything else and
/// unsupported algorithm names (e.g. `none`) are reported as such rather than as bad JSON.
fn parse_header(token: &str) -> Result<RawHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "fdc-test";
    const AUD: &str = "fdc-kernel";

    fn setup() -> (SigningKey, TokenIssuer, TokenVerifier) {
        let sk = keys::generate();
        let issuer = TokenIssuer::new(&sk, ISS, AUD).unwrap();
        let verifier = TokenVerifier::new(ISS, AUD).with_key(&sk.verifying_key());
        (sk, issuer, verifier)
    }

    /// Claims of ISS for AUD (any key signs them in the tests below).
    fn claims_at(iat: i64, exp: i64, nbf: Option<i64>) -> Claims {
        let (_, issuer, _) = setup();
        Claims {
            nbf,
            ..issuer.claims(Uuid::now_v7(), "p", None, iat, exp)
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn issued_token_verifies_with_exact_claims() {
        let (sk, issuer, verifier) = setup();
        let pid = Uuid::now_v7();
        let t = issuer
            .issue(pid, "sensor-1", Some("temp"), Duration::from_secs(60))
            .unwrap();
        let header = jsonwebtoken::decode_header(&t.token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(
            header.kid.as_deref(),
            Some(keys::kid(&sk.verifying_key()).as_str())
        );
        let c = verifier.verify(&t.token).unwrap();
        assert_eq!(c, t.claims);
        assert_eq!(c.sub, pid);
        assert_eq!(c.name, "sensor-1");
        assert_eq!(c.schema.as_deref(), Some("temp"));
        assert_eq!(c.exp - c.iat, 60);
        assert!(Uuid::parse_str(&c.jti).is_ok());
    }

    #[test]
    fn several_keys_by_kid_for_rotation() {
        let (old_sk, old_issuer, _) = setup();
        let new_sk = keys::generate();
        let new_issuer = TokenIssuer::new(&new_sk, ISS, AUD).unwrap();
        let verifier = TokenVerifier::new(ISS, AUD)
            .with_key(&old_sk.verifying_key())
            .with_key(&new_sk.verifying_key());
        assert_eq!(verifier.kids().len(), 2);
        for iss in [&old_issuer, &new_issuer] {
            let t = iss
                .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
                .unwrap();
            assert!(verifier.verify(&t.token).is_ok());
        }
    }

    #[test]
    fn forged_signature_rejected() {
        let (_, issuer, verifier) = setup();
        let t = issuer
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        // Change the payload but keep the original signature.
        let parts: Vec<&str> = t.token.split('.').collect();
        let mut c = t.claims.clone();
        c.name = "evil".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64(&serde_json::to_value(&c).unwrap()),
            parts[2]
        );
        assert_eq!(verifier.verify(&forged), Err(TokenError::Signature));
    }

    #[test]
    fn token_signed_by_unknown_key_rejected() {
        let (_, _, verifier) = setup();
        let other = TokenIssuer::new(&keys::generate(), ISS, AUD).unwrap();
        let t = other
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&t.token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn other_key_claiming_our_kid_rejected_by_signature() {
        let (sk, _, verifier) = setup();
        let other = keys::generate();
        let other_issuer = TokenIssuer::new(&other, ISS, AUD).unwrap();
        let c = claims_at(now_secs(), now_secs() + 60, None);
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys::kid(&sk.verifying_key()));
        let der = other.to_pkcs8_der().unwrap();
        let tok =
            jsonwebtoken::encode(&header, &c, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
        assert_eq!(verifier.verify(&tok), Err(TokenError::Signature));
        drop(other_issuer);
    }

    fn sign_without_kid(sk: &SigningKey, c: &Claims) -> String {
        let der = sk.to_pkcs8_der().unwrap();
        let header = Header::new(Algorithm::EdDSA);
        assert_eq!(header.kid, None);
        jsonwebtoken::encode(&header, c, &EncodingKey::from_ed_der(der.as_bytes())).unwrap()
    }

    #[test]
    fn missing_kid_is_tried_against_every_configured_key() {
        let (sk, _, verifier) = setup();
        // Another configured key first or last in kid order: the signing key is still found.
        let verifier = verifier.with_key(&keys::generate().verifying_key());
        let c = claims_at(now_secs(), now_secs() + 60, None);
        assert_eq!(
            verifier.verify(&sign_without_kid(&sk, &c)).unwrap().sub,
            c.sub
        );
        // Signed by a key we do not know: refused for its signature.
        let stranger = keys::generate();
        assert_eq!(
            verifier.verify(&sign_without_kid(&stranger, &c)),
            Err(TokenError::Signature)
        );
        // Signed by our key but expired: the verdict of the key that signed it.
        let old = claims_at(now_secs() - 3600, now_secs() - 600, None);
        assert_eq!(
            verifier.verify(&sign_without_kid(&sk, &old)),
            Err(TokenError::Expired)
        );
        // No keys at all: nothing can verify it.
        let empty = TokenVerifier::new(ISS, AUD);
        assert_eq!(
            empty.verify(&sign_without_kid(&sk, &c)),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn expired_rejected_beyond_leeway_and_accepted_within() {
        let (_, issuer, verifier) = setup();
        let now = now_secs();
        let expired = issuer
            .sign_claims(&claims_at(now - 120, now - 60, None))
            .unwrap();
        assert_eq!(verifier.verify(&expired), Err(TokenError::Expired));
        // Expired 2s ago, within the 5s default leeway.
        let within = issuer
            .sign_claims(&claims_at(now - 120, now - 2, None))
            .unwrap();
        assert!(verifier.verify(&within).is_ok());
    }

    #[test]
    fn not_yet_valid_rejected() {
        let (_, issuer, verifier) = setup();
        let now = now_secs();
        let t = issuer
            .sign_claims(&claims_at(now, now + 3600, Some(now + 600)))
            .unwrap();
        assert_eq!(verifier.verify(&t), Err(TokenError::NotYetValid));
        let ok = issuer
            .sign_claims(&claims_at(now, now + 3600, Some(now - 1)))
            .unwrap();
        assert!(verifier.verify(&ok).is_ok());
    }

    #[test]
    fn wrong_issuer_and_audience_rejected() {
        let (sk, _, verifier) = setup();
        let wrong_iss = TokenIssuer::new(&sk, "someone-else", AUD).unwrap();
        let t = wrong_iss
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&t.token), Err(TokenError::Issuer));
        let wrong_aud = TokenIssuer::new(&sk, ISS, "other-service").unwrap();
        let t = wrong_aud
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        assert_eq!(verifier.verify(&t.token), Err(TokenError::Audience));
    }

    #[test]
    fn audience_array_accepted_when_it_contains_ours() {
        let (sk, _, verifier) = setup();
        let now = now_secs();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys::kid(&sk.verifying_key()));
        let body = serde_json::json!({
            "iss": ISS, "aud": ["x", AUD], "sub": Uuid::now_v7(), "name": "p",
            "iat": now, "exp": now + 60, "jti": "j1"
        });
        let der = sk.to_pkcs8_der().unwrap();
        let tok = jsonwebtoken::encode(&header, &body, &EncodingKey::from_ed_der(der.as_bytes()))
            .unwrap();
        assert_eq!(verifier.verify(&tok).unwrap().aud, AUD);
    }

    #[test]
    fn alg_none_rejected() {
        let (sk, _, verifier) = setup();
        let now = now_secs();
        let header =
            serde_json::json!({"alg": "none", "typ": "JWT", "kid": keys::kid(&sk.verifying_key())});
        let body = serde_json::to_value(claims_at(now, now + 60, None)).unwrap();
        let tok = format!("{}.{}.", b64(&header), b64(&body));
        assert_eq!(verifier.verify(&tok), Err(TokenError::Algorithm));
        // Header without any alg.
        let header = serde_json::json!({"typ": "JWT", "kid": keys::kid(&sk.verifying_key())});
        let tok = format!("{}.{}.", b64(&header), b64(&body));
        assert_eq!(verifier.verify(&tok), Err(TokenError::Algorithm));
    }

    #[test]
    fn hs256_with_public_key_as_secret_rejected() {
        let (sk, _, verifier) = setup();
        let vk = sk.verifying_key();
        let now = now_secs();
        let c = claims_at(now, now + 60, None);
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys::kid(&vk));
        // Try both the PEM text and the raw bytes of the public key as the HMAC secret.
        let pem = keys::verifying_key_to_pem(&vk).unwrap();
        for secret in [pem.as_bytes(), vk.as_bytes().as_slice()] {
            let tok = jsonwebtoken::encode(&header, &c, &EncodingKey::from_secret(secret)).unwrap();
            assert_eq!(verifier.verify(&tok), Err(TokenError::Algorithm));
        }
    }

    #[test]
    fn garbage_rejected_as_malformed() {
        let (_, _, verifier) = setup();
        for g in [
            "",
            "abc",
            "a.b.c",
            "a.b",
            "....",
            "eyJhbGciOiJFZERTQSJ9",
            "%%%.%%%.%%%",
        ] {
            assert_eq!(
                verifier.verify(g),
                Err(TokenError::Malformed),
                "input {g:?}"
            );
        }
    }

    #[test]
    fn non_uuid_sub_rejected_as_claims() {
        let (sk, _, verifier) = setup();
        let now = now_secs();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys::kid(&sk.verifying_key()));
        let body = serde_json::json!({
            "iss": ISS, "aud": AUD, "sub": "not-a-uuid", "name": "p",
            "iat": now, "exp": now + 60, "jti": "j1"
        });
        let der = sk.to_pkcs8_der().unwrap();
        let tok = jsonwebtoken::encode(&header, &body, &EncodingKey::from_ed_der(der.as_bytes()))
            .unwrap();
        assert_eq!(verifier.verify(&tok), Err(TokenError::Claims));
        // Missing exp.
        let body = serde_json::json!({
            "iss": ISS, "aud": AUD, "sub": Uuid::now_v7(), "name": "p", "iat": now, "jti": "j1"
        });
        let tok = jsonwebtoken::encode(&header, &body, &EncodingKey::from_ed_der(der.as_bytes()))
            .unwrap();
        assert_eq!(verifier.verify(&tok), Err(TokenError::Claims));
    }

    #[test]
    fn openssl_generated_key_signs_and_verifies() {
        let p = std::path::Path::new("fixture");
        let sk = keys::signing_key_from_pem(keys::tests::OPENSSL_PRIVATE, p).unwrap();
        let vk = keys::verifying_key_from_pem(keys::tests::OPENSSL_PUBLIC, p).unwrap();
        let issuer = TokenIssuer::new(&sk, ISS, AUD).unwrap();
        let verifier = TokenVerifier::new(ISS, AUD).with_key(&vk);
        let t = issuer
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        assert!(verifier.verify(&t.token).is_ok());
    }

    #[test]
    fn errors_and_debug_never_contain_the_token() {
        let (_, issuer, verifier) = setup();
        let t = issuer
            .issue(Uuid::now_v7(), "p", None, Duration::from_secs(60))
            .unwrap();
        assert!(!format!("{t:?}").contains(&t.token));
        let broken = format!("{}x", t.token);
        let e = verifier.verify(&broken).unwrap_err();
        assert!(!e.to_string().contains(&t.token[..20]));
        assert!(!format!("{e:?}").contains(&t.token[..20]));
        let all = [
            TokenError::Malformed,
            TokenError::Algorithm,
            TokenError::UnknownKey,
            TokenError::Signature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::Issuer,
            TokenError::Audience,
            TokenError::Claims,
            TokenError::Signing,
        ];
        let whys: std::collections::HashSet<_> = all.iter().map(|e| e.why()).collect();
        assert_eq!(whys.len(), all.len());
    }

    #[test]
    fn precheck_refuses_what_the_kernel_would_refuse_for_sure() {
        let (_, issuer, _) = setup();
        let now = now_secs();
        let good = issuer.sign_claims(&claims_at(now, now + 60, None)).unwrap();
        assert_eq!(precheck(&good, now).unwrap().exp, now + 60);
        let expired = issuer
            .sign_claims(&claims_at(now - 120, now - 60, None))
            .unwrap();
        assert_eq!(precheck(&expired, now), Err(TokenError::Expired));
        assert_eq!(precheck("garbage", now), Err(TokenError::Malformed));
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg": "none"})),
            b64(&serde_json::json!({"sub": "x"}))
        );
        assert_eq!(precheck(&none, now), Err(TokenError::Algorithm));
        let bad_claims = format!(
            "{}.{}.sig",
            b64(&serde_json::json!({"alg": "EdDSA", "kid": "k"})),
            b64(&serde_json::json!({"sub": "not-a-uuid", "exp": now + 60}))
        );
        assert_eq!(precheck(&bad_claims, now), Err(TokenError::Claims));
    }
}
