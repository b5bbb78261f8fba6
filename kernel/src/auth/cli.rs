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

use super::keys;
use super::registration::reply::{Reply, Status};
use super::registration::{request, seal, stream};
use super::token::TokenIssuer;

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
    #[arg(long)]
    pub signing_key: PathBuf,
    #[arg(long)]
    pub producer_id: Uuid,
    #[arg(long)]
    pub name: String,
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
    #[arg(
        long,
        env = "FDC_REDIS__URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    pub redis_url: String,
}

#[derive(Args, Debug, Clone)]
pub struct RegisterArgs {
    /// Key directory made by `fdc-kernel keygen` (uses producer.key).
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub schema: Option<String>,
    #[command(flatten)]
    pub redis: RedisArgs,
    #[arg(
        long,
        env = "FDC_AUTH__REGISTER__STREAM",
        default_value = "fdc:register"
    )]
    pub stream: String,
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
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub interval: Duration,
}

#[derive(Args, Debug, Clone)]
pub struct PublishArgs {
    /// File holding the producer's token (as saved by `register`).
    #[arg(long)]
    pub token_file: PathBuf,
    #[arg(long, default_value = "events")]
    pub stream: String,
    #[command(flatten)]
    pub redis: RedisArgs,
    /// Send one heartbeat and exit instead of reading stdin.
    #[arg(long)]
    pub heartbeat: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AdminArgs {
    /// Base URL of the kernel's admin API (auth.admin_listen).
    #[arg(long, env = "FDC_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    pub url: String,
    /// File holding the admin token (the kernel's auth.admin_token_file).
    #[arg(long, env = "FDC_ADMIN_TOKEN_FILE")]
    pub token_file: PathBuf,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum AdminCommand {
    /// List registrations (pending by default).
    Registrations {
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve a pending registration, binding its key to a new or an existing producer.
    Approve {
        registration_id: Uuid,
        #[arg(long)]
        producer_id: Option<Uuid>,
        #[arg(long)]
        reason: String,
    },
    /// Pre-approve a public key the producer holds itself, for a producer id (created when
    /// missing): the key's first `register` is then issued. Repeating it changes nothing.
    ApproveKey {
        producer_id: Uuid,
        /// The producer's public key file: SPKI PEM (e.g. producer.pub from `keygen`).
        #[arg(long)]
        public_key: PathBuf,
        /// Producer name (used when the producer is created).
        #[arg(long)]
        name: String,
        #[arg(long)]
        schema: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// Reject a pending registration (its key is refused from then on).
    Reject {
        registration_id: Uuid,
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
        producer_id: Uuid,
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Recent decisions, newest first.
    Decisions {
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum RevokeTarget {
    Producer {
        producer_id: Uuid,
        #[arg(long)]
        reason: String,
    },
    Key {
        fingerprint: String,
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
    let client = redis::Client::open(args.redis.redis_url.as_str()).context("redis url")?;
    let mut conn = stream::connect(&client, Duration::from_secs(1)).await?;
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
        let _: String = cmd.query_async(&mut conn).await?;
        let reply = wait_reply(&mut conn, &reply_key, &nonce, args.timeout).await?;
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
                println!("expires at:  {}", grant.expires_at);
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
    conn: &mut redis::aio::MultiplexedConnection,
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
/// data object (`subject`, `tags`, `payload`); any other object becomes the payload.
pub fn data_for_line(line: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = serde_json::from_str(line).context("line is not JSON")?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("line is not a JSON object"))?;
    if obj.contains_key("payload") {
        Ok(line.to_string())
    } else {
        Ok(serde_json::json!({ "payload": v }).to_string())
    }
}

pub async fn publish(args: PublishArgs) -> anyhow::Result<()> {
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("cannot read {}", args.token_file.display()))?
            .trim()
            .to_string(),
    );
    let client = redis::Client::open(args.redis.redis_url.as_str()).context("redis url")?;
    let mut conn = client.get_multiplexed_async_connection().await?;
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
        let _: String = cmd.query_async(&mut conn).await?;
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
        let data = data_for_line(&line).with_context(|| format!("stdin line {}", n + 1))?;
        let (id, cmd) = send("data", Some(data));
        let _: String = cmd.query_async(&mut conn).await?;
        println!("{id}");
        sent += 1;
    }
    eprintln!("published {sent} events to {}", args.stream);
    Ok(())
}

pub async fn admin(args: AdminArgs) -> anyhow::Result<()> {
    let token = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.token_file)
            .with_context(|| format!("cannot read {}", args.token_file.display()))?
            .trim()
            .to_string(),
    );
    let base = args.url.trim_end_matches('/');
    let http = reqwest::Client::new();
    let req = match &args.command {
        AdminCommand::Registrations { status } => http
            .get(format!("{base}/v1/registrations"))
            .query(&[("status", status)]),
        AdminCommand::Approve {
            registration_id,
            producer_id,
            reason,
        } => http
            .post(format!("{base}/v1/registrations/{registration_id}/approve"))
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
            http.post(format!("{base}/v1/producers/{producer_id}/keys"))
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
            .post(format!("{base}/v1/producers/{producer_id}/revoke"))
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
    let resp = req
        .bearer_auth(token.as_str())
        .send()
        .await
        .context("admin API unreachable")?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("admin API answered {status}: {body}");
    }
    match (
        &args.command,
        serde_json::from_str::<serde_json::Value>(&body),
    ) {
        (AdminCommand::Token { .. }, Ok(v)) => {
            println!("{}", v["token"].as_str().unwrap_or_default())
        }
        (_, Ok(v)) => println!("{}", serde_json::to_string_pretty(&v)?),
        (_, Err(_)) => println!("ok"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_data_objects() {
        assert_eq!(
            data_for_line(r#"{"payload":{"a":1},"subject":"s"}"#).unwrap(),
            r#"{"payload":{"a":1},"subject":"s"}"#
        );
        let wrapped: serde_json::Value =
            serde_json::from_str(&data_for_line(r#"{"a":1}"#).unwrap()).unwrap();
        assert_eq!(wrapped, serde_json::json!({"payload": {"a": 1}}));
        assert!(data_for_line("[1]").is_err());
        assert!(data_for_line("nope").is_err());
    }
}
