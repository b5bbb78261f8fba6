//! The registration service: reads `auth.register.stream` through the kernel's consumer
//! group, decides each request, and replies on `<reply_prefix><fingerprint>`.
//!
//! Redis goes through the kernel's [`StreamClient`], so a Redis Cluster works as one server
//! does: the request stream is read from the node owning its slot, and each reply (`XADD` and
//! `EXPIRE` of one key) and acknowledgement (`XACK` and `XDEL` of one key) is routed by its
//! key's slot. Redis trouble never ends it: the connections reconnect on their own, a group
//! lost with a non-persistent Redis restart is recreated on `NOGROUP`, and
//! [`RegistrationService::serve`] restarts a failed run with backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::reply::{Reply, SealedGrant, Status};
use super::request::{self, Invalid, RequestLimits};
use super::store::{self, Decision, IssuePolicy, Outcome, StoreError};
use super::{seal, stream};
use crate::auth::metrics::AuthMetrics;
use crate::entry::{Entry, Flaw, FlawReason};
use crate::redis_io::{Ops, RedisIoError, StreamClient};
use fdc_common::config::auth::AuthConfig;
use fdc_common::token::TokenIssuer;

const BLOCK: Duration = Duration::from_millis(500);
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Pause before restarting a failed run: doubled per failure up to `RESTART_MAX`.
const RESTART_MIN: Duration = Duration::from_millis(200);
const RESTART_MAX: Duration = Duration::from_secs(10);
const RESTARTS: crate::retry::Backoff = crate::retry::Backoff::doubling(RESTART_MIN, RESTART_MAX);
/// A run that lasted this long was healthy: the next failure starts the backoff over.
const HEALTHY_RUN: Duration = Duration::from_secs(30);

/// How one request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Where the reply goes (`None`: unreadable public key, no reply stream).
    pub fingerprint: Option<String>,
    pub reply: Reply,
    /// The stored reply of the same request, sent again (the first one was lost).
    pub resent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("redis error on the registration stream: {0}")]
    Redis(#[from] RedisIoError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The reply could not be written to this key's reply stream (e.g. the key holds another
    /// type): a failure of this one request, not of the service.
    #[error("cannot write the reply to {key}: {source}")]
    Reply {
        key: String,
        source: redis::RedisError,
    },
}

pub struct RegistrationService {
    config: AuthConfig,
    pool: PgPool,
    /// The kernel's consumer group and name on the registration stream.
    redis: StreamClient,
    issuer: Option<Arc<TokenIssuer>>,
    metrics: AuthMetrics,
}

impl RegistrationService {
    /// `redis_url`: the kernel's `redis.url` (one server or `redis+cluster://`), connected
    /// lazily. `group`/`consumer`: the kernel's consumer group and name, so one replica
    /// handles each request. `issuer`: `None` when no signing key is configured (approved
    /// keys are then `denied` with `no_signing_key`).
    pub fn new(
        config: &AuthConfig,
        pool: PgPool,
        redis_url: &str,
        issuer: Option<Arc<TokenIssuer>>,
        metrics: AuthMetrics,
        group: &str,
        consumer: &str,
    ) -> Result<RegistrationService, RedisIoError> {
        let redis = StreamClient::new(redis_url, group, consumer, BLOCK)?
            .with_entry_bounds(stream::request_bounds(config.register.max_name_len));
        Ok(RegistrationService {
            config: config.clone(),
            pool,
            redis,
            issuer,
            metrics,
        })
    }

