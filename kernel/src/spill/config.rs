//! `spill` section of the kernel config.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SpillError;

/// Default total budget: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;
/// Default segment size before rollover: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

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
        }
    }

    pub fn validate(&self) -> Result<(), SpillError> {
        if self.dir.as_os_str().is_empty() {
            return Err(SpillError::Config("spill.dir is empty".into()));
        }
        if self.max_bytes == 0 {
            return Err(SpillError::Config("spill.max_bytes must be > 0".into()));
        }
        if self.segment_bytes == 0 {
            return Err(SpillError::Config("spill.segment_bytes must be > 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Yaml};
    use figment::Figment;

    use crate::config::Config;

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
        let typo = Config::from_figment(
            Figment::new().merge(Yaml::string("spill:\n  dir: /x\n  max_byte: 1\n")),
        );
        assert!(typo.is_err());
    }
}
