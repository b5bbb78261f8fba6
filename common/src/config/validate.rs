//! Checks a parsed config for values that parse but cannot work, naming key and fix.

use std::path::PathBuf;
use std::time::Duration;

use super::streams::{glob_match, has_hash_tag, is_pattern};
use super::Config;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist; pass an existing file to --config or omit it to use defaults and FDC_* variables")]
    FileMissing(PathBuf),
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config key `{key}`: {problem}; fix: {fix}")]
    Invalid {
        key: &'static str,
        problem: String,
        fix: &'static str,
    },
}

impl ConfigError {
    pub(super) fn from_figment(err: figment::Error) -> ConfigError {
        // figment names the key path and the source (file or environment variable) already;
        // keep every message, since one load can have several bad keys.
        let messages: Vec<String> = err
            .into_iter()
            .map(|e| {
                let key = e.path.join(".").to_lowercase();
                let source = e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(source) => format!(" (from {} {source})", m.name),
                        None => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default();
                if key.is_empty() {
                    format!("{}{source}", e.kind)
                } else {
                    format!("key `{key}`: {}{source}", e.kind)
                }
            })
            .collect();
        ConfigError::Parse(messages.join("; "))
    }
}

fn invalid(key: &'static str, problem: impl Into<String>, fix: &'static str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
        fix,
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let cluster = self.redis.url.starts_with("redis+cluster://");
        if !self.redis.url.starts_with("redis://")
            && !self.redis.url.starts_with("rediss://")
            && !cluster
        {
            return Err(invalid(
                "redis.url",
                "must start with redis://, rediss:// or redis+cluster://",
                "set it like redis://host:6379/ (a Redis Cluster: redis+cluster://host1:6379,host2:6379/)",
            ));
        }
        if !self.postgres.url.starts_with("postgres://")
            && !self.postgres.url.starts_with("postgresql://")
        {
            return Err(invalid(
                "postgres.url",
                "must start with postgres://",
                "set it like postgres://user:password@host:5432/db",
            ));
        }
        if self.postgres.max_connections < 2 {
            return Err(invalid(
                "postgres.max_connections",
                format!("{} is too small", self.postgres.max_connections),
                "use at least 2 (one for batches, one for housekeeping)",
            ));
        }
        let ingest = &self.ingest;
        if ingest.streams.is_empty() || ingest.streams.iter().any(|s| s.is_empty()) {
            return Err(invalid(
                "ingest.streams",
                "must list at least one non-empty stream name",
                "e.g. [events]",
            ));
        }
        if ingest
            .streams
            .iter()
            .any(|s| s.ends_with(&ingest.dlq_suffix))
        {
            return Err(invalid(
                "ingest.streams",
                "a stream name ends with ingest.dlq_suffix, so it would read its own dead letters",
                "remove dead-letter streams from ingest.streams",
            ));
        }
        if cluster {
            if let Some(stream) = ingest.streams.iter().find(|s| !has_hash_tag(s)) {
                return Err(invalid(
                    "ingest.streams",
                    format!(
                        "stream {stream} has no hash tag: on a Redis Cluster a stream and its dead-letter stream must share a slot"
                    ),
                    "name each stream with a hash tag, e.g. events:{orders} (docs/protocol.md)",
                ));
            }
        }
        if ingest.discover_interval < Duration::from_millis(100)
            || ingest.discover_interval > Duration::from_secs(3600)
        {
            return Err(invalid(
                "ingest.discover_interval",
                format!("{:?} is out of range", ingest.discover_interval),
                "use 100ms..=1h (default 10s): how often streams matching the patterns of ingest.streams are looked for",
            ));
        }
        for (key, interval) in [
            (
                "partitions.maintenance_interval",
                self.partitions.maintenance_interval,
            ),
            (
                "partitions.index_upkeep_interval",
                self.partitions.index_upkeep_interval,
            ),
        ] {
            if interval < Duration::from_secs(1) || interval > Duration::from_secs(86_400) {
                return Err(invalid(
                    key,
                    format!("{interval:?} is out of range"),
                    "use 1s..=24h (defaults: maintenance_interval 1h, index_upkeep_interval 30s)",
                ));
            }
        }
        if ingest.group.is_empty() {
            return Err(invalid("ingest.group", "is empty", "e.g. kernel"));
        }
        if ingest.consumer.as_deref() == Some("") {
            return Err(invalid(
                "ingest.consumer",
                "is empty",
                "unset it to use the host name, or give a name",
            ));
        }
        if ingest.batch_max_size == 0 || ingest.batch_max_size > 100_000 {
            return Err(invalid(
                "ingest.batch_max_size",
                format!("{} is out of range", ingest.batch_max_size),
                "use 1..=100000 (default 1000)",
            ));
        }
        if ingest.queue_batches == 0 {
            return Err(invalid(
                "ingest.queue_batches",
                "is 0",
                "use at least 1 (default 4)",
            ));
        }
        if ingest.max_inflight_bytes < self.limits.max_entry_bytes {
            return Err(invalid(
                "ingest.max_inflight_bytes",
                format!(
                    "{} is below limits.max_entry_bytes ({})",
                    ingest.max_inflight_bytes, self.limits.max_entry_bytes
                ),
                "use at least limits.max_entry_bytes, better many times it (default 67108864, 64 MiB)",
            ));
        }
        if ingest.writers == 0 || ingest.writers > 64 {
            return Err(invalid(
                "ingest.writers",
                format!("{} is out of range", ingest.writers),
                "use 1..=64 (default 4)",
            ));
        }
        if ingest.max_deliveries == 0 {
            return Err(invalid(
                "ingest.max_deliveries",
                "is 0",
                "use at least 1 (default 5)",
            ));
        }
        if ingest.dlq_suffix.is_empty() {
            return Err(invalid(
                "ingest.dlq_suffix",
                "is empty, so the DLQ would be the stream itself",
                "e.g. :dlq",
            ));
        }
        if ingest.dlq_field_bytes < 64
            || ingest.dlq_field_bytes.saturating_mul(4) > self.limits.max_entry_bytes
        {
            return Err(invalid(
                "ingest.dlq_field_bytes",
                format!(
                    "{} is out of range (limits.max_entry_bytes is {})",
                    ingest.dlq_field_bytes, self.limits.max_entry_bytes
                ),
                "use 64 up to limits.max_entry_bytes / 4 (default 1024)",
            ));
        }
        if ingest.dlq_max_len == 0 {
            return Err(invalid(
                "ingest.dlq_max_len",
                "is 0, so every dead letter would be trimmed at once",
                "use at least 1 (default 10000)",
            ));
        }
        if ingest.stall_after.is_zero() {
            return Err(invalid(
                "ingest.stall_after",
                "is 0, so every retried failure would make the kernel unready",
                "use a duration such as 60s (the default)",
            ));
        }
        if ingest.claim_idle <= self.postgres.statement_timeout {
            return Err(invalid(
                "ingest.claim_idle",
                format!(
                    "{:?} does not exceed postgres.statement_timeout ({:?}), so a live replica's batch could be claimed mid-commit",
                    ingest.claim_idle, self.postgres.statement_timeout
                ),
                "raise ingest.claim_idle or lower postgres.statement_timeout",
            ));
        }
        if ingest.claim_idle <= self.shutdown.timeout {
            return Err(invalid(
                "ingest.claim_idle",
                "does not exceed shutdown.timeout, so a draining replica's batch could be claimed",
                "raise ingest.claim_idle or lower shutdown.timeout",
            ));
        }
        if self.limits.max_json_depth == 0 || self.limits.max_json_depth > 100 {
            return Err(invalid(
                "limits.max_json_depth",
                format!("{} is out of range", self.limits.max_json_depth),
                "use 1..=100 (default 64)",
            ));
        }
        if self.limits.max_entry_bytes < 256 {
            return Err(invalid(
                "limits.max_entry_bytes",
                "is below 256 bytes, too small for any valid entry",
                "use e.g. 65536",
            ));
        }
        if self.republish.enabled && self.republish.stream.is_empty() {
            return Err(invalid(
                "republish.stream",
                "is empty while republish.enabled is true",
                "name a stream, e.g. events:stored",
            ));
        }
        if self.republish.enabled && ingest.streams.contains(&self.republish.stream) {
            return Err(invalid(
                "republish.stream",
                "is also in ingest.streams, so stored events would be ingested again",
                "use a stream that the kernel does not read",
            ));
        }
        for (stream, binding) in &ingest.schemas {
            if is_pattern(stream) {
                return Err(invalid(
                    "ingest.schemas",
                    format!("binds {stream:?}, a pattern: a binding names one stream"),
                    "bind each stream by its name (it may match a pattern of ingest.streams)",
                ));
            }
            let read = ingest
                .streams
                .iter()
                .any(|s| s == stream || (is_pattern(s) && glob_match(s, stream)));
            if !read {
                return Err(invalid(
                    "ingest.schemas",
                    format!("binds stream {stream:?}, which is not in ingest.streams"),
                    "bind one of the streams the kernel reads (listed or matching a pattern of ingest.streams), or add the stream to ingest.streams",
                ));
            }
            if let Err(e) = binding.parse::<crate::schema_binding::Binding>() {
                return Err(invalid(
                    "ingest.schemas",
                    format!("stream {stream:?}: {e}"),
                    "write name, name@1.2.0 or name@^1.2",
                ));
            }
        }
        if ingest.schema_cache_ttl.is_zero() || ingest.schema_cache_ttl > Duration::from_secs(3600)
        {
            return Err(invalid(
                "ingest.schema_cache_ttl",
                format!("{:?} is out of range", ingest.schema_cache_ttl),
                "use 1s..=1h (default 5s)",
            ));
        }
        self.auth
            .validate()
            .map_err(|e| invalid(e.key, e.problem, e.fix))?;
        self.spill.as_ref().map_or(Ok(()), |s| s.validate())?;
        Ok(())
    }

    /// Settings that work but are likely not what was meant, each naming its key and the fix.
    /// `check-config` prints them and the kernel logs them at start; neither refuses them.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let (lanes, connections) = (self.ingest.writers, self.postgres.max_connections as usize);
        if connections <= lanes {
            warnings.push(format!(
                "postgres.max_connections ({connections}) is not above ingest.writers ({lanes}): \
                 writer lanes wait for each other's connections, and replay and housekeeping \
                 for theirs; set postgres.max_connections to {} (a connection per lane and two \
                 more)",
                lanes + 2
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_inflight_bytes_below_one_entry_names_the_key_and_the_fix() {
        let mut config = Config::default();
        config.validate().unwrap();
        config.ingest.max_inflight_bytes = config.limits.max_entry_bytes - 1;
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config key `ingest.max_inflight_bytes`: 65535 is below \
             limits.max_entry_bytes (65536); fix: use at least limits.max_entry_bytes, better \
             many times it (default 67108864, 64 MiB)"
        );
        config.ingest.max_inflight_bytes = config.limits.max_entry_bytes;
        config.validate().unwrap();
    }

    #[test]
    fn fewer_connections_than_lanes_is_a_warning_not_an_error() {
        let mut config = Config::default();
        assert_eq!(config.warnings(), Vec::<String>::new());
        config.ingest.writers = 8;
        config.validate().unwrap();
        assert_eq!(
            config.warnings(),
            [
                "postgres.max_connections (6) is not above ingest.writers (8): writer lanes wait \
              for each other's connections, and replay and housekeeping for theirs; set \
              postgres.max_connections to 10 (a connection per lane and two more)"
            ]
        );
        config.postgres.max_connections = 9;
        assert_eq!(config.warnings(), Vec::<String>::new());
    }

    #[test]
    fn dead_letter_keys_are_checked() {
        let mut config = Config::default();
        config.ingest.dlq_field_bytes = 32 * 1024;
        let err = config.validate().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config key `ingest.dlq_field_bytes`: 32768 is out of range \
             (limits.max_entry_bytes is 65536); fix: use 64 up to limits.max_entry_bytes / 4 \
             (default 1024)"
        );
        config.ingest.dlq_field_bytes = 16 * 1024;
        config.validate().unwrap();
        config.ingest.dlq_max_len = 0;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`ingest.dlq_max_len`"));
    }

    #[test]
    fn a_cluster_needs_hash_tagged_streams_only() {
        let mut config = Config::default();
        config.redis.url = "redis+cluster://10.0.0.1:6379,10.0.0.2:6379/".into();
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.starts_with("invalid config key `ingest.streams`: stream events has no hash tag"),
            "{err}"
        );
        config.ingest.streams = vec!["events:{a}".into(), "events:{b}".into()];
        config.validate().unwrap();
        config.ingest.streams.push("events:{}".into());
        assert!(
            config.validate().is_err(),
            "an empty tag hashes the whole key"
        );
        config.ingest.streams.pop();
        // Registration and re-publish touch one key per command: no tag needed.
        config.auth.enabled = true;
        config.auth.verify_keys = vec!["/k.pub".into()];
        config.republish.enabled = true;
        config.republish.stream = "events:stored".into();
        config.validate().unwrap();
    }

    #[test]
    fn stream_patterns_and_the_discovery_interval_are_checked() {
        let mut config = Config::default();
        config.ingest.streams = vec!["events:*".into(), "orders".into()];
        config.validate().unwrap();
        config.ingest.discover_interval = Duration::ZERO;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid config key `ingest.discover_interval`: 0ns is out of range; fix: use \
             100ms..=1h (default 10s): how often streams matching the patterns of \
             ingest.streams are looked for"
        );
        config.ingest.discover_interval = Duration::from_secs(7200);
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`ingest.discover_interval`"));
        config.ingest.discover_interval = Duration::from_millis(100);
        config.validate().unwrap();
        // A pattern that ends with the dead-letter suffix would read dead letters only.
        config.ingest.streams = vec!["*:dlq".into()];
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("so it would read its own dead letters"));
        // On a cluster a pattern needs a hash tag like a name.
        config.redis.url = "redis+cluster://10.0.0.1:6379/".into();
        config.ingest.streams = vec!["events:*".into()];
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("invalid config key `ingest.streams`: stream events:* has no hash tag"));
        config.ingest.streams = vec!["events:{*}".into()];
        config.validate().unwrap();
        // A schema binding names a stream the patterns match, not a pattern.
        config
            .ingest
            .schemas
            .insert("events:{orders}".into(), "orders".into());
        config.validate().unwrap();
        config
            .ingest
            .schemas
            .insert("events:{*}".into(), "orders".into());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("a binding names one stream"));
    }

    #[test]
    fn partition_intervals_are_checked() {
        let mut config = Config::default();
        config.partitions.index_upkeep_interval = Duration::ZERO;
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid config key `partitions.index_upkeep_interval`: 0ns is out of range; fix: \
             use 1s..=24h (defaults: maintenance_interval 1h, index_upkeep_interval 30s)"
        );
        config.partitions.index_upkeep_interval = Duration::from_secs(1);
        config.partitions.maintenance_interval = Duration::from_secs(2 * 86_400);
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`partitions.maintenance_interval`"));
    }

    #[test]
    fn schema_bindings_of_streams_are_checked() {
        let mut config = Config::default();
        config
            .ingest
            .schemas
            .insert("events".into(), "orders@^1.2".into());
        config.validate().unwrap();
        config
            .ingest
            .schemas
            .insert("events".into(), "orders@banana".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(err.starts_with("invalid config key `ingest.schemas`: stream \"events\": version requirement \"banana\""), "{err}");
        assert!(
            err.ends_with("fix: write name, name@1.2.0 or name@^1.2"),
            "{err}"
        );
        config.ingest.schemas.clear();
        config
            .ingest
            .schemas
            .insert("other".into(), "orders".into());
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("binds stream \"other\", which is not in ingest.streams"),
            "{err}"
        );
        config.ingest.schemas.clear();
        config.ingest.schema_cache_ttl = Duration::ZERO;
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`ingest.schema_cache_ttl`"));
    }
}
