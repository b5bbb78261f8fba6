//! Renders `kernel.yaml` for an `FdcKernel`, and the ConfigMap that carries it.
//!
//! Secrets never enter the rendered file: the Postgres URL (and a Redis URL held in a Secret)
//! reach the kernel as `FDC_*` environment variables from `secretKeyRef`, and key material is
//! mounted as files whose paths the config names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::builders::{owner_meta, quantity, BuildError};
use crate::crd::FdcKernel;
use crate::labels::names;

/// Path of the config file inside the kernel container (the image's entrypoint reads it).
pub const CONFIG_PATH: &str = "/etc/fdc/kernel.yaml";
/// Key of the config file in the ConfigMap.
pub const CONFIG_KEY: &str = "kernel.yaml";
/// Mount point of the spill volume.
pub const SPILL_DIR: &str = "/var/lib/fdc/spill";
/// Mount point of the issuer key Secret.
pub const KEYS_DIR: &str = "/etc/fdc/keys";
/// Mount point of the admin token Secret.
pub const ADMIN_DIR: &str = "/etc/fdc/admin";
/// Port of `/metrics`, `/healthz`, `/readyz`.
pub const HTTP_PORT: i32 = 8080;
/// Port of the admin API.
pub const ADMIN_PORT: i32 = 8081;
/// File name of the current signing key inside the key Secret.
pub const SIGNING_KEY_FILE: &str = "signing.pem";
/// File name of the admin token inside its Secret.
pub const ADMIN_TOKEN_FILE: &str = "token";

/// Share of the spill volume the kernel may fill (the rest is filesystem overhead).
const SPILL_BUDGET_PERCENT: u64 = 90;

/// File name of a trusted public key inside the key Secret.
pub fn public_key_file(kid: &str) -> String {
    format!("{kid}.pub.pem")
}

/// Keys of `kernel.yaml` the operator owns: they must agree with the pod spec it builds
/// (ports, mount paths, env), so a `spec.config` override cannot change them.
pub const OWNED_KEYS: &[&str] = &[
    "http.listen",
    "ingest.consumer",
    "postgres.url",
    "spill.dir",
    "spill.max_bytes",
    "auth.signing_key",
    "auth.verify_keys",
    "auth.admin_token_file",
    "auth.admin_listen",
];

/// The rendered config plus what the pod template needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedConfig {
    /// `kernel.yaml` contents.
    pub yaml: String,
    /// Short hash of `yaml`; on the pod template so a change rolls the pods.
    pub hash: String,
}

/// Renders `kernel.yaml`. `verify_kids` are the key ids the kernel must trust (current first).
pub fn render(kernel: &FdcKernel, verify_kids: &[String]) -> Result<RenderedConfig, BuildError> {
    let spec = &kernel.spec;
    let spill_bytes = quantity::parse_bytes(&spec.spill.size).ok_or_else(|| {
        BuildError::Invalid(format!(
            "spill.size {:?} is not a byte quantity",
            spec.spill.size
        ))
    })?;
    let max_bytes = match spec.spill.max_bytes {
        Some(b) => b as u64,
        None => spill_bytes / 100 * SPILL_BUDGET_PERCENT,
    };

    let mut config = json!({
        "ingest": {
            "streams": spec.streams,
            "group": spec.consumer_group,
        },
        "http": { "listen": format!("0.0.0.0:{HTTP_PORT}") },
        "spill": {
            "dir": SPILL_DIR,
            "max_bytes": max_bytes,
        },
        "auth": {
            "enabled": spec.auth.enabled,
            "issuer": spec.auth.issuer,
            "audience": spec.auth.audience,
            // Tokens the kernel itself issues (registration) live no longer than the
            // operator's, so a rotated-out key is retired after at most this long.
            "token_ttl": spec.auth.token_ttl,
            "signing_key": format!("{KEYS_DIR}/{SIGNING_KEY_FILE}"),
            "verify_keys": verify_kids
                .iter()
                .map(|kid| format!("{KEYS_DIR}/{}", public_key_file(kid)))
                .collect::<Vec<_>>(),
            "admin_token_file": format!("{ADMIN_DIR}/{ADMIN_TOKEN_FILE}"),
            "admin_listen": format!("0.0.0.0:{ADMIN_PORT}"),
        },
        "log": { "level": spec.log_level.as_str() },
        "shutdown": { "timeout": spec.shutdown_timeout },
    });
    if let Some(url) = &spec.redis.url {
        config["redis"] = json!({ "url": url });
    }
    if let Some(republish) = &spec.republish {
        config["republish"] = json!({
            "enabled": republish.enabled,
            "stream": republish.stream,
            "maxlen": republish.max_len,
        });
    }

    if let Some(overrides) = &spec.config {
        if !overrides.is_object() {
            return Err(BuildError::Invalid("spec.config must be an object".into()));
        }
        let owned = owned_values(&config);
        deep_merge(&mut config, overrides);
        for (path, value) in owned {
            set_path(&mut config, &path, value);
        }
        // postgres.url and ingest.consumer come from env; an override must not smuggle
        // a password into the ConfigMap either.
        remove_path(&mut config, "postgres.url");
        remove_path(&mut config, "ingest.consumer");
    }

    let yaml = serde_yaml::to_string(&config).map_err(|e| BuildError::Invalid(e.to_string()))?;
    let hash = short_hash(&yaml);
    Ok(RenderedConfig { yaml, hash })
}

/// The ConfigMap `<kernel>-config` holding the rendered file.
pub fn config_map(kernel: &FdcKernel, rendered: &RenderedConfig) -> Result<ConfigMap, BuildError> {
    let name = kernel_name(kernel)?;
    Ok(ConfigMap {
        metadata: owner_meta(kernel, names::config_map(name))?,
        data: Some(BTreeMap::from([(
            CONFIG_KEY.to_string(),
            rendered.yaml.clone(),
        )])),
        ..ConfigMap::default()
    })
}

fn kernel_name(kernel: &FdcKernel) -> Result<&str, BuildError> {
    kernel
        .metadata
        .name
        .as_deref()
        .ok_or(BuildError::MissingField("metadata.name"))
}

/// First 16 hex digits of SHA-256: enough to detect a change, short enough to read.
pub fn short_hash(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn owned_values(config: &Value) -> Vec<(String, Value)> {
    OWNED_KEYS
        .iter()
        .filter_map(|path| get_path(config, path).map(|v| (path.to_string(), v.clone())))
        .collect()
}

/// Objects merge key by key; anything else in `over` replaces what is in `base`.
fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let parts: Vec<&str> = path.split('.').collect();
    for k in &parts[..parts.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Map::new());
        }
        cur = &mut cur[*k];
    }
    cur[parts[parts.len() - 1]] = value;
}

fn remove_path(v: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('.') {
        Some((p, l)) => (get_path_mut(v, p), l),
        None => (Some(v), path),
    };
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

fn get_path_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.').try_fold(v, |v, k| v.get_mut(k))
}
