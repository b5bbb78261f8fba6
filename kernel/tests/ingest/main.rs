//! End-to-end ingest through the library and the binary's HTTP: storage, redelivery,
//! claims, lifecycle, migrations of a populated database, the bounded entry reader, readiness,
//! stalls and hostile input.
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../support/mod.rs"]
mod support;

mod cancelled_write;
mod claims;
mod discovery;
mod entry_conn;
mod hostile_input;
mod ingest;
mod lifecycle;
mod migrations;
mod payload_bounds;
mod readiness;
mod redelivery;
mod stall;