    /// Run until `stop` is cancelled, restarting after any failure (Redis unreachable, even
    /// at start, or a panic) with exponential backoff.
    pub async fn serve(self: Arc<Self>, stop: CancellationToken) {
        let mut pauses = RESTARTS.delays();
        loop {
            let started = Instant::now();
            let run = {
                let service = self.clone();
                let stop = stop.clone();
                tokio::spawn(async move { service.run(stop.cancelled_owned()).await })
            };
            match run.await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "registration service failed; restarting")
                }
                Err(e) => tracing::error!(error = %e, "registration service panicked; restarting"),
            }
            if started.elapsed() >= HEALTHY_RUN {
                pauses.reset();
            }
            if pauses.pause(&stop).await.is_err() {
                return;
            }
        }
    }

    /// One run until `shutdown` completes (`Ok`) or Redis fails (`Err`; [`serve`](Self::serve)
    /// starts another). Postgres trouble is logged and retried within the run; an entry is
    /// acknowledged only after its reply was written.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), RegistrationError> {
        tokio::pin!(shutdown);
        let stream_name = self.config.register.stream.clone();
        let streams = [stream_name.clone()];
        let mut write_conn = self.redis.ops();
        self.redis.ensure_group(&stream_name).await?;
        // Own pending entries first (a previous run may have died mid-request), read on from
        // `cursor`; then new ones.
        let mut backlog = true;
        let mut cursor = "0".to_string();
        // When requests whose reply could not be written are next retried (a pass over our
        // pending entries from the start).
        let mut retry_at: Option<Instant> = None;
        let mut last_prune = Instant::now() - PRUNE_EVERY;
        loop {
            if !backlog && retry_at.is_some_and(|at| at <= Instant::now()) {
                backlog = true;
                cursor = "0".to_string();
                retry_at = None;
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                if let Err(e) = store::prune_nonces(&self.pool, self.config.nonce_retention()).await
                {
                    tracing::warn!(error = %e, "cannot prune registration nonces");
                }
                last_prune = Instant::now();
            }
            let from = [if backlog { cursor.clone() } else { ">".into() }];
            let read = self.redis.read(&streams, &from, 16, Some(BLOCK));
            let entries = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = read => r,
            };
            let entries = match entries {
                Ok(e) => e,
                Err(RedisIoError::Link(e)) if e.code() == Some("NOGROUP") => {
                    // Redis restarted without persistence: stream and group are gone.
                    tracing::warn!(stream = %stream_name, "registration group missing; recreating it");
                    self.redis.ensure_group(&stream_name).await?;
                    backlog = true;
                    cursor = "0".to_string();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if backlog {
                match entries.last() {
                    Some(last) => cursor = last.at.id.to_string(),
                    None => backlog = false,
                }
            }
            for entry in entries {
                let id = entry.at.id.to_string();
                match self.process(&mut write_conn, &entry).await {
                    Ok(()) => {
                        // A failed ack is harmless: the request is read again and its stored
                        // reply resent.
                        let acked: Result<(), _> = redis::pipe()
                            .cmd("XACK")
                            .arg(&stream_name)
                            .arg(self.redis.group())
                            .arg(&id)
                            .ignore()
                            .cmd("XDEL")
                            .arg(&stream_name)
                            .arg(&id)
                            .ignore()
                            .query_async(&mut write_conn)
                            .await;
                        if let Err(e) = acked {
                            tracing::warn!(error = %e, entry = %id, "cannot acknowledge a registration request");
                        }
                    }
                    Err(e @ RegistrationError::Reply { .. }) => {
                        // This request's reply stream is unusable: it stays pending and is
                        // retried in a second, while the requests behind it go on.
                        tracing::warn!(error = %e, entry = %id, "registration reply not written; will retry");
                        retry_at.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
                    }
                    Err(e) => {
                        // Not acknowledged: re-read from our pending list after a pause.
                        tracing::warn!(error = %e, entry = %id, "registration request failed; will retry");
                        backlog = true;
                        cursor = "0".to_string();
                        tokio::select! {
                            _ = &mut shutdown => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Decide one request and write its reply (when it can be addressed).
    async fn process(&self, conn: &mut Ops, entry: &Entry) -> Result<(), RegistrationError> {
        let answer = match &entry.flaw {
            Some(flaw) => refused(flaw),
            None => {
                let pairs = entry.fields.as_ref().map(|f| f.to_pairs());
                self.decide(pairs.as_deref().unwrap_or_default()).await?
            }
        };
        let Answer {
            fingerprint,
            reply,
            resent,
        } = answer;
        if resent {
            self.metrics.register_resent.inc();
        } else {
            self.metrics
                .register
                .with_label_values(&[reply.status.as_str()])
                .inc();
            if reply.status == Status::Denied {
                self.metrics
                    .register_denied
                    .with_label_values(&[reply.detail.as_str()])
                    .inc();
            }
        }
        tracing::info!(
            fingerprint = fingerprint.as_deref().unwrap_or("-"),
            status = reply.status.as_str(),
            detail = %reply.detail,
            resent,
            "registration request"
        );
        let Some(fp) = fingerprint else {
            // No readable public key: there is no reply stream to answer on.
            return Ok(());
        };
        let key = format!("{}{}", self.config.register.reply_prefix, fp);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("MAXLEN").arg("~").arg(100).arg("*");
        for (k, v) in reply.to_fields() {
            cmd.arg(k).arg(v);
        }
        redis::pipe()
            .add_command(cmd)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(self.config.register.reply_ttl.as_secs().max(1))
            .ignore()
            .query_async::<()>(conn)
            .await
            .map_err(|source| RegistrationError::Reply { key, source })?;
        Ok(())
    }

    /// The answer to a request: decided now (and stored with its nonce), or the stored reply
    /// of the same request when it is retried.
    pub async fn decide(&self, fields: &[(String, Vec<u8>)]) -> Result<Answer, StoreError> {
        let limits = RequestLimits {
            max_name_len: self.config.register.max_name_len,
            max_skew: self.config.register.max_skew,
        };
        let now_ns = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
        let req = match request::verify(fields, &limits, now_ns) {
            Ok(r) => r,
            Err(Invalid {
                fingerprint,
                nonce,
                error,
            }) => {
                let reply = Reply {
                    status: Status::Invalid,
                    detail: error.why().to_string(),
                    nonce,
                    grant: None,
                };
                return Ok(Answer {
                    fingerprint,
                    reply,
                    resent: false,
                });
            }
        };
        let policy = IssuePolicy {
            issuer: self.issuer.as_deref(),
            token_ttl: self.config.token_ttl,
            rate_limit: self.config.register.rate_limit,
            rate_window: self.config.register.rate_window,
            max_pending: self.config.register.max_pending,
            new_keys_limit: self.config.register.new_keys_limit,
            new_keys_window: self.config.register.new_keys_window,
        };
        let nonce = Some(req.nonce.clone());
        let reply_for = |decision: Decision| -> Result<Reply, StoreError> {
            Ok(match decision {
                Decision::Issued(issued) => {
                    let sealed = seal::seal(&req.public_key, issued.token.as_bytes())
                        .map_err(|_| StoreError::Token(fdc_common::token::TokenError::Signing))?;
                    Reply {
                        status: Status::Issued,
                        detail: "issued".into(),
                        nonce: nonce.clone(),
                        grant: Some(SealedGrant {
                            sealed_token: sealed,
                            producer_id: issued.claims.sub,
                            expires_at: issued.claims.exp,
                            kid: self
                                .issuer
                                .as_ref()
                                .map(|i| i.kid().to_string())
                                .unwrap_or_default(),
                        }),
                    }
                }
                Decision::Pending { .. } => Reply {
                    status: Status::Pending,
                    detail: "awaiting_approval".into(),
                    nonce: nonce.clone(),
                    grant: None,
                },
                Decision::Denied(why) => Reply {
                    status: Status::Denied,
                    detail: why.into(),
                    nonce: nonce.clone(),
                    grant: None,
                },
            })
        };
        let (reply, resent) = match store::decide(&self.pool, &req, &policy, reply_for).await? {
            Outcome::Decided(reply) => (reply, false),
            Outcome::Resent(reply) => (reply, true),
            Outcome::Replayed => (
                Reply {
                    status: Status::Invalid,
                    detail: "replayed_nonce".into(),
                    nonce: nonce.clone(),
                    grant: None,
                },
                false,
            ),
        };
        Ok(Answer {
            fingerprint: Some(req.fingerprint),
            reply,
            resent,
        })
    }
}

/// The answer to a request read only as a summary (over the byte bound, or a field name that
/// is not UTF-8): `invalid` / `too_large` or `bad_text`, to the key's reply stream when its
/// `public_key` was read whole.
fn refused(flaw: &Flaw) -> Answer {
    let readable: Vec<(String, Vec<u8>)> = flaw
        .fields
        .iter()
        .filter(|c| c.value_sha256.is_none() && c.name_len == c.name.len())
        .filter_map(|c| Some((String::from_utf8(c.name.clone()).ok()?, c.value.clone())))
        .collect();
    let error = match flaw.why.reason {
        FlawReason::TooLarge => request::RequestError::TooLarge("request"),
        _ => request::RequestError::BadText("field name"),
    };
    let Invalid {
        fingerprint,
        nonce,
        error,
    } = request::refuse(&readable, error);
    Answer {
        fingerprint,
        reply: Reply {
            status: Status::Invalid,
            detail: error.why().to_string(),
            nonce,
            grant: None,
        },
        resent: false,
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    #[test]
    fn restarts_wait_200ms_doubling_to_10s() {
        assert_eq!(
            RESTARTS.first_millis(8),
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
    }
}
