//! Shared setup for the auth integration tests: a kernel with auth on against private Redis
//! and Postgres, an issuer key, an admin token, and captured logs to scan for secrets.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::support::*;
use fdc_common::config::Config;
use fdc_common::keys::{self, SigningKey};
use fdc_common::token::{Claims, TokenIssuer, TokenVerifier};
use fdc_kernel::auth::registration::reply::{Reply, SealedGrant};
use fdc_kernel::auth::registration::{request, seal, stream};
use fdc_kernel::service::{self, RunningKernel};
use redis::aio::MultiplexedConnection;
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(30);
pub const ADMIN_TOKEN: &str = "admin-secret-0123456789abcdef";

/// Every log line of this test binary, at TRACE, as the kernel's JSON logs would be.
pub fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer_buf = buf.clone();
        let _ = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || LogWriter(writer_buf.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that no captured log line contains any of `secrets`, nor a PEM private key.
pub fn assert_logs_clean(secrets: &[&str]) {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!text.is_empty(), "log capture is working");
    assert!(
        !text.contains("PRIVATE KEY"),
        "a private key PEM was logged"
    );
    for s in secrets {
        assert!(s.len() >= 16, "secret too short to search for");
        assert!(!text.contains(s), "a secret was logged");
    }
}

/// [`assert_logs_clean`] for `secrets` and the private halves of `keys` ([`key_secrets`]).
pub fn assert_logs_clean_of(secrets: &[&str], keys: &[&SigningKey]) {
    let ks: Vec<String> = keys.iter().flat_map(|k| key_secrets(k)).collect();
    let all: Vec<&str> = secrets
        .iter()
        .copied()
        .chain(ks.iter().map(String::as_str))
        .collect();
    assert_logs_clean(&all);
}

/// Base64 of a private key's raw seed: what a leaked key would look like in a log.
pub fn key_secrets(key: &SigningKey) -> Vec<String> {
    use base64::Engine;
    let pem = keys::signing_key_to_pem(key).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    vec![
        body,
        base64::engine::general_purpose::STANDARD.encode(key.to_bytes()),
        hex::encode(key.to_bytes()),
    ]
}

pub struct AuthKernel {
    pub env: TestEnv,
    pub dir: tempfile::TempDir,
    pub signing_key: SigningKey,
    pub issuer: TokenIssuer,
    pub config: Config,
    pub kernel: RunningKernel,
    pub admin: SocketAddr,
}

pub struct Options {
    pub cache_ttl: Duration,
    pub rate_limit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cache_ttl: Duration::from_secs(1),
            rate_limit: 10,
        }
    }
}

impl AuthKernel {
    pub async fn start(options: Options) -> AuthKernel {
        Self::start_with(TestEnv::start().await.unwrap(), options, |_| {}).await
    }

    /// Like [`start`](Self::start), on a given environment (e.g. Redis with AOF, or Redis
    /// down), with `configure` applied to the kernel config last.
    pub async fn start_with(
        env: TestEnv,
        options: Options,
        configure: impl FnOnce(&mut Config),
    ) -> AuthKernel {
        logs();
        let dir = tempfile::tempdir().unwrap();
        let (mut config, files) = env.auth_config(dir.path());
        let signing_key = keys::load_signing_key(&files.private_key).unwrap();
        enable_admin(&mut config, dir.path());
        config.auth.cache_ttl = options.cache_ttl;
        config.auth.register.rate_limit = options.rate_limit;
        configure(&mut config);
        config.validate().unwrap();
        let issuer = TokenIssuer::new(&signing_key, TEST_ISSUER, TEST_AUDIENCE).unwrap();
        let kernel = service::start(config.clone()).await.unwrap();
        let admin = kernel.admin_addr.expect("the admin API runs");
        let k = AuthKernel {
            env,
            dir,
            signing_key,
            issuer,
            config,
            kernel,
            admin,
        };
        // Ready = migrations applied (the auth tables exist).
        let pg = k.env.pg().await;
        let ready = wait_for(WAIT, 0, || count(&pg, "SELECT count(*) FROM producer_keys")).await;
        assert_eq!(ready, 0, "kernel migrated");
        k
    }

    /// How an auth test ends: asserts that the logs hold none of `secrets` nor the private
    /// halves of `keys` ([`assert_logs_clean_of`]), then shuts the kernel down.
    pub async fn finish(self, secrets: &[&str], keys: &[&SigningKey]) {
        assert_logs_clean_of(secrets, keys);
        self.kernel.shutdown().await;
    }

    /// A new producer id and a token for it named `name`.
    pub fn new_producer(&self, name: &str) -> (Uuid, String) {
        let producer = Uuid::now_v7();
        (producer, self.token(producer, name))
    }

    pub fn token(&self, producer: Uuid, name: &str) -> String {
        self.issuer
            .issue(producer, name, None, Duration::from_secs(3600))
            .unwrap()
            .token
    }

