//! Names the kernel and the operator must agree on. The kernel serves and exports them; the
//! operator builds pods, probes and HTTP calls against them. Each is written once, here, so a
//! rename on one side cannot silently break the other.

use std::fmt::Display;

/// Prefix of the environment variables that set config keys (`FDC_INGEST__CONSUMER`).
pub const ENV_PREFIX: &str = "FDC_";
/// Separator of the levels of a config key in an environment variable name.
pub const ENV_SEPARATOR: &str = "__";

/// The environment variable that sets the config key `key` (a dotted path):
/// `ingest.consumer` → `FDC_INGEST__CONSUMER`.
pub fn env_name(key: &str) -> String {
    let levels: Vec<String> = key.split('.').map(str::to_ascii_uppercase).collect();
    format!("{ENV_PREFIX}{}", levels.join(ENV_SEPARATOR))
}

/// Prometheus metrics of the kernel (port `http.listen`).
pub const METRICS_PATH: &str = "/metrics";
/// Liveness probe of the kernel.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness probe of the kernel: 503 with the cause while it cannot do its work.
pub const READYZ_PATH: &str = "/readyz";

/// Admin API route that pre-approves a key for a producer (`{id}`: the producer id).
pub const PRODUCER_KEYS_ROUTE: &str = "/v1/producers/{id}/keys";
/// Admin API route of one producer (`GET`): `{"producer_id", "name", "created_at",
/// "last_seen_at", "revoked_at"}`, times in RFC 3339 (`last_seen_at` and `revoked_at` null when
/// never seen / not revoked); 404 for a producer the kernel has no row of.
pub const PRODUCER_ROUTE: &str = "/v1/producers/{id}";
/// Admin API route that revokes a producer (`{id}`: the producer id).
pub const PRODUCER_REVOKE_ROUTE: &str = "/v1/producers/{id}/revoke";

/// [`PRODUCER_KEYS_ROUTE`] for one producer.
pub fn producer_keys_path(producer_id: impl Display) -> String {
    PRODUCER_KEYS_ROUTE.replace("{id}", &producer_id.to_string())
}

/// [`PRODUCER_ROUTE`] for one producer.
pub fn producer_path(producer_id: impl Display) -> String {
    PRODUCER_ROUTE.replace("{id}", &producer_id.to_string())
}

/// [`PRODUCER_REVOKE_ROUTE`] for one producer.
pub fn producer_revoke_path(producer_id: impl Display) -> String {
    PRODUCER_REVOKE_ROUTE.replace("{id}", &producer_id.to_string())
}

/// Admin API route of the schema registry: `POST` adds a version (`{"name", "version",
/// "body", "reason"}`; 201 when added, 200 when the same name, version and body exist, 409 when
/// that version exists with another body, 400 with the compiler's message when the body is not a
/// valid JSON Schema), `GET` lists every version.
pub const SCHEMAS_ROUTE: &str = "/v1/schemas";
/// Admin API route of one schema version (`{name}`, `{version}`): `GET` shows it with its body
/// and the producers bound to it; `DELETE` removes it (409 while a producer or a stream is bound
/// to it).
pub const SCHEMA_ROUTE: &str = "/v1/schemas/{name}/{version}";
/// Admin API route that deprecates one schema version (`POST {"reason"}`): it keeps validating
/// for the producers bound to it, but no new binding may pick it.
pub const SCHEMA_DEPRECATE_ROUTE: &str = "/v1/schemas/{name}/{version}/deprecate";
/// Admin API route that binds a producer to a schema (`POST {"schema": "name@range" | null,
/// "reason"}`; `null` unbinds).
pub const PRODUCER_SCHEMA_ROUTE: &str = "/v1/producers/{id}/schema";

/// [`SCHEMA_ROUTE`] for one schema version.
pub fn schema_path(name: &str, version: &str) -> String {
    SCHEMA_ROUTE
        .replace("{name}", name)
        .replace("{version}", version)
}

/// [`SCHEMA_DEPRECATE_ROUTE`] for one schema version.
pub fn schema_deprecate_path(name: &str, version: &str) -> String {
    SCHEMA_DEPRECATE_ROUTE
        .replace("{name}", name)
        .replace("{version}", version)
}

/// [`PRODUCER_SCHEMA_ROUTE`] for one producer.
pub fn producer_schema_path(producer_id: impl Display) -> String {
    PRODUCER_SCHEMA_ROUTE.replace("{id}", &producer_id.to_string())
}

/// Gauge of the spilled records not yet replayed to Postgres (0 = drained).
pub const SPILL_PENDING_METRIC: &str = "kernel_spill_pending_records";
/// Gauge of the spill records set aside in quarantine files (acknowledged data too).
pub const SPILL_QUARANTINE_METRIC: &str = "kernel_spill_quarantine_files";
/// Gauge set to 1 per stage (`stage="reader"|"writer"`) that keeps failing on the same work.
pub const STALLED_METRIC: &str = "kernel_stalled";
/// Gauge of the entries of a stream not yet delivered to the consumer group (`stream` label;
/// the group's figure, so every replica reports the same).
pub const GROUP_LAG_METRIC: &str = "kernel_group_lag";
/// Gauge of the entries delivered to the consumer group and not yet acknowledged (`stream`).
pub const GROUP_PENDING_METRIC: &str = "kernel_group_pending";
/// Counter of the events stored in Postgres (first sight of their id).
pub const EVENTS_STORED_METRIC: &str = "kernel_events_stored_total";
/// Counter of the entries acknowledged in Redis (stored, duplicate, dead-lettered or spilled).
pub const ACKED_METRIC: &str = "kernel_redis_ack_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_the_prefix_and_the_upper_case_levels() {
        assert_eq!(env_name("ingest.consumer"), "FDC_INGEST__CONSUMER");
        assert_eq!(env_name("postgres.url"), "FDC_POSTGRES__URL");
        assert_eq!(
            env_name("auth.register.reply_prefix"),
            "FDC_AUTH__REGISTER__REPLY_PREFIX"
        );
    }

    #[test]
    fn admin_paths_fill_the_routes() {
        let id = "0190a1b2-0000-7000-8000-000000000001";
        assert_eq!(
            producer_keys_path(id),
            "/v1/producers/0190a1b2-0000-7000-8000-000000000001/keys"
        );
        assert_eq!(
            producer_path(id),
            "/v1/producers/0190a1b2-0000-7000-8000-000000000001"
        );
        assert_eq!(
            producer_revoke_path(id),
            "/v1/producers/0190a1b2-0000-7000-8000-000000000001/revoke"
        );
        assert_eq!(
            producer_schema_path(id),
            "/v1/producers/0190a1b2-0000-7000-8000-000000000001/schema"
        );
        assert_eq!(schema_path("orders", "1.2.0"), "/v1/schemas/orders/1.2.0");
        assert_eq!(
            schema_deprecate_path("orders", "1.2.0"),
            "/v1/schemas/orders/1.2.0/deprecate"
        );
    }
}
