//! The spill: the byte store (codec, model, recovery, store) and, end to end, its
//! replay and its config checks.
//!
//! One module per concern; a test runs as `<module>::<test>`.

mod spill_codec;
mod spill_config;
mod spill_model;
mod spill_recovery;
mod spill_replay;
mod spill_store;
