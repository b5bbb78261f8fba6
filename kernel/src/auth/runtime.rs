//! Starting auth with the kernel: the ingest gate, the registration service and the admin API,
//! all from the `auth` config section. With `auth.enabled` false only the admin API starts, and
//! only when `auth.admin_token_file` is set (it manages payload schemas in both modes).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::admin::{self, AdminState};
use super::authenticator::{AuthSetupError, Authenticator};
use super::gate::AuthGate;
use super::last_seen;
use super::metrics::AuthMetrics;
use super::registration::RegistrationService;
use fdc_common::config::auth::AuthConfig;
use fdc_common::keys;
use fdc_common::token::TokenIssuer;

#[derive(Debug, thiserror::Error)]
pub enum AuthStartError {
    #[error(transparent)]
    Setup(#[from] AuthSetupError),
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    #[error("cannot sign tokens with auth.signing_key: {0}")]
    Issuer(#[from] fdc_common::token::TokenError),
    #[error("auth.admin_token_file: {0}")]
    AdminToken(String),
    #[error("cannot listen on auth.admin_listen {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("redis: {0}")]
    Redis(#[from] crate::redis_io::RedisIoError),
}

/// What the kernel keeps from a started auth: the gate for the writer (when `auth.enabled`),
/// and where the admin API listens (when it runs: with `auth.admin_listen` on port 0, the port
/// the system picked).
#[derive(Default)]
pub struct AuthRuntime {
    pub gate: Option<AuthGate>,
    pub admin_addr: Option<SocketAddr>,
}

/// Load the issuer from `auth.signing_key`, if configured.
pub fn issuer_from_config(config: &AuthConfig) -> Result<Option<TokenIssuer>, AuthStartError> {
    let Some(path) = &config.signing_key else {
        return Ok(None);
    };
    let key = keys::load_signing_key(path)?;
    Ok(Some(TokenIssuer::new(
        &key,
        &config.issuer,
        &config.audience,
    )?))
}

/// Start auth for a kernel. No gate when `auth.enabled` is false (the admin API still starts
/// when `auth.admin_token_file` is set). `stream_schemas`: `ingest.schemas`, which the
/// admin API counts as users of a schema version. The background tasks that
/// use the auth tables (last-seen writes, the registration service with its nonce pruning)
/// start once `schema_ready` resolves (migrations applied), and stop when `stop` is cancelled.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    config: &AuthConfig,
    pool: PgPool,
    redis_url: &str,
    registry: &Registry,
    group: &str,
    consumer: &str,
    stop: CancellationToken,
    schema_ready: impl std::future::Future<Output = ()> + Send + 'static,
    stream_schemas: &BTreeMap<String, String>,
) -> Result<AuthRuntime, AuthStartError> {
    if !config.enabled && config.admin_token_file.is_none() {
        return Ok(AuthRuntime::default());
    }
    let metrics = AuthMetrics::register(registry).map_err(AuthSetupError::from)?;
    if !config.enabled {
        let issuer = issuer_from_config(config)?.map(Arc::new);
        let admin_addr = start_admin(config, pool, issuer, metrics, stream_schemas, stop).await?;
        return Ok(AuthRuntime {
            gate: None,
            admin_addr,
        });
    }
    let authenticator = Arc::new(Authenticator::from_config(
        config,
        pool.clone(),
        metrics.clone(),
    )?);
    let issuer = issuer_from_config(config)?.map(Arc::new);
    tracing::info!(
        kids = ?authenticator.kids(),
        issuing = issuer.is_some(),
        "auth enabled"
    );

    let registration = if config.register.enabled {
        Some(Arc::new(RegistrationService::new(
            config,
            pool.clone(),
            redis_url,
            issuer.clone(),
            metrics.clone(),
            group,
            consumer,
        )?))
    } else {
        None
    };
    {
        let authenticator = authenticator.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = schema_ready => {}
            }
            tokio::spawn(write_last_seen(authenticator, stop.clone()));
            if let Some(service) = registration {
                // Supervised: Redis trouble (even at start) delays registration, never ends it.
                tokio::spawn(service.serve(stop));
            }
        });
    }

    let admin_addr = start_admin(config, pool, issuer, metrics, stream_schemas, stop).await?;
    Ok(AuthRuntime {
        gate: Some(AuthGate::new(authenticator)),
        admin_addr,
    })
}

/// Starts the admin API when `auth.admin_token_file` is set; where it listens.
async fn start_admin(
    config: &AuthConfig,
    pool: PgPool,
    issuer: Option<Arc<TokenIssuer>>,
    metrics: AuthMetrics,
    stream_schemas: &BTreeMap<String, String>,
    stop: CancellationToken,
) -> Result<Option<SocketAddr>, AuthStartError> {
    let mut admin_addr = None;
    if let Some(path) = &config.admin_token_file {
        let token = admin::read_admin_token(path).map_err(AuthStartError::AdminToken)?;
        let mut state = AdminState::new(pool, issuer, config.token_ttl, metrics, &token);
        state.stream_schemas = stream_schemas.clone();
        let state = Arc::new(state);
        drop(token);
        let listener = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| AuthStartError::Listen {
                addr: config.admin_listen,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| AuthStartError::Listen {
                addr: config.admin_listen,
                source,
            })?;
        admin_addr = Some(addr);
        tokio::spawn(async move {
            if let Err(e) = admin::serve(listener, state, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
        tracing::info!(%addr, "admin API listening");
    }
    Ok(admin_addr)
}

/// Pauses between last-seen writes: [`last_seen::FLUSH_EVERY`], doubled per failed write up
/// to 10 s (also the bound of one write), back to the start after a success.
const LAST_SEEN_PAUSES: crate::retry::Backoff =
    crate::retry::Backoff::doubling(last_seen::FLUSH_EVERY, Duration::from_secs(10));

/// Writes producers' last-seen times every [`last_seen::FLUSH_EVERY`] until `stop`, then once
/// more (bounded). Failures are counted and retried with backoff (up to 10 s between tries):
/// never on the ingest path.
async fn write_last_seen(authenticator: Arc<Authenticator>, stop: CancellationToken) {
    let mut pauses = LAST_SEEN_PAUSES.delays();
    let mut pause = pauses.next_delay();
    let mut failing = false;
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tokio::time::sleep(pause) => false,
        };
        let flush =
            tokio::time::timeout(LAST_SEEN_PAUSES.max(), authenticator.flush_last_seen()).await;
        let failed = match flush {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("timed out".to_string()),
        };
        match failed {
            None => {
                failing = false;
                pauses.reset();
            }
            Some(error) => {
                authenticator.metrics().last_seen_failures.inc();
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "cannot write producers' last_seen_at; will retry");
                }
            }
        }
        pause = pauses.next_delay();
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_seen_pauses_start_at_the_flush_period_and_double_to_10s() {
        assert_eq!(
            LAST_SEEN_PAUSES.first_millis(6),
            [1000, 2000, 4000, 8000, 10_000, 10_000]
        );
    }
}
