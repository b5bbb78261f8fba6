//! Auth metrics, registered into the kernel's registry (`fdc_kernel::metrics::Metrics`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::metrics::registered;

/// Every `why` label of `kernel_auth_denied_total`, created up front so dashboards show 0.
pub const DENIED_WHY: [&str; 11] = [
    "missing",
    "malformed",
    "algorithm",
    "unknown_kid",
    "signature",
    "expired",
    "not_yet_valid",
    "issuer",
    "audience",
    "claims",
    "revoked",
];

/// Registration reply statuses.
pub const REGISTER_STATUS: [&str; 4] = ["issued", "pending", "denied", "invalid"];
/// Reasons of `denied` registration replies.
pub const REGISTER_DENIED: [&str; 5] = [
    "rejected",
    "revoked",
    "rate_limited",
    "too_many_pending",
    "no_signing_key",
];

#[derive(Clone)]
pub struct AuthMetrics {
    /// `kernel_auth_denied_total{why}`: entries refused for authentication.
    pub denied: IntCounterVec,
    /// `kernel_auth_token_cache_total{result="hit|miss"}`: tokens whose signature was verified
    /// (miss) or accepted on claims verified before (hit: the cache, or earlier in the batch).
    pub token_cache: IntCounterVec,
    /// `kernel_auth_register_total{status}`: registration replies by status.
    pub register: IntCounterVec,
    /// `kernel_auth_admin_unauthorized_total`: admin API calls without a valid admin token.
    pub admin_unauthorized: IntCounter,
    /// `kernel_auth_stale_decisions_total`: entries decided from a producer state older than
    /// `cache_ttl` because Postgres could not be asked (outage).
    pub stale_decisions: IntCounter,
    /// `kernel_auth_undecided_total`: entries of never-seen producers left pending because
    /// Postgres could not be asked (each time one is deferred).
    pub undecided: IntCounter,
    /// `kernel_auth_parked_entries`: undecided entries held for the next batch.
    pub parked: IntGauge,
    /// `kernel_auth_last_seen_failures_total`: failed `last_seen_at` writes (retried).
    pub last_seen_failures: IntCounter,
    /// `kernel_auth_register_resent_total`: registration replies resent for a retried request.
    pub register_resent: IntCounter,
    /// `kernel_auth_register_denied_total{reason}`: registration requests answered `denied`,
    /// by reason (`too_many_pending` and `rate_limited` count floods held off).
    pub register_denied: IntCounterVec,
}

impl AuthMetrics {
    /// Create and register the auth metrics. Fails only when registered twice in `registry`.
    pub fn register(registry: &Registry) -> Result<AuthMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str| registered(registry, IntCounter::new(name, help));
        let by = |name: &str, help: &str, label: &str, values: &[&str]| {
            let vec = registered(
                registry,
                IntCounterVec::new(Opts::new(name, help), &[label]),
            )?;
            // Every label value appears from the start, so a dashboard shows 0 rather than nothing.
            for value in values {
                vec.with_label_values(&[value]);
            }
            Ok::<_, prometheus::Error>(vec)
        };
        let denied = by(
            "kernel_auth_denied_total",
            "Entries refused by authentication, by reason.",
            "why",
            &DENIED_WHY,
        )?;
        let token_cache = by(
            "kernel_auth_token_cache_total",
            "Tokens checked: miss = signature verified, hit = accepted on claims verified before.",
            "result",
            &["hit", "miss"],
        )?;
        let register = by(
            "kernel_auth_register_total",
            "Registration requests answered, by reply status.",
            "status",
            &REGISTER_STATUS,
        )?;
        let register_denied = by(
            "kernel_auth_register_denied_total",
            "Registration requests answered denied, by reason.",
            "reason",
            &REGISTER_DENIED,
        )?;
        let admin_unauthorized = counter(
            "kernel_auth_admin_unauthorized_total",
            "Admin API requests refused for a missing or wrong admin token.",
        )?;
        let stale_decisions = counter(
            "kernel_auth_stale_decisions_total",
            "Entries decided from a producer state older than auth.cache_ttl while Postgres was unavailable.",
        )?;
        let undecided = counter(
            "kernel_auth_undecided_total",
            "Entries of never-seen producers left pending while Postgres was unavailable.",
        )?;
        let parked = registered(
            registry,
            IntGauge::new(
                "kernel_auth_parked_entries",
                "Undecided entries held (pending in Redis) until Postgres answers.",
            ),
        )?;
        let last_seen_failures = counter(
            "kernel_auth_last_seen_failures_total",
            "Failed writes of producers.last_seen_at (kept and retried).",
        )?;
        let register_resent = counter(
            "kernel_auth_register_resent_total",
            "Registration replies resent for a retried identical request.",
        )?;
        Ok(AuthMetrics {
            denied,
            token_cache,
            register,
            admin_unauthorized,
            stale_decisions,
            undecided,
            parked,
            last_seen_failures,
            register_resent,
            register_denied,
        })
    }
}
