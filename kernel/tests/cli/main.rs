//! The `fdc-kernel` binary's command line: subcommands, exit codes and the guidance its
//! errors give.
//!
//! One module per concern; a test runs as `<module>::<test>`.

#[path = "../support/mod.rs"]
mod support;

mod binary;
mod cli_guidance;
