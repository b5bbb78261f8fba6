//! Producer auth end to end: tokens on the ingest path, registration, the admin API,
//! pre-approval, auth on a Redis Cluster, key interop with openssl, and auth during a Postgres
//! outage. Every test's logs are captured (`auth_support::logs`) and scanned for secrets.
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../auth_support/mod.rs"]
mod auth_support;
#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../support/mod.rs"]
mod support;

mod auth_admin;
mod auth_after_migrations;
mod auth_cluster;
mod auth_ingest;
mod auth_preapprove;
mod auth_register;
mod fault_auth_outage;
mod keys_interop;
