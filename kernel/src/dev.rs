//! `fdc-kernel dev`: a throwaway Redis and Postgres on free ports, for a first look.
//!
//! With auth on, a temp directory holds an issuer key and an admin token, and the environment
//! the CLI needs (`FDC_REDIS__URL`, `FDC_ADMIN_URL`, `FDC_ADMIN_TOKEN_FILE`, …) can be written
//! to a file the user sources in another shell.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::RngCore;
use tempfile::TempDir;
use uuid::Uuid;

use fdc_common::config::Config;
use fdc_common::keys;
use fdc_common::token::TokenIssuer;
use fdc_testenv::{PostgresServer, RedisServer, ServerError};

/// Private servers that live as long as this value; their temp dirs go with it.
pub struct DevEnvironment {
    pub redis: RedisServer,
    pub postgres: PostgresServer,
    /// Issuer key and admin token when auth is on.
    auth: Option<DevAuth>,
}

struct DevAuth {
    dir: TempDir,
    admin_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("cannot prepare the dev auth files: {0}")]
    Files(#[from] std::io::Error),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("cannot sign the sample token: {0}")]
    Token(#[from] fdc_common::token::TokenError),
    #[error("redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("postgres at {url}: {source}")]
    Postgres { url: String, source: sqlx::Error },
    #[error("the sample event {id} was not stored within {seconds}s; dead letters: {dlq}")]
    NotStored { id: Uuid, seconds: u64, dlq: String },
}

/// The sample event `dev --smoke` publishes and the printed `XADD` line shows.
const SAMPLE_DATA: &str = r#"{"subject":"sensor-1","tags":{"site":"lab"},"payload":{"temp":21.5}}"#;

impl DevEnvironment {
    pub async fn start() -> Result<DevEnvironment, ServerError> {
        let (redis, postgres) = tokio::join!(RedisServer::start(), PostgresServer::start());
        Ok(DevEnvironment {
            redis: redis?,
            postgres: postgres?,
            auth: None,
        })
    }

    /// Turns auth on: an issuer key and an admin token in a private temp directory.
    pub fn enable_auth(&mut self) -> Result<(), DevError> {
        let dir = tempfile::Builder::new().prefix("fdc-dev-auth-").tempdir()?;
        keys::keygen(&dir.path().join("issuer"), false)?;
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        write_private(&dir.path().join("admin-token"), &format!("{token}\n"))?;
        let port = fdc_testenv::ports::free_port()?;
        self.auth = Some(DevAuth {
            dir,
            admin_url: format!("http://127.0.0.1:{port}"),
        });
        Ok(())
    }

    /// `base` pointed at the private servers (and, with auth, at the temp key files).
    pub fn config(&self, mut base: Config) -> Config {
        base.redis.url = self.redis.url();
        base.postgres.url = self.postgres.url();
        if let Some(auth) = &self.auth {
            base.auth.enabled = true;
            base.auth.signing_key = Some(auth.signing_key());
            base.auth.admin_token_file = Some(auth.admin_token_file());
            base.auth.admin_listen = auth
                .admin_url
                .trim_start_matches("http://")
                .parse()
                .expect("a loopback address with a port");
        }
        base
    }

    /// The shell lines (`export …`) that point the CLI at this environment.
    pub fn env_lines(&self) -> String {
        let mut out = format!(
            "export FDC_REDIS__URL={}\nexport FDC_POSTGRES__URL={}\n",
            self.redis.url(),
            self.postgres.url()
        );
        if let Some(auth) = &self.auth {
            out.push_str(&format!(
                "export FDC_ADMIN_URL={}\nexport FDC_ADMIN_TOKEN_FILE={}\nexport FDC_AUTH__SIGNING_KEY={}\n",
                auth.admin_url,
                auth.admin_token_file().display(),
                auth.signing_key().display(),
            ));
        }
        out
    }

    /// Writes [`env_lines`](Self::env_lines) to `path` (mode 0600).
    pub fn write_env_file(&self, path: &Path) -> Result<(), std::io::Error> {
        write_private(path, &self.env_lines())
    }

    /// What a newcomer types to see an event land.
    pub fn instructions(
        &self,
        config: &Config,
        http: std::net::SocketAddr,
        env_file: Option<&Path>,
    ) -> String {
        let stream = &config.ingest.streams[0];
        let rport = self.redis.port();
        let dlq = config.dlq_stream(stream);
        let pg = self.postgres.url();
        let mut out = String::from("fdc dev environment is up.\n\n");
        match &self.auth {
            None => out.push_str(&format!(
                "Publish an event:\n  \
                 redis-cli -p {rport} XADD {stream} '*' type data version 1.0.0 \
                 id \"$(cat /proc/sys/kernel/random/uuid)\" ts \"$(date +%s%N)\" \
                 data '{SAMPLE_DATA}'\n\n"
            )),
            Some(_) => {
                let setup = match env_file {
                    Some(path) => format!(". {}\n", path.display()),
                    None => self.env_lines(),
                };
                out.push_str(&format!(
                    "Auth is on. In another shell, set up the CLI:\n{setup}\n\
                     Then register a producer key, approve it, publish:\n  \
                     keys=$(mktemp -d)\n  \
                     fdc-kernel keygen --out \"$keys\" --force\n  \
                     fdc-kernel register --key \"$keys\" --name sensor-1      # exit code 2: pending\n  \
                     fdc-kernel admin approve --public-key \"$keys/producer.pub\" --reason \"known device\"\n  \
                     fdc-kernel register --key \"$keys\" --name sensor-1      # saves $keys/token\n  \
                     echo '{{\"subject\": \"room-1\", \"payload\": {{\"temp\": 21.5}}}}' | fdc-kernel publish --token-file \"$keys/token\"\n\n"
                ));
            }
        }
        out.push_str(&format!(
            "See it stored:\n  \
             psql {pg} -c 'SELECT event_id, ts, payload FROM events'\n\n\
             Metrics: curl http://{http}/metrics   Ready: curl http://{http}/readyz\n\
             Dead letters: redis-cli -p {rport} XRANGE {dlq} - +\n\n\
             Ctrl-C stops everything and removes the temporary servers.\n"
        ));
        out
    }

    /// Publishes one sample event (with a token signed by the dev issuer when auth is on) and
    /// waits until Postgres holds it. Call it once the kernel has migrated. Returns its id.
    pub async fn smoke(&self, config: &Config, within: Duration) -> Result<Uuid, DevError> {
        let stream = &config.ingest.streams[0];
        let id = Uuid::now_v7();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream)
            .arg("*")
            .arg("type")
            .arg("data")
            .arg("version")
            .arg("1.0.0")
            .arg("id")
            .arg(id.to_string())
            .arg("ts")
            .arg(fdc_testenv::now_ns().to_string())
            .arg("data")
            .arg(SAMPLE_DATA);
        if let Some(auth) = &self.auth {
            let key = keys::load_signing_key(&auth.signing_key())?;
            let issuer = TokenIssuer::new(&key, &config.auth.issuer, &config.auth.audience)?;
            let issued =
                issuer.issue(Uuid::now_v7(), "dev-smoke", None, Duration::from_secs(600))?;
            cmd.arg("token").arg(issued.token);
        }
        let redis_err = |source| DevError::Redis {
            url: self.redis.url(),
            source,
        };
        let client = redis::Client::open(self.redis.url()).map_err(redis_err)?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(redis_err)?;
        let _: String = cmd.query_async(&mut conn).await.map_err(redis_err)?;

        let pg_err = |source| DevError::Postgres {
            url: self.postgres.url(),
            source,
        };
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.postgres.url())
            .await
            .map_err(pg_err)?;
        let started = Instant::now();
        loop {
            let found: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .map_err(pg_err)?;
            if found == 1 {
                return Ok(id);
            }
            if started.elapsed() >= within {
                let dlq: Vec<redis::Value> = redis::cmd("XRANGE")
                    .arg(config.dlq_stream(stream))
                    .arg("-")
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .unwrap_or_default();
                return Err(DevError::NotStored {
                    id,
                    seconds: within.as_secs(),
                    dlq: format!("{} entries", dlq.len()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl DevAuth {
    fn signing_key(&self) -> PathBuf {
        self.dir.path().join("issuer").join(keys::PRIVATE_KEY_FILE)
    }

    fn admin_token_file(&self) -> PathBuf {
        self.dir.path().join("admin-token")
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}
