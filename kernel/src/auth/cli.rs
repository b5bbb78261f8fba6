//! The auth subcommands of `fdc-kernel`: `keygen`, `token issue`, `register`, `publish` and
//! `admin …`. This is the binary's edge, so handlers return `anyhow::Result`. No handler prints
//! or logs a token or a private key, except `token issue` (and `admin token`), whose purpose is
//! to print a token on stdout for scripts.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use uuid::Uuid;

use super::registration::reply::{Reply, Status};
use super::registration::{request, seal, stream};
use crate::redis_io::Ops;
use fdc_common::keys;
use fdc_common::token::TokenIssuer;

/// Name of the token file `register` writes into the key directory by default.
pub const TOKEN_FILE: &str = "token";

#[derive(Args, Debug, Clone)]
pub struct KeygenArgs {
    /// Directory for producer.key (PKCS#8 PEM, mode 0600) and producer.pub (SPKI PEM).
    #[arg(long)]
    pub out: PathBuf,
    /// Replace an existing key pair.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum TokenCommand {
    /// Sign a token for a producer and print it on stdout.
    Issue(TokenIssueArgs),
}

#[derive(Args, Debug, Clone)]
pub struct TokenIssueArgs {
    /// PKCS#8 PEM Ed25519 private key (the kernel's auth.signing_key or another verify key's pair).
    #[arg(long, env = "FDC_AUTH__SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// The producer's id (its `sub` claim; stored with each of its events).
    #[arg(long)]
    pub producer_id: Uuid,
    /// The producer's name (used when its producer row is created).
    #[arg(long)]
    pub name: String,
    /// Schema id or name for the token's `schema` claim.
    #[arg(long)]
    pub schema: Option<String>,
    /// Lifetime, e.g. 24h.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Must match the kernel's auth.issuer.
    #[arg(long, env = "FDC_AUTH__ISSUER", default_value = "fdc")]
    pub issuer: String,
    /// Must match the kernel's auth.audience.
    #[arg(long, env = "FDC_AUTH__AUDIENCE", default_value = "fdc-kernel")]
    pub audience: String,
}

#[derive(Args, Debug, Clone)]
pub struct RedisArgs {
    /// The Redis the kernel reads (its redis.url), e.g. redis://127.0.0.1:6379/. No default:
    /// publishing to the wrong server would succeed silently.
    #[arg(long, env = "FDC_REDIS__URL")]
    pub redis_url: String,
}

impl RedisArgs {
    /// The URL with any password replaced, for messages.
    pub fn shown(&self) -> String {
        fdc_common::config::redact_url(&self.redis_url)
    }

    /// One server, or a Redis Cluster (`redis+cluster://`), each command routed by its
    /// key's slot; checked with a PING.
    async fn connect(&self) -> anyhow::Result<Ops> {
        let mut conn = Ops::open(&self.redis_url, Duration::from_secs(10))
            .with_context(|| format!("--redis-url {} is invalid", self.shown()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .with_context(|| format!("cannot connect to Redis at {}", self.shown()))?;
        Ok(conn)
    }
}

#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    /// Key directory made by `fdc-kernel keygen` (uses producer.key).
    #[arg(long)]
    pub key: PathBuf,
    /// Producer name asked for (an admin sees it when approving).
    #[arg(long)]
    pub name: String,
    /// Schema id or name asked for.
    #[arg(long)]
    pub schema: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// The kernel's registration stream (auth.register.stream).
    #[arg(
        long,
        env = "FDC_AUTH__REGISTER__STREAM",
        default_value = "fdc:register"
    )]
    pub stream: String,
    /// Prefix of the kernel's reply streams (auth.register.reply_prefix).
    #[arg(
        long,
        env = "FDC_AUTH__REGISTER__REPLY_PREFIX",
        default_value = "fdc:register:reply:"
    )]
    pub reply_prefix: String,
    /// Where to save the token (mode 0600); default: `<key dir>/token`.
    #[arg(long)]
    pub token_out: Option<PathBuf>,
    /// How long to wait for the kernel's reply to one request.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub timeout: Duration,
    /// While pending approval, ask again every --interval until this much time has passed
    /// (0: ask once; exit code 2 means pending).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub wait: Duration,
    /// Pause between two requests while waiting for approval (with --wait).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub interval: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// File holding the producer's token (as saved by `register`).
    #[arg(long)]
    pub token_file: PathBuf,
    /// The stream to add entries to (one of the kernel's ingest.streams).
    #[arg(long, default_value = "events")]
    pub stream: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Send one heartbeat and exit instead of reading stdin.
    #[arg(long)]
    pub heartbeat: bool,
    /// Publish even what the kernel will dead-letter (an expired or malformed token, a
    /// `payload` that is not a JSON object).
    #[arg(long)]
    pub force: bool,
}

