//! Postgres queries of the schema registry: the admin API's management queries (each given the
//! caller's transaction, so it can write its audit row in the same one) and the lookups of the
//! ingest path.

use chrono::{DateTime, Utc};
use fdc_common::schema_binding::AsVersion;
use semver::Version;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One schema version as the admin API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SchemaSummary {
    pub schema_id: Uuid,
    pub name: String,
    pub version: String,
    pub deprecated: bool,
    pub created_at: DateTime<Utc>,
}

/// A version of a schema name, for resolving bindings (no body).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    pub schema_id: Uuid,
    pub name: String,
    pub version: Version,
    pub deprecated: bool,
}

impl AsVersion for VersionRow {
    fn version(&self) -> &Version {
        &self.version
    }
    fn deprecated(&self) -> bool {
        self.deprecated
    }
}

type SummaryRow = (Uuid, String, String, bool, DateTime<Utc>);

fn summary((schema_id, name, version, deprecated, created_at): SummaryRow) -> SchemaSummary {
    SchemaSummary {
        schema_id,
        name,
        version,
        deprecated,
        created_at,
    }
}

const SUMMARY: &str =
    "SELECT schema_id, name, version, deprecated_at IS NOT NULL, created_at FROM schemas";

/// Serializes changes to the versions and bindings of one schema name (adding, deleting,
/// binding), until the transaction ends.
pub async fn lock_name(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('fdc-schema:' || $1, 0))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts a version unless `name@version` exists; `None` when it does.
pub async fn insert(
    conn: &mut PgConnection,
    name: &str,
    version: &str,
    body: &Value,
) -> Result<Option<SchemaSummary>, sqlx::Error> {
    let row: Option<SummaryRow> = sqlx::query_as(
        "INSERT INTO schemas (schema_id, name, version, body) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name, version) DO NOTHING
         RETURNING schema_id, name, version, deprecated_at IS NOT NULL, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(version)
    .bind(body)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(summary))
}

/// One version with its body.
pub async fn get(
    conn: &mut PgConnection,
    name: &str,
    version: &str,
) -> Result<Option<(SchemaSummary, Value)>, sqlx::Error> {
    let row: Option<(Uuid, String, String, bool, DateTime<Utc>, Value)> = sqlx::query_as(
        "SELECT schema_id, name, version, deprecated_at IS NOT NULL, created_at, body
           FROM schemas WHERE name = $1 AND version = $2",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(a, b, c, d, e, body)| (summary((a, b, c, d, e)), body)))
}

/// Every version, by name then version (semver order; versions that do not parse last).
pub async fn list(pool: &PgPool) -> Result<Vec<SchemaSummary>, sqlx::Error> {
    let rows: Vec<SummaryRow> = sqlx::query_as(SUMMARY).fetch_all(pool).await?;
    let mut list: Vec<SchemaSummary> = rows.into_iter().map(summary).collect();
    list.sort_by(|a, b| {
        let v = |s: &SchemaSummary| Version::parse(&s.version).ok();
        (&a.name, v(a).is_none(), v(a)).cmp(&(&b.name, v(b).is_none(), v(b)))
    });
    Ok(list)
}

/// Marks a version deprecated (keeping the first time and reason); `None` when it does not
/// exist, else the version and whether this call deprecated it.
pub async fn deprecate(
    conn: &mut PgConnection,
    name: &str,
    version: &str,
    reason: &str,
) -> Result<Option<(SchemaSummary, bool)>, sqlx::Error> {
    let changed: Option<SummaryRow> = sqlx::query_as(
        "UPDATE schemas SET deprecated_at = now(), deprecated_reason = $3
          WHERE name = $1 AND version = $2 AND deprecated_at IS NULL
         RETURNING schema_id, name, version, true, created_at",
    )
    .bind(name)
    .bind(version)
    .bind(reason)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = changed {
        return Ok(Some((summary(row), true)));
    }
    Ok(get(conn, name, version).await?.map(|(s, _)| (s, false)))
}

pub async fn delete(conn: &mut PgConnection, schema_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM schemas WHERE schema_id = $1")
        .bind(schema_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The versions of each of `names` (versions that are not semver are left out: no binding can
/// pick them).
pub async fn versions_of(
    conn: &mut PgConnection,
    names: &[String],
) -> Result<Vec<VersionRow>, sqlx::Error> {
    let rows: Vec<(Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT schema_id, name, version, deprecated_at IS NOT NULL
           FROM schemas WHERE name = ANY($1)",
    )
    .bind(names)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(schema_id, name, version, deprecated)| {
            Some(VersionRow {
                schema_id,
                name,
                version: Version::parse(&version).ok()?,
                deprecated,
            })
        })
        .collect())
}

/// The producers whose binding names schema `name`, with their binding.
pub async fn producers_bound_to_name(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT producer_id, schema_binding FROM producers
          WHERE split_part(schema_binding, '@', 1) = $1 ORDER BY producer_id",
    )
    .bind(name)
    .fetch_all(conn)
    .await
}

/// Sets a producer's binding (`None`: unbound); false when the producer does not exist.
pub async fn bind(
    conn: &mut PgConnection,
    producer_id: Uuid,
    binding: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE producers SET schema_binding = $2 WHERE producer_id = $1")
        .bind(producer_id)
        .bind(binding)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// The binding of each of `producers` that exists (`None`: unbound).
pub async fn bindings_of(
    pool: &PgPool,
    producers: &[Uuid],
) -> Result<Vec<(Uuid, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT producer_id, schema_binding FROM producers WHERE producer_id = ANY($1)")
        .bind(producers)
        .fetch_all(pool)
        .await
}

/// The body of each of `ids` that exists, with its `name@version`.
pub async fn bodies(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<Vec<(Uuid, String, Value)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT schema_id, name || '@' || version, body FROM schemas WHERE schema_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await
}
