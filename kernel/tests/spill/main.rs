//! The spill end to end: its replay into Postgres and its config checks. (The byte store's own
//! tests are in the `fdc-spill` crate, `spill/tests/store/`.)
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../support/mod.rs"]
mod support;

mod spill_config;
mod spill_replay;