/// Where the admin API is and how to authenticate to it.
#[derive(Args, Debug, Clone)]
pub struct AdminEndpoint {
    /// Base URL of the kernel's admin API (auth.admin_listen).
    #[arg(long, env = "FDC_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// File holding the admin token (the kernel's auth.admin_token_file).
    #[arg(long, env = "FDC_ADMIN_TOKEN_FILE")]
    pub token_file: PathBuf,
}

impl AdminEndpoint {
    /// The base URL without a trailing `/`, and the token read from the file.
    pub fn open(&self) -> anyhow::Result<(&str, zeroize::Zeroizing<String>)> {
        let token = zeroize::Zeroizing::new(
            std::fs::read_to_string(&self.token_file)
                .with_context(|| format!("cannot read {}", self.token_file.display()))?
                .trim()
                .to_string(),
        );
        Ok((self.url.trim_end_matches('/'), token))
    }
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    #[command(flatten)]
    pub endpoint: AdminEndpoint,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// List registrations (pending by default).
    Registrations {
        /// pending, approved, rejected or all.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve a pending registration, binding its key to a new or an existing producer.
    /// Name it by id, or by the producer's public key (its pending registration is found).
    Approve {
        /// The registration id (from `admin registrations`).
        #[arg(required_unless_present = "public_key")]
        registration_id: Option<Uuid>,
        /// The producer's public key file (producer.pub) instead of a registration id.
        #[arg(long, conflicts_with = "registration_id")]
        public_key: Option<PathBuf>,
        /// Bind the key to this existing producer instead of creating one.
        #[arg(long)]
        producer_id: Option<Uuid>,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: String,
    },
    /// Pre-approve a public key the producer holds itself, for a producer id (created when
    /// missing): the key's first `register` is then issued. Repeating it changes nothing.
    ApproveKey {
        /// The producer the key belongs to (created when missing).
        producer_id: Uuid,
        /// The producer's public key file: SPKI PEM (e.g. producer.pub from `keygen`).
        #[arg(long)]
        public_key: PathBuf,
        /// Producer name (used when the producer is created).
        #[arg(long)]
        name: String,
        /// Schema id or name for the producer.
        #[arg(long)]
        schema: Option<String>,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: String,
    },
    /// Reject a pending registration (its key is refused from then on).
    Reject {
        /// The registration id (from `admin registrations`).
        registration_id: Uuid,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: String,
    },
    /// Revoke a producer (all its tokens) or a key (no more tokens through registration).
    Revoke {
        #[command(subcommand)]
        target: RevokeTarget,
    },
    /// Issue a token for a producer and print it on stdout.
    Token {
        /// The producer to issue for.
        producer_id: Uuid,
        /// Lifetime, e.g. 24h (default: the kernel's auth.token_ttl).
        #[arg(long)]
        ttl: Option<String>,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Recent decisions, newest first.
    Decisions {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum RevokeTarget {
    /// Revoke a producer: every token it holds is refused from now on.
    Producer {
        /// The producer to revoke.
        producer_id: Uuid,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: String,
    },
    /// Revoke a key: registration issues no more tokens to it.
    Key {
        /// The key's fingerprint (hex SHA-256 of the raw public key, as `keygen` prints).
        fingerprint: String,
        /// Why (recorded in the audit log, auth_decisions).
        #[arg(long)]
        reason: String,
    },
}

pub async fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let files = keys::keygen(&args.out, args.force)?;
    println!("private key: {}", files.private_key.display());
    println!("public key:  {}", files.public_key.display());
    println!("kid:         {}", files.kid);
    println!("fingerprint: {}", files.fingerprint);
    Ok(())
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let TokenCommand::Issue(a) = args.command;
    let key = keys::load_signing_key(&a.signing_key)?;
    let issuer = TokenIssuer::new(&key, a.issuer, a.audience)?;
    let issued = issuer.issue(a.producer_id, &a.name, a.schema.as_deref(), a.ttl)?;
    println!("{}", issued.token);
    Ok(())
}

/// Runs the registration flow; exits the process with code 2 when still pending.
pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let key_path = args.key.join(keys::PRIVATE_KEY_FILE);
    let key = keys::load_signing_key(&key_path)?;
    let fingerprint = keys::fingerprint(&key.verifying_key());
    let mut conn = args.redis.connect().await?;
    let redis_shown = args.redis.shown();
    let reply_key = format!("{}{}", args.reply_prefix, fingerprint);
    let deadline = Instant::now() + args.wait;
    loop {
        let nonce = request::new_nonce();
        let now_ns = chrono::Utc::now()
            .timestamp_nanos_opt()
            .ok_or_else(|| anyhow!("clock out of range"))?;
        let fields = request::build(&key, &args.name, args.schema.as_deref(), &nonce, now_ns);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&args.stream).arg("*");
        for (k, v) in &fields {
            cmd.arg(k).arg(v);
        }
        let _: String = cmd
            .query_async(&mut conn)
            .await
            .with_context(|| format!("cannot add to {} at {redis_shown}", args.stream))?;
        let reply = wait_reply(&mut conn, &reply_key, &nonce, args.timeout)
            .await
            .with_context(|| format!("waiting for the reply on {reply_key} at {redis_shown}"))?;
        match reply.status {
            Status::Issued => {
                let grant = reply
                    .grant
                    .ok_or_else(|| anyhow!("issued reply without a sealed token"))?;
                let token = zeroize::Zeroizing::new(
                    seal::open(&key, &grant.sealed_token)
                        .context("the sealed token does not open with this key")?,
                );
                let out = args
                    .token_out
                    .clone()
                    .unwrap_or_else(|| args.key.join(TOKEN_FILE));
                write_secret(&out, &token)?;
                println!("status:      issued");
                println!("producer id: {}", grant.producer_id);
                println!(
                    "expires at:  {}",
                    expiry_text(grant.expires_at, chrono::Utc::now())
                );
                println!("token saved: {}", out.display());
                return Ok(());
            }
            Status::Pending if Instant::now() + args.interval <= deadline => {
                eprintln!(
                    "pending approval (fingerprint {fingerprint}); asking again in {}",
                    humantime::format_duration(args.interval)
                );
                tokio::time::sleep(args.interval).await;
            }
            Status::Pending => {
                println!("status:      pending");
                println!("fingerprint: {fingerprint}");
                println!("an admin must approve it: fdc-kernel admin registrations");
                std::process::exit(2);
            }
            Status::Denied | Status::Invalid => {
                bail!("registration {}: {}", reply.status.as_str(), reply.detail)
            }
        }
    }
}

/// Read the reply stream until the reply to `nonce` arrives.
async fn wait_reply(
    conn: &mut Ops,
    key: &str,
    nonce: &str,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let deadline = Instant::now() + timeout;
    let mut last = "0".to_string();
    while Instant::now() < deadline {
        let v: redis::Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(100)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(key)
            .arg(&last)
            .query_async(conn)
            .await?;
        for (id, fields) in stream::parse_read(&v) {
            last = id;
            if let Some(r) = Reply::from_fields(&fields) {
                if r.nonce.as_deref() == Some(nonce) {
                    return Ok(r);
                }
            }
        }
    }
    bail!(
        "no reply from the kernel within {}",
        humantime::format_duration(timeout)
    )
}

fn write_secret(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    Ok(())
}

/// The `data` field for one input line: an object with `payload` is taken as the protocol's
/// data object (`subject`, `tags`, `payload`); any other object becomes the payload. A
/// `payload` that is not an object is refused (the kernel dead-letters it) unless `force`.
pub fn data_for_line(line: &str, force: bool) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(line).context("line is not JSON")?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("line is not a JSON object"))?;
    match obj.get("payload") {
        Some(payload) if !payload.is_object() && !force => bail!(
            "`payload` is not a JSON object, so the kernel would dead-letter it; wrap it \
             (\"payload\": {{\"value\": …}}) or pass --force"
        ),
        Some(_) => Ok(line.to_string()),
        None => Ok(serde_json::json!({ "payload": v }).to_string()),
    }
}

