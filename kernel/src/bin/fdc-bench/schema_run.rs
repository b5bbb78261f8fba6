//! The schema drain: the plain backlog, with the stream bound to a realistic JSON Schema of
//! the W1 payload (types, required keys, ranges, an enum, nested objects) in
//! `ingest.schemas`, so the kernel validates every payload (auth stays off). The version is
//! registered before the kernel starts; every stored event must carry its `schema_id`.

use serde_json::{json, Value};

use super::env::RunDb;
use super::BenchError;

/// `name@version` of the schema.
pub const NAME: &str = "w1";
pub const VERSION: &str = "1.0.0";

/// The kernel settings of the run: the W1 stream bound to the schema.
pub fn env() -> Vec<(String, String)> {
    vec![(
        fdc_common::contract::env_name("ingest.schemas.events"),
        format!("{NAME}@{VERSION}"),
    )]
}

/// The W1 payload's schema (draft 2020-12).
pub fn body() -> Value {
    let number = |min: f64, max: f64| json!({"type": "number", "minimum": min, "maximum": max});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["temperature", "humidity", "pressure", "battery", "rssi", "status",
                     "firmware", "sequence", "location", "readings", "flags"],
        "properties": {
            "temperature": number(-50.0, 80.0),
            "humidity": number(0.0, 100.0),
            "pressure": number(800.0, 1100.0),
            "battery": {"type": "integer", "minimum": 0, "maximum": 100},
            "rssi": {"type": "integer", "minimum": -130, "maximum": 0},
            "status": {"enum": ["ok", "degraded", "calibrating", "low-battery"]},
            "firmware": {"type": "string", "pattern": "^v[0-9]+\\.[0-9]+\\.[0-9]+$", "maxLength": 32},
            "sequence": {"type": "integer", "minimum": 0},
            "location": {
                "type": "object",
                "required": ["lat", "lon"],
                "properties": {
                    "lat": number(-90.0, 90.0),
                    "lon": number(-180.0, 180.0),
                    "alt": number(-500.0, 10000.0),
                    "accuracy": {"type": "number", "exclusiveMinimum": 0}
                },
                "additionalProperties": false
            },
            "readings": {
                "type": "object",
                "required": ["co2"],
                "properties": {
                    "co2": {"type": "integer", "minimum": 0, "maximum": 10000},
                    "voc": number(0.0, 100.0),
                    "pm25": number(0.0, 1000.0),
                    "pm10": number(0.0, 1000.0)
                }
            },
            "flags": {
                "type": "object",
                "properties": {"charging": {"type": "boolean"}, "alarm": {"type": "boolean"}},
                "additionalProperties": {"type": "boolean"}
            }
        }
    })
}

/// Registers the schema in the run's (migrated) database, as `fdc-kernel schema add` would.
pub async fn register(db: &RunDb) -> Result<(), BenchError> {
    fdc_kernel::schemas::compile::compile(&body())
        .map_err(|e| BenchError::Check(format!("the bench schema does not compile: {e}")))?;
    sqlx::query("INSERT INTO schemas (schema_id, name, version, body) VALUES ($1, $2, $3, $4)")
        .bind(uuid::Uuid::now_v7())
        .bind(NAME)
        .bind(VERSION)
        .bind(body())
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Every stored event carries the schema's id.
pub async fn verify(db: &RunDb, sent: usize) -> Result<(), BenchError> {
    let validated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events e JOIN schemas s ON s.schema_id = e.schema_id
          WHERE s.name = $1 AND s.version = $2",
    )
    .bind(NAME)
    .bind(VERSION)
    .fetch_one(&db.pool)
    .await?;
    if validated != sent as i64 {
        return Err(BenchError::Check(format!(
            "{validated} events carry the schema id of {NAME}@{VERSION}, want {sent}"
        )));
    }
    Ok(())
}
