//! The auth drain: the same backlog, every entry carrying its producer's token, the kernel
//! with `auth.enabled` verifying them (the token path: cached verification, one
//! producer statement per batch).

use std::time::Duration;

use tempfile::TempDir;
use uuid::Uuid;

use super::workload::{entry_fields, W1Event};
use super::BenchError;
use fdc_common::config::Config;
use fdc_common::keys;
use fdc_common::token::TokenIssuer;

/// W1 events are spread over this many producers (by subject), each with its own token.
pub const PRODUCERS: usize = 10;

pub struct AuthSetup {
    /// Holds the issuer key file the kernel reads.
    _dir: TempDir,
    pub env: Vec<(String, String)>,
    tokens: Vec<String>,
}

impl AuthSetup {
    /// A fresh issuer key (given to the kernel as `auth.signing_key`, whose public half
    /// verifies) and one token per producer, valid for a day.
    pub fn new() -> Result<AuthSetup, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("fdc-bench-auth-")
            .tempdir()?;
        let key = keys::generate();
        let path = dir.path().join("issuer.key");
        keys::save_signing_key(&path, &key).map_err(|e| BenchError::Auth(e.to_string()))?;
        let defaults = Config::default().auth;
        let issuer = TokenIssuer::new(&key, defaults.issuer, defaults.audience)
            .map_err(|e| BenchError::Auth(e.to_string()))?;
        let tokens = (0..PRODUCERS)
            .map(|i| {
                issuer
                    .issue(
                        Uuid::now_v7(),
                        &format!("bench-producer-{i}"),
                        None,
                        Duration::from_secs(24 * 3600),
                    )
                    .map(|t| t.token)
                    .map_err(|e| BenchError::Auth(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let env = vec![
            ("FDC_AUTH__ENABLED".to_string(), "true".to_string()),
            (
                "FDC_AUTH__SIGNING_KEY".to_string(),
                path.to_string_lossy().into_owned(),
            ),
        ];
        Ok(AuthSetup {
            _dir: dir,
            env,
            tokens,
        })
    }

    /// The plain W1 entry plus the token of the event's producer.
    pub fn entry(&self, event: &W1Event) -> Vec<(&'static str, String)> {
        let mut fields = entry_fields(event).to_vec();
        let token = &self.tokens[event.subject as usize % self.tokens.len()];
        fields.push(("token", token.clone()));
        fields
    }
}
