//! `spill` section of the kernel config (the spill store, crate `fdc-spill`, reads it).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// Default total budget: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default segment size before rollover: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Smallest budget that holds one segment header (24 bytes) and one record of 1 byte (a
/// 12-byte frame header plus the byte). A test in the spill codec ties it to the codec's
/// header lengths.
pub const MIN_MAX_BYTES: u64 = 24 + 12 + 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpillConfig {
    /// Directory of this replica's spill; one directory per replica (the store
    /// takes an exclusive lock on it).
    pub dir: PathBuf,
    /// Budget for all live segment files together; appends beyond it fail
    /// with `SpillError::Full`.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A segment is sealed and a new one started once it would exceed this.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// How long opening waits for the directory's lock while another process holds it (a
    /// replaced kernel's old process still stopping) before giving up.
    #[serde(default = "default_lock_wait", with = "humantime_serde")]
    pub lock_wait: Duration,
}

/// Default wait for the directory lock: 30 s.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(30);

fn default_lock_wait() -> Duration {
    DEFAULT_LOCK_WAIT
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

fn default_segment_bytes() -> u64 {
    DEFAULT_SEGMENT_BYTES
}

impl SpillConfig {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// Values that parse but cannot work. Pure (no file system access), so
    /// `check-config` catches them before the kernel starts; the store checks
    /// again when it opens.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: String, fix| ConfigError::Invalid { key, problem, fix };
        if self.dir.as_os_str().is_empty() {
            return Err(invalid(
                "spill.dir",
                "is empty".into(),
                "unset the spill section to turn the spill off, or name this replica's directory",
            ));
        }
        if self.max_bytes < MIN_MAX_BYTES {
            return Err(invalid(
                "spill.max_bytes",
                format!(
                    "{} cannot hold one record (a segment header and a record frame take {} bytes)",
                    self.max_bytes,
                    MIN_MAX_BYTES - 1
                ),
                "use a budget for many batches, e.g. 1073741824 (1 GiB, the default)",
            ));
        }
        if self.segment_bytes == 0 {
            return Err(invalid(
                "spill.segment_bytes",
                "is 0".into(),
                "use e.g. 67108864 (64 MiB, the default)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Yaml};
    use figment::Figment;

    use super::SpillConfig;
    use crate::config::{Config, ConfigError};

    #[test]
    fn spill_is_off_by_default_and_on_with_a_dir() {
        let off = Config::from_figment(Figment::new().merge(Yaml::string(""))).unwrap();
        assert!(off.spill.is_none());
        let on = Config::from_figment(Figment::new().merge(Yaml::string(
            "spill:\n  dir: /var/lib/fdc/spill\n  max_bytes: 1000\n",
        )))
        .unwrap();
        let spill = on.spill.unwrap();
        assert_eq!(spill.dir.to_str(), Some("/var/lib/fdc/spill"));
        assert_eq!(spill.max_bytes, 1000);
        assert_eq!(spill.segment_bytes, super::DEFAULT_SEGMENT_BYTES);
        assert_eq!(spill.lock_wait, super::DEFAULT_LOCK_WAIT);
        let typo = Config::from_figment(
            Figment::new().merge(Yaml::string("spill:\n  dir: /x\n  max_byte: 1\n")),
        );
        assert!(typo.is_err());
    }

    fn invalid_key(yaml: &str) -> &'static str {
        match Config::from_figment(Figment::new().merge(Yaml::string(yaml))) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key for {yaml:?}, got {other:?}"),
        }
    }

    #[test]
    fn config_validation_refuses_a_spill_that_cannot_work() {
        assert_eq!(
            invalid_key("spill:\n  dir: /x\n  max_bytes: 0\n"),
            "spill.max_bytes"
        );
        assert_eq!(
            invalid_key("spill:\n  dir: /x\n  max_bytes: 36\n"),
            "spill.max_bytes"
        );
        assert_eq!(
            invalid_key("spill:\n  dir: /x\n  segment_bytes: 0\n"),
            "spill.segment_bytes"
        );
        assert_eq!(invalid_key("spill:\n  dir: ''\n"), "spill.dir");
        // The smallest budget that holds a record is accepted.
        let ok = SpillConfig {
            max_bytes: 37,
            ..SpillConfig::new("/x")
        };
        assert!(ok.validate().is_ok());
    }
}
