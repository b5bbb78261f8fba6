//! The real `fdc-kernel` binary: config from the environment, clear config errors, migrate,
//! and a SIGTERM that loses nothing.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;
use fdc_testenv::ports::free_port;
use serde_json::json;
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_fdc-kernel");
const WAIT: Duration = Duration::from_secs(60);

/// `fdc-kernel <args>` run to its end with only `vars` in its environment.
fn run_bin(args: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

fn kernel(env: &TestEnv, http_port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .env_clear()
        .env("FDC_REDIS__URL", env.redis.url())
        .env("FDC_POSTGRES__URL", env.postgres.url())
        .env("FDC_HTTP__LISTEN", format!("127.0.0.1:{http_port}"))
        .env("FDC_INGEST__CONSUMER", "binary-test")
        .env("FDC_INGEST__BATCH_MAX_SIZE", "100")
        .env("FDC_LOG__LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn fewer_connections_than_writer_lanes_is_a_warning_from_check_config_and_at_start() {
    let warning = "postgres.max_connections (6) is not above ingest.writers (8)";
    let lanes = [("FDC_INGEST__WRITERS", "8")];
    let out = run_bin(&["check-config"], &lanes);
    assert!(out.status.success(), "{out:?}");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.starts_with(&format!("# warning: {warning}")),
        "{shown}"
    );
    assert!(
        shown.contains("set postgres.max_connections to 10"),
        "{shown}"
    );

    let env = TestEnv::start().await.unwrap();
    let vars = [("FDC_INGEST__WRITERS".to_string(), "8".to_string())];
    let mut kernel = KernelProcess::spawn(
        std::path::Path::new(BIN),
        &env.redis.url(),
        &env.postgres.url(),
        "warned",
        &vars,
        None,
    )
    .unwrap();
    kernel.wait_ready(WAIT).await.unwrap();
    let log = kernel.log();
    assert!(log.contains(warning), "{log}");
    // The default pool has room for the default lanes: no warning.
    let out = run_bin(&["check-config"], &[]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("# warning:"));
}

#[test]
fn check_config_names_the_bad_key_and_redacts_secrets() {
    let out = run_bin(&["check-config"], &[("FDC_INGEST__BATCH_MAX_SIZE", "0")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ingest.batch_max_size"), "{err}");
    assert!(err.contains("fix:"), "{err}");

    let out = run_bin(&["check-config"], &[("FDC_INGEST__BATCH_MAX_WAIT", "soon")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("batch_max_wait"), "{err}");

    let out = run_bin(
        &["check-config", "--config", "/nonexistent/kernel.yaml"],
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kernel.yaml"));

    let out = run_bin(
        &["check-config"],
        &[
            ("FDC_POSTGRES__URL", "postgres://fdc:hunter2@db:5432/fdc"),
            ("FDC_INGEST__STREAMS", "[a, b]"),
        ],
    );
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("postgres://fdc:***@db:5432/fdc"), "{shown}");
    assert!(
        shown.contains("- a\n") && shown.contains("- b\n"),
        "{shown}"
    );

    let out = run_bin(
        &["check-config"],
        &[
            (
                "FDC_POSTGRES__URL",
                "postgres://db/fdc?user=fdc&password=hunter2",
            ),
            // Kubernetes service links for a Service named `fdc` are not config keys.
            ("FDC_SERVICE_HOST", "10.0.0.1"),
            ("FDC_PORT", "tcp://10.0.0.1:8080"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn check_config_opens_the_key_files_it_names() {
    let out = run_bin(
        &["check-config"],
        &[
            ("FDC_AUTH__ENABLED", "true"),
            ("FDC_AUTH__SIGNING_KEY", "/nonexistent/issuer.key"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.signing_key"), "{err}");
    assert!(err.contains("/nonexistent/issuer.key"), "{err}");
    assert!(err.contains("fix:"), "{err}");
}

#[test]
fn the_shipped_config_file_is_valid() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/kernel.yaml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", file])
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent() {
    let env = TestEnv::start().await.unwrap();
    for _ in 0..2 {
        let out = run_bin(&["migrate"], &[("FDC_POSTGRES__URL", &env.postgres.url())]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pg = env.pg().await;
    assert_eq!(
        count(&pg, "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('events','event_tags','event_index','subjects','tags','producers','schemas')").await,
        7
    );
}

#[tokio::test]
async fn sigterm_finishes_the_batch_in_flight_and_loses_nothing() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let port = free_port().unwrap();
    let mut child = kernel(&env, port).spawn().unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        wait_for(WAIT, 200, || async { http_get(addr, "/readyz").await.0 }).await,
        200
    );

    let total = 30_000i64;
    let now = now_ns();
    let entries: Vec<_> = (0..total)
        .map(|i| data_fields(Uuid::now_v7(), now, None, &[], json!({ "i": i })))
        .collect();
    publish(&redis, "events", &entries).await;
    let pg = env.pg().await;
    let started = wait_for(WAIT, true, || async {
        count(&pg, "SELECT count(*) FROM events").await > 500
    })
    .await;
    assert!(started);

    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");

    // Everything acknowledged is stored; the rest is pending or not yet delivered.
    let stored = count(&pg, "SELECT count(*) FROM events").await;
    let pending_after = pending(&redis, "events", "kernel").await;
    let lag = group_state(&redis, "events")
        .await
        .1
        .expect("Redis reports the group's lag");
    assert_eq!(
        pending_after, 0,
        "the batch in flight was finished and acknowledged"
    );
    assert_eq!(stored + pending_after + lag, total);
    assert!(
        stored < total,
        "the shutdown came before the backlog was drained"
    );

    // A restart picks up the rest: every event exactly once.
    let mut child = kernel(&env, port).spawn().unwrap();
    assert_eq!(
        wait_for(WAIT, total, || count(&pg, "SELECT count(*) FROM events")).await,
        total
    );
    assert_eq!(
        count(&pg, "SELECT count(DISTINCT event_id) FROM events").await,
        total
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
