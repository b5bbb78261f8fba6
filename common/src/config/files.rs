//! Files the config points at: `check-config` opens them, so that a typo in a path shows up
//! before `run`, named by its key.

use std::path::Path;

use super::{Config, ConfigError};
use crate::keys;

/// Opens and parses every key and token file the enabled features need.
pub fn check_referenced_files(config: &Config) -> Result<(), ConfigError> {
    let auth = &config.auth;
    if !auth.enabled {
        return Ok(());
    }
    if let Some(path) = &auth.signing_key {
        keys::load_signing_key(path).map_err(|e| ConfigError::Invalid {
            key: "auth.signing_key",
            problem: e.to_string(),
            fix: "point it at a PKCS#8 PEM Ed25519 private key (fdc-kernel keygen --out DIR writes one)",
        })?;
    }
    for path in &auth.verify_keys {
        keys::load_verifying_key(path).map_err(|e| ConfigError::Invalid {
            key: "auth.verify_keys",
            problem: e.to_string(),
            fix: "list SPKI PEM Ed25519 public key files",
        })?;
    }
    if let Some(path) = &auth.admin_token_file {
        readable(path).map_err(|problem| ConfigError::Invalid {
            key: "auth.admin_token_file",
            problem,
            fix: "point it at a file holding the admin token",
        })?;
    }
    Ok(())
}

fn readable(path: &Path) -> Result<(), String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => {
            Err(format!("{} is empty", path.display()))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}
