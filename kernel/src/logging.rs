//! JSON (or text) logs through tracing. `RUST_LOG` wins over `log.level`.
//!
//! Besides `log.level`, the default filter quiets two sources of noise: Postgres NOTICEs
//! (`relation … already exists, skipping` on every migration) and sqlx's pool warnings, which
//! repeat per connection attempt what the kernel already reports once (readiness, the writer's
//! outage warning). A `log.level` that names `sqlx` itself, or `RUST_LOG`, brings them back.
//! Text logs use colour only when stderr is a terminal.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

use fdc_common::config::{LogConfig, LogFormat};

/// Directives added to `log.level` unless it mentions sqlx.
const QUIET: &str = "sqlx::postgres::notice=warn,sqlx::pool=error,sqlx_core::pool=error";

static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The filter `log.level` gives (without `RUST_LOG`).
pub fn filter_directives(level: &str) -> String {
    if level.contains("sqlx") {
        level.to_string()
    } else {
        format!("{level},{QUIET}")
    }
}

pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter_directives(&config.level)))
        .unwrap_or_else(|_| EnvFilter::new(filter_directives("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, `dev`) keeps the first subscriber.
    let installed = match config.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    if installed.is_ok() {
        ACTIVE.store(true, Ordering::SeqCst);
    }
}

/// True once [`init`] installed a subscriber in this process: errors then go to the log (in
/// its format), not as a second, plain-text line on stderr.
pub fn active() -> bool {
    ACTIVE.load(Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_filter_quiets_notices_and_pool_warnings_unless_sqlx_is_named() {
        assert_eq!(
            filter_directives("info"),
            "info,sqlx::postgres::notice=warn,sqlx::pool=error,sqlx_core::pool=error"
        );
        assert_eq!(filter_directives("info,sqlx=debug"), "info,sqlx=debug");
        EnvFilter::try_new(filter_directives("fdc_kernel=debug,warn")).unwrap();
    }
}
