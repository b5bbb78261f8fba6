//! The `auth` config section lives with the rest of the schema in [`fdc_common::config::auth`];
//! re-exported here so `auth::config::…` paths keep working.

pub use fdc_common::config::auth::*;
