//! `/readyz` answers from memory in every state: a silent or refusing Postgres makes it answer
//! 503 with the cause at once, never time out the kubelet's probe.

use std::time::{Duration, Instant};

use crate::support::*;
use fdc_kernel::service;

const WAIT: Duration = Duration::from_secs(30);
/// The chart's probes time out after 2 s; the kernel answers well within this.
const PROMPT: Duration = Duration::from_millis(500);

/// `/readyz` until its body contains `want` (or WAIT passes); every answer must be a prompt 503.
async fn readyz_until(addr: std::net::SocketAddr, want: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let asked = Instant::now();
        let (status, body) = http_get(addr, "/readyz").await;
        let took = asked.elapsed();
        assert!(took < PROMPT, "/readyz took {took:?}: {body}");
        assert_eq!(status, 503, "{body}");
        if body.contains(want) || Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_answers_at_once_with_the_cause_while_postgres_is_silent() {
    let env = TestEnv::start().await.unwrap();
    // Accepts connections (the kernel's backlog) and never answers: a silent network.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut config = env.config();
    config.postgres.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    config.postgres.connect_timeout = Duration::from_secs(1);
    let kernel = service::start(config).await.unwrap();
    let body = readyz_until(
        kernel.http_addr,
        &format!("Postgres at 127.0.0.1:{port} unreachable: no connection within 1s"),
    )
    .await;
    assert!(
        body.contains(&format!("Postgres at 127.0.0.1:{port} unreachable")),
        "{body}"
    );
    assert!(body.contains("migrations not applied yet"), "{body}");
    assert!(!body.contains("Redis"), "Redis answers: {body}");
    kernel.shutdown().await;
}

#[tokio::test]
async fn readyz_names_a_refusing_postgres_and_recovers() {
    let mut env = TestEnv::start().await.unwrap();
    let kernel = service::start(env.config()).await.unwrap();
    let a = kernel.http_addr;
    assert_eq!(
        wait_for(WAIT, 200, || async { http_get(a, "/readyz").await.0 }).await,
        200
    );
    env.postgres.kill();
    // The probe notices within its period.
    assert_eq!(
        wait_for(WAIT, 503, || async { http_get(a, "/readyz").await.0 }).await,
        503
    );
    let refused = std::io::Error::from_raw_os_error(libc::ECONNREFUSED).to_string();
    let body = readyz_until(a, &refused).await;
    assert!(
        body.contains(&format!(
            "Postgres at 127.0.0.1:{} unreachable: {refused}",
            env.postgres.port()
        )),
        "{body}"
    );
    env.postgres.restart().await.unwrap();
    assert_eq!(
        wait_for(WAIT, 200, || async { http_get(a, "/readyz").await.0 }).await,
        200
    );
    kernel.shutdown().await;
}
