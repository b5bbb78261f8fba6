//! Kernel configuration: YAML file, then `FDC_*` environment variables on top.
//!
//! Every key has a default, so an empty file is a valid config. `FDC_INGEST__CONSUMER=x` sets
//! `ingest.consumer` (`__` separates levels). Errors name the key and say how to fix it.

pub mod auth;
mod files;
mod redact;
pub mod spill;
mod streams;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Yaml};
use figment::Figment;
use serde::{Deserialize, Serialize};

pub use files::check_referenced_files;
pub use redact::redact_url;
pub use streams::{glob_match, is_pattern, Skip, StreamSources};
pub use validate::ConfigError;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub redis: RedisConfig,
    pub postgres: PostgresConfig,
    pub ingest: IngestConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub partitions: PartitionsConfig,
    pub republish: RepublishConfig,
    pub shutdown: ShutdownConfig,
    /// Spill to disk while Postgres is unavailable; off unless `spill.dir` is set.
    pub spill: Option<spill::SpillConfig>,
    pub auth: auth::AuthConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/[db]`.
    pub url: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    pub url: String,
    /// Connections in the pool: the writer uses one per batch in flight, plus housekeeping.
    pub max_connections: u32,
    /// Apply the embedded migrations when the kernel starts (safe with several replicas).
    pub migrate_on_start: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Upper bound for one batch transaction; `ingest.claim_idle` must exceed it.
    #[serde(with = "humantime_serde")]
    pub statement_timeout: Duration,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            max_connections: 6,
            migrate_on_start: true,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Stream names, and glob patterns in Redis `MATCH` syntax (`events:*`, `events:{*}`)
    /// whose streams are discovered while the kernel runs.
    pub streams: Vec<String>,
    /// How often the kernel looks for new streams matching the patterns of `streams` (with
    /// `SCAN … MATCH … TYPE stream`, on every primary of a Redis Cluster).
    #[serde(with = "humantime_serde")]
    pub discover_interval: Duration,
    pub group: String,
    /// Consumer name in the group; the host (pod) name when unset.
    pub consumer: Option<String>,
    pub batch_max_size: usize,
    /// Longest an XREADGROUP blocks for new entries (a free writer lane does not wait to
    /// fill a batch; it writes what is queued).
    #[serde(with = "humantime_serde")]
    pub batch_max_wait: Duration,
    /// Batches buffered between the Redis reader and the Postgres writer: the memory bound.
    pub queue_batches: usize,
    /// Most bytes of entries read and not yet done with: the reader asks Redis for no more
    /// entries than fit were each `limits.max_entry_bytes`. The memory bound in bytes.
    pub max_inflight_bytes: usize,
    /// Writer lanes, each with its own Postgres transaction in flight: one lane parses while
    /// another commits, and Postgres works on several cores.
    pub writers: usize,
    /// Entries pending longer than this on another consumer are claimed.
    #[serde(with = "humantime_serde")]
    pub claim_idle: Duration,
    #[serde(with = "humantime_serde")]
    pub claim_interval: Duration,
    /// An entry delivered more often than this goes to the DLQ as `max_deliveries`.
    pub max_deliveries: u64,
    /// The dead-letter stream of stream `S` is `S` followed by this suffix.
    pub dlq_suffix: String,
    /// Bytes a dead letter keeps of each original field name and value; a longer value is
    /// kept as this prefix plus its size and SHA-256.
    pub dlq_field_bytes: usize,
    /// Approximate cap (`MAXLEN ~`) of every dead-letter stream; older letters are trimmed.
    pub dlq_max_len: usize,
    /// The reader or a writer lane failing on the same work for this long is stalled:
    /// `/readyz` answers 503 naming it and `kernel_stalled{stage}` reads 1.
    #[serde(with = "humantime_serde")]
    pub stall_after: Duration,
    /// Payload schema of the `data` entries of a stream whose producer has no schema binding of
    /// its own (every entry while auth is off): stream name → `name`, `name@version` or
    /// `name@range` (docs/schemas.md).
    pub schemas: std::collections::BTreeMap<String, String>,
    /// How long a resolved schema binding (producer or stream → schema version) is used before
    /// it is looked up again: a `producer bind` or a new version takes effect within it.
    #[serde(with = "humantime_serde")]
    pub schema_cache_ttl: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            streams: vec!["events".into()],
            discover_interval: Duration::from_secs(10),
            group: "kernel".into(),
            consumer: None,
            batch_max_size: 1000,
            batch_max_wait: Duration::from_millis(50),
            queue_batches: 4,
            max_inflight_bytes: 64 * 1024 * 1024,
            writers: 4,
            claim_idle: Duration::from_secs(60),
            claim_interval: Duration::from_secs(10),
            max_deliveries: 5,
            dlq_suffix: ":dlq".into(),
            dlq_field_bytes: 1024,
            dlq_max_len: 10_000,
            stall_after: Duration::from_secs(60),
            schemas: Default::default(),
            schema_cache_ttl: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sum of all field names and values of one stream entry.
    pub max_entry_bytes: usize,
    pub max_tags: usize,
    pub max_tag_key_len: usize,
    pub max_tag_value_len: usize,
    pub max_subject_len: usize,
    /// How far an event's `ts` may lie in the future of the kernel's clock.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// How far an event's `ts` may lie in the past. Catches milliseconds sent as nanoseconds
    /// (which would land in 1970) and bounds the partitions old events create.
    #[serde(with = "humantime_serde")]
    pub max_past_age: Duration,
    /// Deepest nesting of objects and arrays in an event's `payload` (the payload object is
    /// level 1); deeper payloads are dead-lettered as `bad_payload`.
    pub max_json_depth: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_entry_bytes: 64 * 1024,
            max_tags: 32,
            max_tag_key_len: 64,
            max_tag_value_len: 256,
            max_subject_len: 256,
            max_future_skew: Duration::from_secs(300),
            max_past_age: Duration::from_secs(366 * 86_400),
            max_json_depth: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".parse().expect("static address"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `fdc_kernel=debug,warn`); `RUST_LOG` wins when set.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartitionsConfig {
    /// Daily partitions created ahead of today, so the first batch of a day does not wait.
    pub ahead_days: u32,
    /// Drop whole partitions older than this many days; keep everything when unset.
    pub retention_days: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub maintenance_interval: Duration,
    /// How often the tag (GIN) and time (BRIN) indexes of the partitions being written are
    /// tidied: pending list merged, new ranges summarized.
    #[serde(with = "humantime_serde")]
    pub index_upkeep_interval: Duration,
}

impl Default for PartitionsConfig {
    fn default() -> Self {
        PartitionsConfig {
            ahead_days: 2,
            retention_days: None,
            maintenance_interval: Duration::from_secs(3600),
            index_upkeep_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepublishConfig {
    pub enabled: bool,
    pub stream: String,
    /// Approximate cap (`MAXLEN ~`) of the re-publish stream.
    pub maxlen: usize,
}

impl Default for RepublishConfig {
    fn default() -> Self {
        RepublishConfig {
            enabled: false,
            stream: "events:stored".into(),
            maxlen: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Time to finish the batch in flight after SIGTERM before exiting anyway.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(25),
        }
    }
}

impl Config {
    /// Loads `path` (when given) and the `FDC_*` environment, then validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_figment(Self::sources(path)?)
    }

    /// The config file (when given) and the `FDC_*` environment, merged but not extracted:
    /// `check-config` reads the values as written from it.
    pub fn sources(path: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::FileMissing(PathBuf::from(path)));
            }
            figment = figment.merge(Yaml::file(path));
        }
        // Every key lives in a section, so its variable has a `__`. Variables without one are
        // not ours: FDC_CONFIG (the file itself) and the FDC_SERVICE_HOST, FDC_PORT, …
        // that Kubernetes injects for a Service named `fdc`.
        figment = figment.merge(
            Env::prefixed(crate::contract::ENV_PREFIX)
                .filter(|key| key.as_str().contains(crate::contract::ENV_SEPARATOR))
                .split(crate::contract::ENV_SEPARATOR),
        );
        Ok(figment)
    }

    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// The consumer name: configured, else `HOSTNAME`, else the kernel's host name.
    pub fn consumer_name(&self) -> String {
        self.ingest
            .consumer
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(hostname)
    }

    pub fn dlq_stream(&self, source: &str) -> String {
        format!("{source}{}", self.ingest.dlq_suffix)
    }

    /// YAML of the effective config with every password in a URL replaced by `***`.
    pub fn to_redacted_yaml(&self) -> String {
        let mut shown = self.clone();
        shown.redis.url = redact_url(&shown.redis.url);
        shown.postgres.url = redact_url(&shown.postgres.url);
        serde_yaml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "fdc-kernel".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
