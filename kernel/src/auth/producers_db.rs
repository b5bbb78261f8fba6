//! Postgres queries the authenticator needs: producer rows on first sight and revocation state.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// A producer seen in a verified token: what to create when the row does not exist yet.
#[derive(Debug, Clone)]
pub struct SeenProducer {
    pub producer_id: Uuid,
    pub name: String,
    pub schema: Option<String>,
}

/// Creates missing producer rows and returns, for each id, whether it is revoked.
///
/// One round trip for the whole set: the insert and the select run in one statement. The
/// select does not see rows the same statement inserted (one snapshot); those are new, hence
/// not revoked, so an id absent from the result is reported as not revoked.
pub async fn ensure_and_check(
    pool: &PgPool,
    producers: &[SeenProducer],
) -> Result<HashMap<Uuid, bool>, sqlx::Error> {
    let ids: Vec<Uuid> = producers.iter().map(|p| p.producer_id).collect();
    let names: Vec<String> = producers.iter().map(|p| p.name.clone()).collect();
    let schemas: Vec<Option<String>> = producers.iter().map(|p| p.schema.clone()).collect();
    // `schema` in a token is a schema id, a name or `name@range`; it binds the producer row only
    // when such a schema exists (`fdc_schema_binding`, migrations/0004_schemas.sql).
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        r#"
        WITH seen AS (
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[]) AS s(producer_id, name, schema)
        ), ins AS (
            INSERT INTO producers (producer_id, name, schema_binding, created_at)
            SELECT s.producer_id, s.name, fdc_schema_binding(s.schema), now()
              FROM seen s
            ON CONFLICT (producer_id) DO NOTHING
        )
        SELECT p.producer_id, p.revoked_at IS NOT NULL
          FROM producers p
         WHERE p.producer_id = ANY($1)
        "#,
    )
    .bind(&ids)
    .bind(&names)
    .bind(&schemas)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<Uuid, bool> = ids.into_iter().map(|id| (id, false)).collect();
    out.extend(rows);
    Ok(out)
}

/// Records when producers were last seen (data or heartbeat): `last_seen_at` moves forward to
/// the given time, never back (notes may arrive late, after an outage).
pub async fn touch(pool: &PgPool, seen: &[(Uuid, DateTime<Utc>)]) -> Result<(), sqlx::Error> {
    if seen.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = seen.iter().map(|(id, _)| *id).collect();
    let at: Vec<DateTime<Utc>> = seen.iter().map(|(_, t)| *t).collect();
    sqlx::query(
        "UPDATE producers p SET last_seen_at = s.at
           FROM unnest($1::uuid[], $2::timestamptz[]) AS s(producer_id, at)
          WHERE p.producer_id = s.producer_id
            AND (p.last_seen_at IS NULL OR p.last_seen_at < s.at)",
    )
    .bind(&ids)
    .bind(&at)
    .execute(pool)
    .await?;
    Ok(())
}
