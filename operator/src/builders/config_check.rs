//! Checks a rendered `kernel.yaml` with the kernel's own config loader (`fdc_common::config`).
//!
//! The CRD schema can only express static rules; the kernel's loader also checks relations
//! between keys (e.g. `ingest.claim_idle` must exceed `shutdown.timeout`), some of which come
//! from free-form `spec.config`. Running the same loader here turns a spec the kernel would
//! refuse at start-up into a `Degraded` condition instead of a crash loop.
//!
//! What the loader sees is the file alone, without the `FDC_*` variables the pod adds
//! (consumer name, Postgres URL and possibly Redis URL from Secrets): those are not in the
//! spec, so their defaults stand in for them. The loader does not open the key files the
//! config names, so the check needs no Secret either.

use figment::providers::{Format, Yaml};
use figment::Figment;

use crate::builders::config::RenderedConfig;

/// `kernel.yaml` keys rendered from a dedicated `FdcKernel` field; every other key is set
/// under `spec.config` with the same path.
const SPEC_FIELDS: &[(&str, &str)] = &[
    ("shutdown.timeout", "spec.shutdownTimeout"),
    ("ingest.streams", "spec.streams"),
    ("ingest.group", "spec.consumerGroup"),
    (
        "spill.max_bytes",
        "spec.spill.maxBytes (default: 90% of spec.spill.size)",
    ),
    ("auth.enabled", "spec.auth.enabled"),
    ("auth.issuer", "spec.auth.issuer"),
    ("auth.audience", "spec.auth.audience"),
    ("auth.token_ttl", "spec.auth.tokenTTL"),
    ("log.level", "spec.logLevel"),
    ("redis.url", "spec.redis.url"),
    ("republish.enabled", "spec.republish.enabled"),
    ("republish.stream", "spec.republish.stream"),
    ("republish.maxlen", "spec.republish.maxLen"),
];

/// The kernel refused the rendered config.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the kernel refuses the rendered kernel.yaml: {kernel}{hint}")]
pub struct ConfigRejected {
    /// The kernel's own message (names the key and the fix, in `kernel.yaml` terms).
    pub kernel: String,
    /// Where the keys of that message are set in the `FdcKernel`.
    hint: String,
}

/// `Ok` when the kernel would start with `rendered` (as far as its config goes).
pub fn check(rendered: &RenderedConfig) -> Result<(), ConfigRejected> {
    load(rendered).map(|_| ())
}

/// The config the kernel would run with `rendered` (as far as the file goes).
pub fn load(rendered: &RenderedConfig) -> Result<fdc_common::config::Config, ConfigRejected> {
    // The loader validates every section, the spill's included.
    fdc_common::config::Config::from_figment(Figment::from(Yaml::string(&rendered.yaml)))
        .map_err(|e| rejected(e.to_string()))
}

fn rejected(kernel: String) -> ConfigRejected {
    let keys = config_keys(&kernel);
    let hint = if keys.is_empty() {
        String::new()
    } else {
        let places: Vec<String> = keys
            .iter()
            .map(|key| match SPEC_FIELDS.iter().find(|(k, _)| k == key) {
                Some((_, field)) => format!("{key} is {field}"),
                None => format!("{key} is spec.config.{key}"),
            })
            .collect();
        format!(". In the FdcKernel: {}", places.join(", "))
    };
    ConfigRejected { kernel, hint }
}

/// Config keys named in `message` (words that are paths of the kernel's `Config`), in
/// order of appearance, without repeats.
fn config_keys(message: &str) -> Vec<String> {
    let mut known = serde_json::to_value(fdc_common::config::Config::default())
        .unwrap_or(serde_json::Value::Null);
    // The spill section is absent by default (spill off); its keys are keys all the same.
    if let Ok(spill) = serde_json::to_value(fdc_common::config::spill::SpillConfig::new("/")) {
        known["spill"] = spill;
    }
    let mut keys: Vec<String> = Vec::new();
    let words = message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
    for word in words.map(|w| w.trim_matches('.')) {
        let is_key =
            word.contains('.') && word.split('.').try_fold(&known, |v, k| v.get(k)).is_some();
        if is_key && !keys.iter().any(|k| k == word) {
            keys.push(word.to_string());
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_found_in_kernel_messages_and_mapped_to_the_spec() {
        let message = "invalid config key `ingest.claim_idle`: does not exceed shutdown.timeout, so a draining replica's batch could be claimed; fix: raise ingest.claim_idle or lower shutdown.timeout";
        assert_eq!(
            config_keys(message),
            vec!["ingest.claim_idle", "shutdown.timeout"]
        );
        assert_eq!(
            rejected(message.into()).to_string(),
            format!("the kernel refuses the rendered kernel.yaml: {message}. In the FdcKernel: ingest.claim_idle is spec.config.ingest.claim_idle, shutdown.timeout is spec.shutdownTimeout")
        );
        // URLs and file names are not keys.
        assert!(
            config_keys("set it like postgres://user@host:5432/db or redis.example.com").is_empty()
        );
        assert_eq!(
            rejected("boom".into()).to_string(),
            "the kernel refuses the rendered kernel.yaml: boom"
        );
    }
}
