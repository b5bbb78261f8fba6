//! The spill byte store through its public API, on real files: the record codec, a
//! model-based test with crashes, recovery of damaged directories, and the store's behaviour.
//! (Replay and the config checks run end to end in the kernel's `tests/spill/`.)
//!
//! One module per concern; a test runs as `<module>::<test>`.

mod spill_codec;
mod spill_model;
mod spill_recovery;
mod spill_store;