    pub async fn metrics(&self) -> String {
        http_get(self.kernel.http_addr, "/metrics").await.1
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series).unwrap_or(-1.0)
    }

    /// `kernel_auth_register_total{status}`: registration replies sent with `status` (-1 when
    /// the series is absent).
    pub async fn register_replies(&self, status: &str) -> f64 {
        self.metric(&format!(
            "kernel_auth_register_total{{status=\"{status}\"}}"
        ))
        .await
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// A Redis connection and a Postgres pool to this kernel's servers.
    pub async fn clients(&self) -> (MultiplexedConnection, sqlx::PgPool) {
        (self.env.redis_conn().await, self.env.pg().await)
    }

    /// `POST <path>` on the admin API with the admin token and the JSON `body`: the status
    /// and the JSON answer (`Null` when there is none).
    pub async fn admin_post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(self.admin_url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `POST <path>` on the admin API with `{"reason": reason}` (a decision: approve, reject,
    /// revoke): the status.
    pub async fn decide(&self, path: &str, reason: &str) -> u16 {
        self.admin_post(path, &serde_json::json!({ "reason": reason }))
            .await
            .0
    }

    /// Verifies `token` as this kernel does: its claims.
    pub fn verify(&self, token: &str) -> Claims {
        TokenVerifier::new(TEST_ISSUER, TEST_AUDIENCE)
            .with_key(&self.signing_key.verifying_key())
            .verify(token)
            .unwrap()
    }

    /// Opens the token sealed in `grant` with the producer's `key` (asserting that neither
    /// another key nor the kernel's own opens it) and verifies it: the token and its claims.
    pub fn open_grant(&self, key: &SigningKey, grant: &SealedGrant) -> (String, Claims) {
        assert!(seal::open(&keys::generate(), &grant.sealed_token).is_err());
        assert!(seal::open(&self.signing_key, &grant.sealed_token).is_err());
        let token = String::from_utf8(seal::open(key, &grant.sealed_token).unwrap()).unwrap();
        let claims = self.verify(&token);
        (token, claims)
    }

    /// Publishes a `data` entry with `token` and asserts that its event is stored with
    /// `producer` as its producer id.
    pub async fn assert_ingests_as(&self, token: &str, producer: Uuid) {
        let (redis, pg) = self.clients().await;
        publish(&redis, "events", &[data_entry(Some(token), 1)]).await;
        let sql = format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'");
        assert_eq!(wait_for(WAIT, 1, || count(&pg, &sql)).await, 1);
    }
}

/// Turns the admin API on in `config`: [`ADMIN_TOKEN`] in `dir/admin-token` (the port is
/// the one `kernel_config` leaves to the system: `RunningKernel::admin_addr`).
pub fn enable_admin(config: &mut Config, dir: &std::path::Path) {
    let admin_token_file = dir.join("admin-token");
    std::fs::write(&admin_token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    config.auth.admin_token_file = Some(admin_token_file);
}

/// A new producer key and its fingerprint.
pub fn new_key() -> (SigningKey, String) {
    let key = keys::generate();
    let fp = keys::fingerprint(&key.verifying_key());
    (key, fp)
}

/// A registration request of `key` as producer `name` (bound to `schema`, if any), with a fresh
/// nonce, signed now.
pub fn register_request(
    key: &SigningKey,
    name: &str,
    schema: Option<&str>,
) -> Vec<(String, String)> {
    request::build(key, name, schema, &request::new_nonce(), now_ns())
}

/// A `data` entry with `token` (when given).
pub fn data_entry(token: Option<&str>, n: i64) -> Vec<(String, String)> {
    let mut f = data_fields(
        Uuid::now_v7(),
        now_ns(),
        Some("s"),
        &[],
        serde_json::json!({ "n": n }),
    );
    if let Some(t) = token {
        f.push(("token".into(), t.into()));
    }
    f
}

/// XADD a registration request and wait for the next reply carrying its nonce.
pub async fn ask(redis: &MultiplexedConnection, fp: &str, fields: &[(String, String)]) -> Reply {
    let nonce = fields
        .iter()
        .find(|(k, _)| k == "nonce")
        .map(|(_, v)| v.clone());
    let key = format!("fdc:register:reply:{fp}");
    // Replies already there belong to earlier requests (a replay reuses a nonce).
    let seen = stream_fields(redis, &key).await.len();
    publish(redis, "fdc:register", &[fields.to_vec()]).await;
    let deadline = std::time::Instant::now() + WAIT;
    while std::time::Instant::now() < deadline {
        let entries = stream_fields(redis, &key).await;
        for f in entries.iter().skip(seen) {
            let r = Reply::from_fields(f).expect("well-formed reply");
            if r.nonce == nonce {
                return r;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no reply");
}

/// The raw fields of every entry of the stream `key`, oldest first; none when the key is
/// missing or holds another type.
pub async fn stream_fields(
    redis: &MultiplexedConnection,
    key: &str,
) -> Vec<Vec<(String, Vec<u8>)>> {
    let mut conn = redis.clone();
    let v: redis::Value = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap_or(redis::Value::Nil);
    stream::parse_entries(&v)
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

/// The `fdc-kernel` binary as a CLI: no `FDC_CONFIG` from the environment, trace logging.
pub fn kernel_cli() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fdc-kernel"));
    c.env_remove("FDC_CONFIG").env("RUST_LOG", "trace");
    c
}

/// Runs `c` with no stdin: its exit code (-1 if killed by a signal) and stdout then stderr.
pub fn run_cli(mut c: std::process::Command) -> (i32, String) {
    let out = c.stdin(std::process::Stdio::null()).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}
