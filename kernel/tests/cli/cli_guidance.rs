//! What a newcomer sees from the `fdc-kernel` binary: usage instead of a surprise service,
//! errors that name the server and the cause once, `check-config` that checks what `run`
//! checks, `publish` that refuses what would be dead-lettered.

use std::process::{Command, Output, Stdio};

use fdc_testenv::ports::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_fdc-kernel");

fn bin() -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().stdin(Stdio::null());
    c
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bare_fdc_kernel_prints_usage_and_exits_2() {
    let out = bin().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("Usage: fdc-kernel <COMMAND>"), "{shown}");
    assert!(shown.contains("dev"), "{shown}");
}

#[test]
fn migrate_against_a_refused_port_names_the_server_and_the_cause_once_as_json() {
    let port = free_port().unwrap();
    let started = std::time::Instant::now();
    let out = bin()
        .arg("migrate")
        .env(
            "FDC_POSTGRES__URL",
            format!("postgres://fdc:hunter2@127.0.0.1:{port}/fdc"),
        )
        .env("FDC_POSTGRES__CONNECT_TIMEOUT", "60s")
        .output()
        .unwrap();
    assert!(!out.status.success());
    // Refused at once: the 60 s connect timeout is for silent networks only.
    assert!(started.elapsed() < std::time::Duration::from_secs(50));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    let line: serde_json::Value = serde_json::from_str(lines[0]).expect("a JSON log line");
    assert_eq!(line["level"], "ERROR", "{stderr}");
    let error = line["error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
    let cause = std::io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
    assert_eq!(error.matches(&cause).count(), 1, "{error} ({refused})");
    assert!(!error.contains("pool timed out"), "{error}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn check_config_refuses_a_short_admin_token_like_run_and_says_it_does_not_connect() {
    let dir = tempfile::tempdir().unwrap();
    let files = fdc_common::keys::keygen(&dir.path().join("issuer"), false).unwrap();
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "abcdef\n").unwrap();
    let out = bin()
        .arg("check-config")
        .env("FDC_AUTH__ENABLED", "true")
        .env("FDC_AUTH__SIGNING_KEY", &files.private_key)
        .env("FDC_AUTH__ADMIN_TOKEN_FILE", &token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out);
    assert!(err.contains("auth.admin_token_file"), "{err}");
    assert!(err.contains("shorter than 16 characters"), "{err}");

    let out = bin().args(["check-config", "--help"]).output().unwrap();
    assert!(
        text(&out).contains("Does not connect to Redis or Postgres"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_config_echoes_durations_as_written_and_the_effective_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kernel.yaml");
    std::fs::write(&file, "limits:\n  max_past_age: 366d\n").unwrap();
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&file)
        .env("FDC_INGEST__CLAIM_IDLE", "90s")
        .env("HOSTNAME", "kernel-7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("max_past_age: 366d"), "{shown}");
    assert!(shown.contains("claim_idle: 90s"), "{shown}");
    // A default, in its largest whole unit.
    assert!(shown.contains("statement_timeout: 30s"), "{shown}");
    assert!(shown.contains("consumer: kernel-7"), "{shown}");
    assert!(!shown.contains("consumer: null"), "{shown}");
}

#[test]
fn check_config_connect_names_the_server_that_does_not_answer() {
    let port = free_port().unwrap();
    let out = bin()
        .args(["check-config", "--connect"])
        .env("FDC_REDIS__URL", format!("redis://127.0.0.1:{port}/"))
        .env(
            "FDC_POSTGRES__URL",
            format!("postgres://u@127.0.0.1:{port}/db"),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Redis at redis://127.0.0.1:{port}/")),
        "{err}"
    );
    assert!(
        err.contains(&format!("Postgres at 127.0.0.1:{port} unreachable")),
        "{err}"
    );
}

#[test]
fn register_and_publish_need_the_redis_url_and_name_it_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    fdc_common::keys::keygen(dir.path(), false).unwrap();
    let out = bin()
        .args(["register", "--name", "n", "--key"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--redis-url"), "{}", text(&out));

    let port = free_port().unwrap();
    let out = bin()
        .args(["register", "--name", "n", "--key"])
        .arg(dir.path())
        .env("FDC_REDIS__URL", format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("Redis at redis://127.0.0.1:{port}/")),
        "{err}"
    );
    let cause = std::io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
    assert!(err.matches(&cause).count() <= 1, "said once: {err}");
}

#[test]
fn publish_refuses_a_token_the_kernel_would_dead_letter_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "not-a-token\n").unwrap();
    let port = free_port().unwrap();
    let out = bin()
        .args(["publish", "--token-file"])
        .arg(&token)
        .env("FDC_REDIS__URL", format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a well-formed JWT"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(
        !err.contains("Redis at"),
        "refused before connecting: {err}"
    );

    // Forced, it goes on to Redis (which is not there here).
    let out = bin()
        .args(["publish", "--force", "--token-file"])
        .arg(&token)
        .env("FDC_REDIS__URL", format!("redis://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Redis at"),
        "{}",
        text(&out)
    );
}

#[test]
fn keygen_refusing_to_overwrite_mentions_force() {
    let dir = tempfile::tempdir().unwrap();
    fdc_common::keys::keygen(dir.path(), false).unwrap();
    let out = bin()
        .args(["keygen", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--force"), "{err}");
}

#[tokio::test]
async fn migrate_logs_one_json_line_without_postgres_notices() {
    let env = fdc_testenv::TestEnv::start().await.unwrap();
    for round in 0..2 {
        let out = bin()
            .arg("migrate")
            .env("FDC_POSTGRES__URL", env.postgres.url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert!(out.stdout.is_empty(), "everything goes to the log");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        assert_eq!(lines.len(), 1, "round {round}: {stderr}");
        assert_eq!(lines[0]["message"], "migrations applied");
    }
}

#[test]
fn a_fatal_start_error_is_logged_once_as_json() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let closed = free_port().unwrap();
    let out = bin()
        .arg("run")
        .env("FDC_HTTP__LISTEN", addr.to_string())
        .env("FDC_REDIS__URL", format!("redis://127.0.0.1:{closed}/"))
        .env(
            "FDC_POSTGRES__URL",
            format!("postgres://u@127.0.0.1:{closed}/db"),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .filter(|l: &serde_json::Value| l["level"] == "ERROR")
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    let error = errors[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("http.listen {addr}")), "{error}");
    let in_use = std::io::Error::from_raw_os_error(libc::EADDRINUSE).to_string();
    assert_eq!(error.matches(&in_use).count(), 1, "said once: {error}");
}

#[test]
fn run_reports_an_invalid_config_as_one_json_line() {
    let out = bin()
        .arg("run")
        .env("FDC_INGEST__BATCH_MAX_SIZE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    let error = lines[0]["error"].as_str().unwrap();
    assert!(error.contains("ingest.batch_max_size"), "{error}");
    assert!(error.contains("fix:"), "{error}");
}

#[test]
fn dev_smoke_stores_a_sample_event_with_and_without_auth_and_exits_0() {
    for extra in [&[][..], &["--auth"][..]] {
        let out = bin()
            .args(["dev", "--smoke"])
            .args(extra)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.starts_with("smoke test passed: sample event "),
            "{stdout}"
        );
        // Logs on a pipe carry no colour codes.
        assert!(!out.stderr.contains(&0x1b), "{}", text(&out));
    }
}
