//! Admin HTTP API, on its own port (`auth.admin_listen`), every route behind the admin bearer
//! token. See docs/auth.md ("Admin API") for the routes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fdc_common::contract;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::preapprove::{self, PreApproval, PreApproveBody};
use super::store::{self, AdminError};
use crate::auth::metrics::AuthMetrics;
use fdc_common::token::TokenIssuer;

/// Everything the handlers need.
pub struct AdminState {
    pub pool: PgPool,
    pub issuer: Option<Arc<TokenIssuer>>,
    pub default_token_ttl: Duration,
    pub metrics: AuthMetrics,
    /// `ingest.schemas`: streams bound to a schema in config, which keep it in use.
    pub stream_schemas: std::collections::BTreeMap<String, String>,
    /// SHA-256 of the admin token: comparing fixed-size digests in constant time hides even
    /// the token's length, and the token itself is not kept in memory.
    admin_token_digest: [u8; 32],
}

impl AdminState {
    pub fn new(
        pool: PgPool,
        issuer: Option<Arc<TokenIssuer>>,
        default_token_ttl: Duration,
        metrics: AuthMetrics,
        admin_token: &str,
    ) -> AdminState {
        AdminState {
            pool,
            issuer,
            default_token_ttl,
            metrics,
            stream_schemas: Default::default(),
            admin_token_digest: Sha256::digest(admin_token.as_bytes()).into(),
        }
    }

    fn authorized(&self, presented: Option<&str>) -> bool {
        let Some(p) = presented else { return false };
        let digest: [u8; 32] = Sha256::digest(p.as_bytes()).into();
        digest.ct_eq(&self.admin_token_digest).into()
    }
}

/// Read and trim the admin token file. Errors name the file, never its content.
pub fn read_admin_token(path: &std::path::Path) -> Result<zeroize::Zeroizing<String>, String> {
    let raw = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read admin token file {}: {e}", path.display()))?,
    );
    let token = zeroize::Zeroizing::new(raw.trim().to_string());
    if token.len() < 16 {
        return Err(format!(
            "admin token in {} is shorter than 16 characters",
            path.display()
        ));
    }
    Ok(token)
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/v1/registrations", get(list_registrations))
        .route("/v1/registrations/{id}/approve", post(approve))
        .route("/v1/registrations/{id}/reject", post(reject))
        .route(contract::PRODUCER_ROUTE, get(show_producer))
        .route(contract::PRODUCER_REVOKE_ROUTE, post(revoke_producer))
        .route("/v1/producers/{id}/token", post(issue_token))
        .route(contract::PRODUCER_KEYS_ROUTE, post(preapprove_key))
        .route("/v1/keys/{fingerprint}/revoke", post(revoke_key))
        .route("/v1/decisions", get(list_decisions))
        .merge(super::schemas::routes())
        .layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .with_state(state)
}

/// Serve the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn require_admin(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !state.authorized(presented) {
        state.metrics.admin_unauthorized.inc();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(ErrorBody {
                error: "unauthorized".into(),
            }),
        )
            .into_response();
    }
    next.run(req).await
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let status = match &self {
            AdminError::NotFound(_) => StatusCode::NOT_FOUND,
            AdminError::Conflict(_) | AdminError::ConflictDetail(_) => StatusCode::CONFLICT,
            AdminError::BadRequest(_) | AdminError::BadRequestDetail(_) => StatusCode::BAD_REQUEST,
            AdminError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AdminError::NoSigningKey => StatusCode::SERVICE_UNAVAILABLE,
            AdminError::Db(_) | AdminError::Token(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let error = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "admin request failed");
            "internal error".to_string()
        } else {
            self.to_string()
        };
        (status, Json(ErrorBody { error })).into_response()
    }
}

#[derive(Deserialize)]
struct ListQuery {
    /// `pending` (default), `approved`, `rejected` or `all`.
    status: Option<String>,
}