/// `2026-12-02 16:00:00 UTC (in 23h 59m)` for a time in seconds since the epoch.
pub fn expiry_text(epoch_secs: i64, now: chrono::DateTime<chrono::Utc>) -> String {
    let Some(at) = chrono::DateTime::from_timestamp(epoch_secs, 0) else {
        return format!("{epoch_secs} (seconds since the epoch)");
    };
    let left = at.signed_duration_since(now).num_seconds();
    let relative = match u64::try_from(left) {
        Ok(secs) => format!(
            "in {}",
            humantime::format_duration(Duration::from_secs(secs - secs % 60))
        ),
        Err(_) => "expired".to_string(),
    };
    format!("{} ({relative})", at.format("%Y-%m-%d %H:%M:%S UTC"))
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("cannot read {}", args.token_file.display()))?
            .trim()
            .to_string(),
    );
    if !args.force {
        let now = chrono::Utc::now().timestamp();
        fdc_common::token::precheck(&token, now).map_err(|e| {
            anyhow!(
                "{}: {e}; the kernel would dead-letter every entry (error=auth). Get a new \
                 token (fdc-kernel register), or pass --force to publish anyway",
                args.token_file.display()
            )
        })?;
    }
    let mut conn = args.redis.connect().await?;
    let redis_shown = args.redis.shown();
    let send = |kind: &'static str, data: Option<String>| {
        let mut cmd = redis::cmd("XADD");
        let id = Uuid::now_v7();
        let ts = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        cmd.arg(&args.stream)
            .arg("*")
            .arg("type")
            .arg(kind)
            .arg("version")
            .arg("1.0.0")
            .arg("id")
            .arg(id.to_string())
            .arg("ts")
            .arg(ts.to_string());
        if let Some(d) = data {
            cmd.arg("data").arg(d);
        }
        cmd.arg("token").arg(token.as_str());
        (id, cmd)
    };
    if args.heartbeat {
        let (id, cmd) = send("heartbeat", None);
        let _: String = cmd
            .query_async(&mut conn)
            .await
            .with_context(|| format!("cannot add to {} at {redis_shown}", args.stream))?;
        println!("{id}");
        return Ok(());
    }
    let stdin = std::io::stdin();
    let mut sent = 0usize;
    for (n, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let data = data_for_line(&line, args.force)
            .with_context(|| format!("stdin line {} (nothing after it was published)", n + 1))?;
        let (id, cmd) = send("data", Some(data));
        let _: String = cmd
            .query_async(&mut conn)
            .await
            .with_context(|| format!("cannot add to {} at {redis_shown}", args.stream))?;
        println!("{id}");
        sent += 1;
    }
    eprintln!(
        "published {sent} {} to {} at {redis_shown}",
        if sent == 1 { "event" } else { "events" },
        args.stream
    );
    Ok(())
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let (base, token) = args.endpoint.open()?;
    let http = reqwest::Client::new();
    let approve_id = match &args.command {
        AdminCommand::Approve {
            registration_id: None,
            public_key: Some(path),
            ..
        } => Some(pending_registration_of(&http, base, &token, path).await?),
        _ => None,
    };
    let req = match &args.command {
        AdminCommand::Registrations { status } => http
            .get(format!("{base}/v1/registrations"))
            .query(&[("status", status)]),
        AdminCommand::Approve {
            registration_id,
            producer_id,
            reason,
            ..
        } => http
            .post(format!(
                "{base}/v1/registrations/{}/approve",
                registration_id.or(approve_id).unwrap_or_default()
            ))
            .json(&serde_json::json!({"producer_id": producer_id, "reason": reason})),
        AdminCommand::ApproveKey {
            producer_id,
            public_key,
            name,
            schema,
            reason,
        } => {
            let pem = std::fs::read_to_string(public_key)
                .with_context(|| format!("cannot read {}", public_key.display()))?;
            http.post(format!(
                "{base}{}",
                fdc_common::contract::producer_keys_path(producer_id)
            ))
            .json(&serde_json::json!({
                "public_key": pem, "name": name, "schema": schema, "reason": reason
            }))
        }
        AdminCommand::Reject {
            registration_id,
            reason,
        } => http
            .post(format!("{base}/v1/registrations/{registration_id}/reject"))
            .json(&serde_json::json!({ "reason": reason })),
        AdminCommand::Revoke {
            target:
                RevokeTarget::Producer {
                    producer_id,
                    reason,
                },
        } => http
            .post(format!(
                "{base}{}",
                fdc_common::contract::producer_revoke_path(producer_id)
            ))
            .json(&serde_json::json!({ "reason": reason })),
        AdminCommand::Revoke {
            target:
                RevokeTarget::Key {
                    fingerprint,
                    reason,
                },
        } => http
            .post(format!("{base}/v1/keys/{fingerprint}/revoke"))
            .json(&serde_json::json!({ "reason": reason })),
        AdminCommand::Token {
            producer_id,
            ttl,
            reason,
        } => http
            .post(format!("{base}/v1/producers/{producer_id}/token"))
            .json(&serde_json::json!({"ttl": ttl, "reason": reason})),
        AdminCommand::Decisions { limit } => http
            .get(format!("{base}/v1/decisions"))
            .query(&[("limit", limit)]),
    };
    let body = send_admin(base, req.bearer_auth(token.as_str())).await?;
    if let (AdminCommand::Token { .. }, Ok(v)) = (
        &args.command,
        serde_json::from_str::<serde_json::Value>(&body),
    ) {
        println!("{}", v["token"].as_str().unwrap_or_default());
        return Ok(());
    }
    print_answer(&body)
}

