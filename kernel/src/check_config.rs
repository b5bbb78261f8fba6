//! `fdc-kernel check-config`: every check `run` makes before it connects, then the effective
//! config as YAML (secrets redacted, durations as written, the effective consumer name).
//! With `--connect`, also whether Redis and Postgres answer.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use serde_yaml::Value;

use crate::store::Store;
use fdc_common::config::{redact_url, Config, ConfigError};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Unreachable(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// Validates like `run` (config, files it names, URLs), prints the effective config to `out`;
/// with `connect`, pings Redis and Postgres.
pub async fn run(
    path: Option<&Path>,
    connect: bool,
    out: &mut impl Write,
) -> Result<(), CheckError> {
    let sources = Config::sources(path)?;
    let config = Config::from_figment(sources.clone())?;
    validate_like_run(&config)?;
    out.write_all(render(&config, &sources).as_bytes())?;
    if connect {
        check_servers(&config, out).await?;
    }
    Ok(())
}

/// What `run` checks before it connects anywhere, beyond [`Config::validate`].
pub fn validate_like_run(config: &Config) -> Result<(), ConfigError> {
    fdc_common::config::check_referenced_files(config)?;
    if config.auth.enabled {
        if let Some(path) = &config.auth.admin_token_file {
            crate::auth::admin::read_admin_token(path).map_err(|problem| ConfigError::Invalid {
                key: "auth.admin_token_file",
                problem,
                fix: "write a token of at least 16 characters, e.g. head -c 32 /dev/urandom | base64",
            })?;
        }
    }
    if let Some(spill) = &config.spill {
        usable_dir(&spill.dir).map_err(|problem| ConfigError::Invalid {
            key: "spill.dir",
            problem,
            fix: "point it at a directory the kernel can write (it is created when missing)",
        })?;
    }
    crate::redis_io::StreamClient::new(
        &config.redis.url,
        &config.ingest.group,
        "check-config",
        Duration::from_secs(1),
    )
    .map_err(|e| ConfigError::Invalid {
        key: "redis.url",
        problem: redact_url(&e.to_string()),
        fix: "set it like redis://host:6379/ (or redis+cluster://host1:6379,host2:6379/)",
    })?;
    Store::connect_lazy(&config.postgres, "check-config").map_err(|e| ConfigError::Invalid {
        key: "postgres.url",
        problem: e.to_string(),
        fix: "set it like postgres://user:password@host:5432/db",
    })?;
    Ok(())
}

/// `dir` is a writable directory, or can be created: its nearest existing ancestor is a
/// writable directory. Looks only; creates nothing.
fn usable_dir(dir: &Path) -> Result<(), String> {
    let mut probe = dir;
    loop {
        match std::fs::metadata(probe) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a directory", probe.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match probe.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
                    _ => return Ok(()),
                }
            }
            Err(e) => return Err(format!("cannot look at {}: {e}", probe.display())),
        }
    }
    let c_path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} contains a NUL byte", probe.display()))?;
    // SAFETY: access() only reads the NUL-terminated path.
    let rc = unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "{} is not writable: {}",
            probe.display(),
            std::io::Error::last_os_error()
        ))
    }
}

/// The effective config as YAML: secrets redacted, each duration as it was written (or in its
/// largest whole unit when it is a default), the consumer name the kernel will use.
pub fn render(config: &Config, sources: &Figment) -> String {
    let mut shown = config.clone();
    let consumer_note = match &config.ingest.consumer {
        Some(_) => String::new(),
        None => "# ingest.consumer is unset: the host name (HOSTNAME) is used\n".to_string(),
    };
    shown.ingest.consumer = Some(config.consumer_name());
    let mut value = match serde_yaml::from_str::<Value>(&shown.to_redacted_yaml()) {
        Ok(value) => value,
        Err(e) => return format!("# cannot render: {e}\n"),
    };
    durations_as_written(&mut value, "", sources);
    let yaml = serde_yaml::to_string(&value).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
    // As YAML comments: the output stays a config that loads.
    let warnings: String = config
        .warnings()
        .iter()
        .map(|w| format!("# warning: {w}\n"))
        .collect();
    format!("{warnings}{consumer_note}{yaml}")
}

fn durations_as_written(value: &mut Value, path: &str, sources: &Figment) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map.iter_mut() {
                if let Value::String(key) = key {
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    durations_as_written(child, &child_path, sources);
                }
            }
        }
        Value::String(shown) => {
            let Ok(duration) = humantime::parse_duration(shown) else {
                return;
            };
            let written = sources
                .find_value(path)
                .ok()
                .and_then(|v| v.into_string())
                .filter(|raw| humantime::parse_duration(raw.trim()).ok() == Some(duration));
            *shown = written.unwrap_or_else(|| whole_unit(duration));
        }
        _ => {}
    }
}

/// `366d`, `30s`, `50ms`: the largest unit that divides the duration.
pub fn whole_unit(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs > 0 && secs % size == 0 {
                return format!("{}{unit}", secs / size);
            }
        }
        return format!("{secs}s");
    }
    if nanos % 1_000_000 == 0 {
        return format!("{}ms", d.as_millis());
    }
    humantime::format_duration(d).to_string()
}

async fn check_servers(config: &Config, out: &mut impl Write) -> Result<(), CheckError> {
    let timeout = config.postgres.connect_timeout;
    let redis_url = redact_url(&config.redis.url);
    let redis = ping_redis(&config.redis.url, timeout).await;
    let store = Store::connect_lazy(&config.postgres, "check-config")
        .map_err(|e| CheckError::Unreachable(e.to_string()))?;
    let postgres = store.check(timeout + Duration::from_secs(1)).await;
    let mut failed = Vec::new();
    match redis {
        Ok(()) => writeln!(out, "# redis: answers at {redis_url}")?,
        Err(e) => failed.push(format!("Redis at {redis_url}: {e}")),
    }
    match postgres {
        Ok(()) => writeln!(
            out,
            "# postgres: answers at {}",
            redact_url(&config.postgres.url)
        )?,
        Err(e) => failed.push(crate::error_chain::render(&e)),
    }
    store.pool().close().await;
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckError::Unreachable(failed.join("; ")))
    }
}

async fn ping_redis(url: &str, timeout: Duration) -> Result<(), String> {
    let client = crate::redis_io::StreamClient::new(url, "check-config", "check-config", timeout)
        .map_err(|e| redact_url(&e.to_string()))?;
    let ping = client.check();
    match tokio::time::timeout(timeout, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(redact_url(&e.to_string())),
        Err(_) => Err(format!(
            "no answer within {} (postgres.connect_timeout)",
            humantime::format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spill_dir_below_a_file_is_refused_and_a_missing_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let err = usable_dir(&file.join("spill")).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
        usable_dir(&dir.path().join("a/b/spill")).unwrap();
        usable_dir(dir.path()).unwrap();
        assert!(!dir.path().join("a").exists(), "nothing created");
    }

    #[test]
    fn durations_in_their_largest_whole_unit() {
        assert_eq!(whole_unit(Duration::from_secs(366 * 86_400)), "366d");
        assert_eq!(whole_unit(Duration::from_secs(7200)), "2h");
        assert_eq!(whole_unit(Duration::from_secs(90)), "90s");
        assert_eq!(whole_unit(Duration::from_millis(50)), "50ms");
        assert_eq!(whole_unit(Duration::ZERO), "0s");
    }
}