async fn list_registrations(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<store::Registration>>, AdminError> {
    let status = match q.status.as_deref().unwrap_or("pending") {
        "all" => None,
        s @ ("pending" | "approved" | "rejected") => Some(s),
        _ => {
            return Err(AdminError::BadRequest(
                "status must be pending|approved|rejected|all",
            ))
        }
    };
    Ok(Json(store::list_registrations(&s.pool, status).await?))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApproveBody {
    /// Bind to this existing producer; a new producer is created when absent.
    pub producer_id: Option<Uuid>,
    pub reason: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApproveResponse {
    pub producer_id: Uuid,
}

async fn approve(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
    Json(body): Json<ApproveBody>,
) -> Result<Json<ApproveResponse>, AdminError> {
    let producer_id = store::approve(&s.pool, id, body.producer_id, &body.reason).await?;
    tracing::info!(registration = %id, producer = %producer_id, "registration approved");
    Ok(Json(ApproveResponse { producer_id }))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReasonBody {
    pub reason: String,
}

async fn reject(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> Result<StatusCode, AdminError> {
    store::reject(&s.pool, id, &body.reason).await?;
    tracing::info!(registration = %id, "registration rejected");
    Ok(StatusCode::NO_CONTENT)
}

/// Producer `id`: name, creation, last seen, revocation (404 when the kernel has no row).
async fn show_producer(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
) -> Result<Json<store::ProducerRow>, AdminError> {
    Ok(Json(store::producer(&s.pool, id).await?))
}

async fn revoke_producer(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> Result<StatusCode, AdminError> {
    store::revoke_producer(&s.pool, id, &body.reason).await?;
    tracing::info!(producer = %id, "producer revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn revoke_key(
    State(s): State<Arc<AdminState>>,
    Path(fingerprint): Path<String>,
    Json(body): Json<ReasonBody>,
) -> Result<StatusCode, AdminError> {
    store::revoke_key(&s.pool, &fingerprint, &body.reason).await?;
    tracing::info!(fingerprint = %fingerprint, "key revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Pre-approve an externally held key for producer `id`: 201 when approved now, 200 when it
/// already was (nothing changed), 409 when the key or the producer is spoken for.
async fn preapprove_key(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
    Json(body): Json<PreApproveBody>,
) -> Result<(StatusCode, Json<PreApproval>), AdminError> {
    let outcome = preapprove::preapprove(&s.pool, id, &body).await?;
    if outcome.changed {
        tracing::info!(
            producer = %id,
            fingerprint = %outcome.fingerprint,
            producer_created = outcome.producer_created,
            "key pre-approved"
        );
        Ok((StatusCode::CREATED, Json(outcome)))
    } else {
        Ok((StatusCode::OK, Json(outcome)))
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IssueBody {
    /// humantime duration (`1h`); `auth.token_ttl` when absent.
    pub ttl: Option<String>,
    pub reason: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct IssueResponse {
    pub token: String,
    pub producer_id: Uuid,
    pub jti: String,
    pub expires_at: i64,
}

async fn issue_token(
    State(s): State<Arc<AdminState>>,
    Path(id): Path<Uuid>,
    Json(body): Json<IssueBody>,
) -> Result<Json<IssueResponse>, AdminError> {
    let ttl = match body.ttl.as_deref() {
        None => s.default_token_ttl,
        Some(t) => humantime::parse_duration(t)
            .map_err(|_| AdminError::BadRequest("ttl must be a duration like 1h"))?,
    };
    let reason = body.reason.unwrap_or_else(|| "issued via admin API".into());
    let issued = store::issue_token(&s.pool, s.issuer.as_deref(), id, ttl, &reason).await?;
    tracing::info!(producer = %id, jti = %issued.claims.jti, "token issued");
    Ok(Json(IssueResponse {
        producer_id: id,
        jti: issued.claims.jti.clone(),
        expires_at: issued.claims.exp,
        token: issued.token,
    }))
}

#[derive(Deserialize)]
struct DecisionsQuery {
    limit: Option<i64>,
}

async fn list_decisions(
    State(s): State<Arc<AdminState>>,
    Query(q): Query<DecisionsQuery>,
) -> Result<Json<Vec<store::DecisionRecord>>, AdminError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(store::list_decisions(&s.pool, limit).await?))
}
