//! Admin API routes of the payload schema registry and of producers' schema bindings
//! (`fdc_common::contract`: `SCHEMAS_ROUTE`, `SCHEMA_ROUTE`, `SCHEMA_DEPRECATE_ROUTE`,
//! `PRODUCER_SCHEMA_ROUTE`). Every change is audited in `auth_decisions`, in the transaction
//! that makes it. docs/schemas.md describes the routes.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use fdc_common::contract;
use fdc_common::schema_binding::{check_name, Binding};
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::http::AdminState;
use super::store::{audit_and_commit, record, require_reason, AdminError};
use crate::schemas::compile::{compile, CompileError};
use crate::schemas::store::{self as db, SchemaSummary};
use crate::schemas::MAX_BODY_BYTES;

pub fn routes() -> Router<Arc<AdminState>> {
    Router::new()
        .route(contract::SCHEMAS_ROUTE, get(list).post(add))
        .route(contract::SCHEMA_ROUTE, get(show).delete(remove))
        .route(contract::SCHEMA_DEPRECATE_ROUTE, post(deprecate))
        .route(contract::PRODUCER_SCHEMA_ROUTE, post(bind))
        // Room for a body at the limit plus its JSON envelope; larger bodies get axum's 413.
        .layer(DefaultBodyLimit::max(4 * MAX_BODY_BYTES))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AddSchemaBody {
    pub name: String,
    pub version: String,
    pub body: Value,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SchemaDetail {
    #[serde(flatten)]
    pub summary: SchemaSummary,
    pub body: Value,
    /// Producers whose binding picks this version now.
    pub bound_producers: Vec<Uuid>,
    /// Streams bound to it in this kernel's `ingest.schemas`.
    pub bound_streams: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OptionalReason {
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BindBody {
    /// `name`, `name@version` or `name@range`; `null` unbinds.
    pub schema: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct BindResponse {
    pub producer_id: Uuid,
    pub schema: Option<String>,
}

fn reason_or(reason: Option<String>, default: &str) -> Result<String, AdminError> {
    let reason = reason.unwrap_or_else(|| default.to_string());
    require_reason(&reason)?;
    Ok(reason)
}

fn checked_identity(name: &str, version: &str) -> Result<(), AdminError> {
    check_name(name).map_err(|e| AdminError::BadRequestDetail(e.to_string()))?;
    Version::parse(version).map_err(|e| {
        AdminError::BadRequestDetail(format!(
            "version {version:?} is not a semantic version (1.2.0): {e}"
        ))
    })?;
    Ok(())
}

/// 201 when added, 200 when the same body exists under this name and version, 409 when
/// another one does, 400 when the body does not compile, 413 when it is too large.
async fn add(
    State(s): State<Arc<AdminState>>,
    Json(req): Json<AddSchemaBody>,
) -> Result<(StatusCode, Json<SchemaSummary>), AdminError> {
    checked_identity(&req.name, &req.version)?;
    let reason = reason_or(req.reason, "added via admin API")?;
    compile(&req.body).map_err(|e| match e {
        CompileError::TooLarge(_) => AdminError::TooLarge(e.to_string()),
        other => AdminError::BadRequestDetail(other.to_string()),
    })?;
    let mut tx = s.pool.begin().await?;
    db::lock_name(&mut tx, &req.name).await?;
    if let Some(added) = db::insert(&mut tx, &req.name, &req.version, &req.body).await? {
        let target = format!("{}@{}", req.name, req.version);
        audit_and_commit(tx, "schema_add", &target, None, &reason).await?;
        tracing::info!(schema = %target, schema_id = %added.schema_id, "schema added");
        return Ok((StatusCode::CREATED, Json(added)));
    }
    let (existing, body) =
        db::get(&mut tx, &req.name, &req.version)
            .await?
            .ok_or(AdminError::Conflict(
                "the version was deleted meanwhile; retry",
            ))?;
    if body == req.body {
        Ok((StatusCode::OK, Json(existing)))
    } else {
        Err(AdminError::ConflictDetail(format!(
            "{}@{} exists with another body; a version never changes, add a new version",
            req.name, req.version
        )))
    }
}

async fn list(State(s): State<Arc<AdminState>>) -> Result<Json<Vec<SchemaSummary>>, AdminError> {
    Ok(Json(db::list(&s.pool).await?))
}

/// The producers and config streams whose binding picks schema version `id` of `name` now.
async fn users(
    conn: &mut PgConnection,
    s: &AdminState,
    name: &str,
    id: Uuid,
) -> Result<(Vec<Uuid>, Vec<String>), sqlx::Error> {
    let versions = db::versions_of(conn, &[name.to_string()]).await?;
    let picks = |text: &str| {
        text.parse::<Binding>()
            .ok()
            .and_then(|b| b.pick(&versions).map(|v| v.schema_id))
            == Some(id)
    };
    let producers = db::producers_bound_to_name(conn, name)
        .await?
        .into_iter()
        .filter(|(_, text)| picks(text))
        .map(|(p, _)| p)
        .collect();
    let streams = s
        .stream_schemas
        .iter()
        .filter(|(_, text)| picks(text))
        .map(|(stream, _)| stream.clone())
        .collect();
    Ok((producers, streams))
}

async fn show(
    State(s): State<Arc<AdminState>>,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<SchemaDetail>, AdminError> {
    let mut conn = s.pool.acquire().await?;
    let (summary, body) = db::get(&mut conn, &name, &version)
        .await?
        .ok_or(AdminError::NotFound("schema version"))?;
    let (bound_producers, bound_streams) = users(&mut conn, &s, &name, summary.schema_id).await?;
    Ok(Json(SchemaDetail {
        summary,
        body,
        bound_producers,
        bound_streams,
    }))
}

/// 204 when deleted, 409 while a producer's or a stream's binding picks it, 404.
async fn remove(
    State(s): State<Arc<AdminState>>,
    Path((name, version)): Path<(String, String)>,
    Query(q): Query<OptionalReason>,
) -> Result<StatusCode, AdminError> {
    let reason = reason_or(q.reason, "deleted via admin API")?;
    let mut tx = s.pool.begin().await?;
    db::lock_name(&mut tx, &name).await?;
    let (summary, _) = db::get(&mut tx, &name, &version)
        .await?
        .ok_or(AdminError::NotFound("schema version"))?;
    let (producers, streams) = users(&mut tx, &s, &name, summary.schema_id).await?;
    if !producers.is_empty() || !streams.is_empty() {
        let mut who: Vec<String> = producers
            .iter()
            .take(5)
            .map(|p| format!("producer {p}"))
            .collect();
        who.extend(
            streams
                .iter()
                .map(|st| format!("stream {st} (ingest.schemas)")),
        );
        return Err(AdminError::ConflictDetail(format!(
            "{name}@{version} is in use by {} producer(s) and {} stream(s): {}; bind them to another version, or deprecate it instead",
            producers.len(),
            streams.len(),
            who.join(", ")
        )));
    }
    db::delete(&mut tx, summary.schema_id).await?;
    audit_and_commit(
        tx,
        "schema_delete",
        &format!("{name}@{version}"),
        None,
        &reason,
    )
    .await?;
    tracing::info!(schema = %format!("{name}@{version}"), "schema deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn deprecate(
    State(s): State<Arc<AdminState>>,
    Path((name, version)): Path<(String, String)>,
    Json(req): Json<OptionalReason>,
) -> Result<Json<SchemaSummary>, AdminError> {
    let reason = reason_or(req.reason, "deprecated via admin API")?;
    let mut tx = s.pool.begin().await?;
    let (summary, changed) = db::deprecate(&mut tx, &name, &version, &reason)
        .await?
        .ok_or(AdminError::NotFound("schema version"))?;
    if changed {
        let target = format!("{name}@{version}");
        record(&mut tx, "schema_deprecate", &target, None, &reason).await?;
        tracing::info!(schema = %target, "schema deprecated");
    }
    tx.commit().await?;
    Ok(Json(summary))
}

/// Binds (or with `null` unbinds) a producer. 409 when no version matches the binding or it
/// would pick a deprecated version; 404 when the producer does not exist.
async fn bind(
    State(s): State<Arc<AdminState>>,
    Path(producer_id): Path<Uuid>,
    Json(req): Json<BindBody>,
) -> Result<Json<BindResponse>, AdminError> {
    let reason = reason_or(req.reason, "bound via admin API")?;
    let binding = req
        .schema
        .as_deref()
        .map(|t| t.parse::<Binding>())
        .transpose()
        .map_err(|e| AdminError::BadRequestDetail(e.to_string()))?;
    let mut tx = s.pool.begin().await?;
    if let Some(b) = &binding {
        db::lock_name(&mut tx, &b.name).await?;
        let versions = db::versions_of(&mut tx, std::slice::from_ref(&b.name)).await?;
        let picked = b.pick(&versions).ok_or_else(|| {
            AdminError::ConflictDetail(format!(
                "no version of schema {} matches binding {b}; add one first",
                b.name
            ))
        })?;
        if picked.deprecated {
            return Err(AdminError::ConflictDetail(format!(
                "binding {b} picks {}@{}, which is deprecated; deprecated versions take no new bindings",
                b.name, picked.version
            )));
        }
    }
    let text = binding.as_ref().map(Binding::to_string);
    if !db::bind(&mut tx, producer_id, text.as_deref()).await? {
        return Err(AdminError::NotFound("producer"));
    }
    let audit = format!("schema {}: {reason}", text.as_deref().unwrap_or("none"));
    audit_and_commit(
        tx,
        "schema_bind",
        &producer_id.to_string(),
        Some(producer_id),
        &audit,
    )
    .await?;
    tracing::info!(producer = %producer_id, schema = ?text, "producer schema binding set");
    Ok(Json(BindResponse {
        producer_id,
        schema: text,
    }))
}