/// Prints an admin API answer: pretty JSON, or `ok` for an empty one.
pub fn print_answer(body: &str) -> anyhow::Result<()> {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
        Err(_) => println!("ok"),
    }
    Ok(())
}

/// Sends a request to the admin API at `base` and returns the body of a successful answer;
/// otherwise an error naming the API and what it answered (or why it did not).
pub async fn send_admin(base: &str, request: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let resp = request
        .send()
        .await
        .map_err(|e| unreachable_admin(base, &e))?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .with_context(|| format!("reading the answer of the admin API at {base}"))?;
    if !status.is_success() {
        bail!("admin API at {base} answered {status}: {}", body.trim());
    }
    Ok(body)
}

/// The error for an admin API that did not answer: where, and the innermost cause (reqwest's
/// own text is only `error sending request`).
fn unreachable_admin(base: &str, e: &reqwest::Error) -> anyhow::Error {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    anyhow!("admin API at {base} unreachable (--url, FDC_ADMIN_URL): {cause}")
}

/// The id of the pending registration of the key in `public_key`.
async fn pending_registration_of(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    public_key: &std::path::Path,
) -> anyhow::Result<Uuid> {
    let key = keys::load_verifying_key(public_key)?;
    let fingerprint = keys::fingerprint(&key);
    let request = http
        .get(format!("{base}/v1/registrations"))
        .query(&[("status", "pending")])
        .bearer_auth(token);
    let body = send_admin(base, request).await?;
    let list: Vec<serde_json::Value> = serde_json::from_str(&body)
        .with_context(|| format!("unexpected registration list from {base}"))?;
    list.iter()
        .filter(|r| r["fingerprint"].as_str() == Some(fingerprint.as_str()))
        .filter_map(|r| r["registration_id"].as_str()?.parse().ok())
        .next_back()
        .ok_or_else(|| {
            anyhow!(
                "no pending registration for the key in {} (fingerprint {fingerprint}); the \
                 producer runs `fdc-kernel register` first",
                public_key.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_data_objects() {
        assert_eq!(
            data_for_line(r#"{"payload":{"a":1},"subject":"s"}"#, false).unwrap(),
            r#"{"payload":{"a":1},"subject":"s"}"#
        );
        let wrapped: serde_json::Value =
            serde_json::from_str(&data_for_line(r#"{"a":1}"#, false).unwrap()).unwrap();
        assert_eq!(wrapped, serde_json::json!({"payload": {"a": 1}}));
        assert!(data_for_line("[1]", false).is_err());
        assert!(data_for_line("nope", false).is_err());
        let err = data_for_line(r#"{"payload": 5}"#, false).unwrap_err();
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(
            data_for_line(r#"{"payload": 5}"#, true).unwrap(),
            r#"{"payload": 5}"#
        );
    }

    #[test]
    fn expiry_reads_as_a_date_and_a_duration() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            expiry_text(1_800_000_000 + 86_400 + 30, now),
            "2027-01-16 08:00:30 UTC (in 1day)"
        );
        assert_eq!(
            expiry_text(1_800_000_000 - 5, now),
            "2027-01-15 07:59:55 UTC (expired)"
        );
    }
}
