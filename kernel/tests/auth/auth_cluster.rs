//! Auth on a Redis Cluster (three primaries, a replica each): a producer registers its key
//! with the reference CLI over `redis+cluster://`, is approved, and publishes signed events to
//! streams on different primaries; a bad token is dead-lettered in its stream's slot; and
//! registration goes on after the primary of the registration stream fails over. Under the
//! fault tests' lock: six Redis servers are a load.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::auth_support::{enable_admin, kernel_cli, run_cli, ADMIN_TOKEN};
use crate::fault_support::{metric, serial, start_ready, WAIT};
use crate::support::*;
use fdc_common::keys;
use fdc_kernel::service::RunningKernel;
use fdc_testenv::{PostgresServer, RedisCluster};
use uuid::Uuid;

/// Events each stream gets with the issued token.
const PER_STREAM: usize = 20;

// Multi-threaded: the test blocks on the CLI processes while the kernel runs on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_registers_and_publishes_over_a_cluster_and_bad_tokens_die_in_their_slot() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    // The first tags that land on a primary not yet used: one stream on each primary.
    let mut streams: Vec<String> = Vec::new();
    let mut owners = HashSet::new();
    for i in 0..64 {
        let stream = format!("events:{{s{i}}}");
        if owners.insert(cluster.primary_of(&stream).await.unwrap()) {
            streams.push(stream);
        }
    }
    assert_eq!(streams.len(), 3, "one stream on each primary");

    let dir = tempfile::tempdir().unwrap();
    let (kernel, admin) = start_kernel(&cluster, &postgres, &streams, dir.path()).await;
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();

    let producer_dir = dir.path().join("producer");
    let fp = keys::keygen(&producer_dir, false).unwrap().fingerprint;
    let register = || register_cli(&cluster.url(), &producer_dir, "edge-1");
    let (code, out) = run_cli(register());
    assert_eq!(code, 2, "pending exits 2: {out}");
    let registration: Uuid = sqlx::query_scalar(
        "SELECT registration_id FROM producer_registrations WHERE fingerprint = $1 AND status = 'pending'",
    )
    .bind(&fp)
    .fetch_one(&pg)
    .await
    .unwrap();
    let approved = reqwest::Client::new()
        .post(format!(
            "http://{admin}/v1/registrations/{registration}/approve"
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "reason": "cluster test" }))
        .send()
        .await
        .unwrap();
    assert_eq!(approved.status().as_u16(), 200);
    let (code, out) = run_cli(register());
    assert_eq!(code, 0, "issued: {out}");
    let token_file = producer_dir.join("token");
    // Both replies went to the key's reply stream, in its own slot.
    let reply_key = format!("fdc:register:reply:{fp}");
    let replies = read_stream(&cluster.owner_conn(&reply_key).await.unwrap(), &reply_key).await;
    let statuses: Vec<&str> = replies.iter().map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["pending", "issued"]);

    let garbage = dir.path().join("garbage-token");
    std::fs::write(&garbage, "garbage-not-a-jwt\n").unwrap();
    for stream in &streams {
        let lines: Vec<String> = (0..PER_STREAM)
            .map(|n| format!(r#"{{"n": {n}}}"#))
            .collect();
        publish_cli(&cluster.url(), &token_file, stream, &lines, false);
        publish_cli(
            &cluster.url(),
            &garbage,
            stream,
            &[r#"{"n": -1}"#.into()],
            true,
        );
    }

    let sent = (streams.len() * PER_STREAM) as i64;
    let producer: Uuid =
        sqlx::query_scalar("SELECT producer_id FROM producers WHERE name = 'edge-1'")
            .fetch_one(&pg)
            .await
            .unwrap();
    let mine = format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'");
    assert_eq!(wait_for(WAIT, sent, || count(&pg, &mine)).await, sent);
    for stream in &streams {
        let conn = cluster.owner_conn(stream).await.unwrap();
        assert_eq!(
            wait_for(WAIT, 0, || pending(&conn, stream, "kernel")).await,
            0,
            "{stream}: entries left pending"
        );
        let letters = read_stream(&conn, &format!("{stream}:dlq")).await;
        assert_eq!(letters.len(), 1, "dead letters of {stream}");
        assert_eq!(letters[0]["error"], "auth");
        assert_eq!(letters[0]["detail"], "malformed");
        assert_eq!(&letters[0]["source_stream"], stream);
        assert!(!letters[0].contains_key("token"));
        let from_stream = format!(
            "SELECT count(*) FROM events WHERE producer_id = '{producer}' AND source_stream = '{stream}'"
        );
        assert_eq!(count(&pg, &from_stream).await, PER_STREAM as i64);
    }
    assert_eq!(count(&pg, "SELECT count(*) FROM events").await, sent);
    // Re-publish writes its one stream through the cluster connection too.
    let republished = cluster.owner_conn("events:stored").await.unwrap();
    assert_eq!(
        wait_for(WAIT, sent, || xlen(&republished, "events:stored")).await,
        sent
    );
    kernel.shutdown().await;
}

/// The primary owning `fdc:register` killed with `kill -9`: its replica takes over, the
/// kernel's registration service follows it (a failed read restarts the service, which reads
/// the slot map again), and a request sent after the failover is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_goes_on_after_the_primary_of_its_stream_fails_over() {
    let _serial = serial().await;
    let (cluster, postgres) = tokio::join!(RedisCluster::start(), PostgresServer::start());
    let (mut cluster, postgres) = (cluster.unwrap(), postgres.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let (kernel, _) = start_kernel(&cluster, &postgres, &["events:{s0}".into()], dir.path()).await;
    let pg = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let url = cluster.url();
    let register = |name: &str| {
        let key_dir = dir.path().join(name);
        keys::keygen(&key_dir, false).unwrap();
        let (code, out) = run_cli(register_cli(&url, &key_dir, name));
        assert_eq!(code, 2, "{name}: pending exits 2: {out}");
    };
    register("before");

    let victim = cluster.primary_of("fdc:register").await.unwrap();
    cluster.kill(victim);
    let heir = cluster
        .wait_failover("fdc:register", Duration::from_secs(30))
        .await
        .unwrap();
    assert_ne!(heir, victim);
    register("after");

    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM producer_registrations ORDER BY name")
            .fetch_all(&pg)
            .await
            .unwrap();
    assert_eq!(names, ["after", "before"]);
    let pending = metric(
        kernel.http_addr,
        "kernel_auth_register_total{status=\"pending\"}",
    )
    .await;
    assert_eq!(pending, 2.0, "each request answered once");
    kernel.shutdown().await;
}

/// A ready kernel with auth (and its admin API) on `cluster`, reading `streams` and
/// re-publishing to `events:stored`; where the admin API listens.
async fn start_kernel(
    cluster: &RedisCluster,
    postgres: &PostgresServer,
    streams: &[String],
    dir: &Path,
) -> (RunningKernel, SocketAddr) {
    let mut config = kernel_config(&cluster.url(), &postgres.url());
    enable_auth(&mut config, dir);
    config.ingest.streams = streams.to_vec();
    config.republish.enabled = true;
    config.republish.stream = "events:stored".into();
    enable_admin(&mut config, dir);
    config.validate().unwrap();
    let kernel = start_ready(config).await;
    let admin = kernel.admin_addr.expect("the admin API runs");
    (kernel, admin)
}

/// `fdc-kernel register` of the key in `key_dir` as `name`, over `url`.
fn register_cli(url: &str, key_dir: &Path, name: &str) -> std::process::Command {
    let mut c = kernel_cli();
    c.args(["register", "--name", name, "--timeout", "30s"])
        .arg("--key")
        .arg(key_dir)
        .env("FDC_REDIS__URL", url);
    c
}

/// `fdc-kernel publish` of `lines` (one event each) to `stream` over `url`, with the token in
/// `token_file`; `force` publishes a token the kernel will refuse.
fn publish_cli(url: &str, token_file: &Path, stream: &str, lines: &[String], force: bool) {
    let mut c = kernel_cli();
    c.arg("publish")
        .arg("--token-file")
        .arg(token_file)
        .args(["--stream", stream])
        .env("FDC_REDIS__URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if force {
        c.arg("--force");
    }
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        for line in lines {
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
