//! The `auth` config section (producer auth in `crate::auth` reads it). Embedded by the kernel
//! config as `auth`; every key has a default, so auth is off unless `auth.enabled: true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// With auth on, every `data` and `heartbeat` entry needs a valid token.
    pub enabled: bool,
    /// Expected (and issued) `iss` claim.
    pub issuer: String,
    /// Expected (and issued) `aud` claim.
    pub audience: String,
    /// PKCS#8 PEM private key used to issue tokens (registration, admin). Optional: a kernel
    /// that only verifies does not need it.
    pub signing_key: Option<PathBuf>,
    /// SPKI PEM public keys accepted for verification (several during a key rotation). The
    /// signing key's public half is always accepted too.
    pub verify_keys: Vec<PathBuf>,
    /// Lifetime of tokens the kernel issues.
    #[serde(with = "humantime_serde")]
    pub token_ttl: Duration,
    /// Clock leeway for `exp` / `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// How long a verified token and a producer's revocation state are cached: revocation
    /// takes effect within this time on every replica.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Bound on cached verified tokens (memory stays bounded under token churn).
    pub cache_max_entries: usize,
    /// File holding the admin API bearer token. The admin API runs only when set.
    pub admin_token_file: Option<PathBuf>,
    /// Address of the admin HTTP API (its own port, apart from metrics/health).
    pub admin_listen: SocketAddr,
    pub register: RegisterConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            enabled: false,
            issuer: "fdc".into(),
            audience: "fdc-kernel".into(),
            signing_key: None,
            verify_keys: Vec::new(),
            token_ttl: Duration::from_secs(24 * 3600),
            leeway: Duration::from_secs(5),
            cache_ttl: Duration::from_secs(30),
            cache_max_entries: 100_000,
            admin_token_file: None,
            admin_listen: "127.0.0.1:8081".parse().expect("static address"),
            register: RegisterConfig::default(),
        }
    }
}

/// The registration flow on a Redis stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterConfig {
    /// Serve registration requests (only when `auth.enabled`).
    pub enabled: bool,
    pub stream: String,
    /// Replies go to `<reply_prefix><fingerprint>`.
    pub reply_prefix: String,
    /// Reply streams expire after this long (the producer reads its reply right away).
    #[serde(with = "humantime_serde")]
    pub reply_ttl: Duration,
    /// How far a request's `ts` may be from the kernel's clock, both ways.
    #[serde(with = "humantime_serde")]
    pub max_skew: Duration,
    /// Tokens issued per key through registration within `rate_window`; further requests
    /// get `denied` (`rate_limited`).
    pub rate_limit: u32,
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    pub max_name_len: usize,
    /// Most registrations waiting for an admin decision: a request from a new key beyond it
    /// gets `denied` (`too_many_pending`) and leaves no row.
    pub max_pending: u32,
    /// Most new keys (new registrations) accepted within `new_keys_window`, over all keys:
    /// beyond it a new key's request gets `denied` (`rate_limited`) and leaves no row.
    pub new_keys_limit: u32,
    #[serde(with = "humantime_serde")]
    pub new_keys_window: Duration,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            enabled: true,
            stream: "fdc:register".into(),
            reply_prefix: "fdc:register:reply:".into(),
            reply_ttl: Duration::from_secs(600),
            max_skew: Duration::from_secs(300),
            rate_limit: 10,
            rate_window: Duration::from_secs(3600),
            max_name_len: 128,
            max_pending: 1000,
            new_keys_limit: 500,
            new_keys_window: Duration::from_secs(3600),
        }
    }
}

/// A bad auth setting: the key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid config key `{key}`: {problem}; fix: {fix}")]
pub struct AuthConfigError {
    pub key: &'static str,
    pub problem: String,
    pub fix: &'static str,
}

fn bad(key: &'static str, problem: impl Into<String>, fix: &'static str) -> AuthConfigError {
    AuthConfigError {
        key,
        problem: problem.into(),
        fix,
    }
}

impl AuthConfig {
    /// Checks values that parse but cannot work. Does not read the key files.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if self.issuer.is_empty() {
            return Err(bad("auth.issuer", "is empty", "set e.g. issuer: fdc"));
        }
        if self.audience.is_empty() {
            return Err(bad(
                "auth.audience",
                "is empty",
                "set e.g. audience: fdc-kernel",
            ));
        }
        if self.enabled && self.verify_keys.is_empty() && self.signing_key.is_none() {
            return Err(bad(
                "auth.verify_keys",
                "auth is enabled but no key can verify tokens",
                "list public key files in auth.verify_keys or set auth.signing_key",
            ));
        }
        if self.cache_ttl.is_zero() || self.cache_max_entries == 0 {
            return Err(bad(
                "auth.cache_ttl",
                "cache_ttl and cache_max_entries must be positive",
                "e.g. cache_ttl: 30s, cache_max_entries: 100000",
            ));
        }
        if self.token_ttl.is_zero() {
            return Err(bad("auth.token_ttl", "is zero", "e.g. token_ttl: 24h"));
        }
        let r = &self.register;
        if r.stream.is_empty() || r.reply_prefix.is_empty() {
            return Err(bad(
                "auth.register.stream",
                "stream and reply_prefix must be non-empty",
                "e.g. stream: fdc:register, reply_prefix: \"fdc:register:reply:\"",
            ));
        }
        if r.rate_limit == 0 || r.rate_window.is_zero() {
            return Err(bad(
                "auth.register.rate_limit",
                "rate_limit and rate_window must be positive",
                "e.g. rate_limit: 10, rate_window: 1h",
            ));
        }
        if r.max_pending == 0 {
            return Err(bad(
                "auth.register.max_pending",
                "is 0, so no new key could ever register",
                "e.g. max_pending: 1000",
            ));
        }
        if r.new_keys_limit == 0 || r.new_keys_window.is_zero() {
            return Err(bad(
                "auth.register.new_keys_limit",
                "new_keys_limit and new_keys_window must be positive",
                "e.g. new_keys_limit: 500, new_keys_window: 1h",
            ));
        }
        if r.max_skew.is_zero() {
            return Err(bad(
                "auth.register.max_skew",
                "is zero",
                "e.g. max_skew: 5m",
            ));
        }
        Ok(())
    }

    /// How long used registration nonces must be kept: a request whose `ts` is further than
    /// `max_skew` from now is refused by its `ts` anyway, so older nonces cannot be replayed.
    pub fn nonce_retention(&self) -> Duration {
        self.register.max_skew * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let c = AuthConfig::default();
        assert!(!c.enabled);
        assert_eq!(c.register.stream, "fdc:register");
        assert_eq!(c.cache_ttl, Duration::from_secs(30));
        c.validate().unwrap();
    }

    #[test]
    fn yaml_with_humantime_and_unknown_key() {
        let c: AuthConfig = serde_yaml::from_str(
            "enabled: true\nverify_keys: [/k.pub]\ncache_ttl: 2s\nregister:\n  rate_limit: 3\n",
        )
        .unwrap();
        assert_eq!(c.cache_ttl, Duration::from_secs(2));
        assert_eq!(c.register.rate_limit, 3);
        assert_eq!(c.register.rate_window, Duration::from_secs(3600));
        c.validate().unwrap();
        assert!(serde_yaml::from_str::<AuthConfig>("enabeld: true").is_err());
    }

    #[test]
    fn enabled_without_keys_names_the_key() {
        let c = AuthConfig {
            enabled: true,
            ..AuthConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "auth.verify_keys");
    }
}
