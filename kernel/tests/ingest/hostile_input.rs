//! Entries a buggy or hostile producer can write: whatever bytes they hold, they are stored or
//! dead-lettered with a reason and acknowledged within one delivery, never stalling the
//! group; oversized ones are never held whole (peak RSS of the kernel process); dead letters
//! keep a bounded prefix of each field and dead-letter streams are capped.

use std::collections::HashMap;
use std::time::Duration;

use crate::fault_support::{metric, read_without_ack, start_kernel, start_ready, WAIT};

use crate::support::*;
use fdc_common::config::Config;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use uuid::Uuid;

/// An entry's raw fields: (name, value) byte strings.
type RawFields = Vec<(Vec<u8>, Vec<u8>)>;

/// `fields` as raw byte strings.
fn raw(fields: Vec<(String, String)>) -> RawFields {
    fields
        .into_iter()
        .map(|(k, v)| (k.into_bytes(), v.into_bytes()))
        .collect()
}

/// The entry of the report: a valid `data` message plus a field whose *name* is `\xff\xfe`
/// followed by `name`.
fn bad_name_entry() -> RawFields {
    let mut fields = raw(data_fields(
        Uuid::now_v7(),
        now_ns(),
        None,
        &[],
        json!({"payload": {}}),
    ));
    fields.push((b"\xff\xfename".to_vec(), b"v".to_vec()));
    fields
}

fn good_entries(n: usize) -> Vec<Vec<(String, String)>> {
    let now = now_ns();
    (0..n)
        .map(|i| data_fields(Uuid::now_v7(), now, None, &[], json!({ "i": i })))
        .collect()
}

/// Every entry of `stream` as raw (name, value) pairs, oldest first.
async fn raw_entries(redis: &MultiplexedConnection, stream: &str) -> Vec<RawFields> {
    let mut conn = redis.clone();
    let reply: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    reply
        .into_iter()
        .map(|(_, flat)| {
            flat.chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect()
        })
        .collect()
}

fn field(letter: &[(Vec<u8>, Vec<u8>)], name: impl AsRef<[u8]>) -> Option<&[u8]> {
    letter
        .iter()
        .find(|(k, _)| k == name.as_ref())
        .map(|(_, v)| v.as_slice())
}

async fn stored(pg: &sqlx::PgPool) -> i64 {
    count(pg, "SELECT count(*) FROM events").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_field_name_is_dead_lettered_and_the_entries_behind_it_stored() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let a = start_ready(env.config()).await;
    let b = start_ready(env.config()).await;

    publish(&redis, "events", &good_entries(50)).await;
    publish(&redis, "events", &[bad_name_entry()]).await;
    publish(&redis, "events", &good_entries(50)).await;

    let pg = env.pg().await;
    assert_eq!(wait_for(WAIT, 100, || stored(&pg)).await, 100);
    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, "events:dlq")).await, 1);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    let letters = raw_entries(&redis, "events:dlq").await;
    assert_eq!(field(&letters[0], "error"), Some(&b"bad_encoding"[..]));
    // The original field, name bytes as they were.
    assert_eq!(field(&letters[0], b"\xff\xfename"), Some(&b"v"[..]));
    let series = "kernel_redis_dlq_total{reason=\"bad_encoding\"}";
    assert_eq!(
        metric(a.http_addr, series).await + metric(b.http_addr, series).await,
        1.0
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// The startup re-read of the kernel's own pending entries and the XAUTOCLAIM of a dead
/// consumer's entries read such entries the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_entries_pending_on_us_or_on_a_dead_consumer_are_dead_lettered() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let mut config = env.config();
    config.postgres.statement_timeout = Duration::from_secs(1);
    config.shutdown.timeout = Duration::from_secs(1);
    config.ingest.claim_idle = Duration::from_millis(1500);
    config.ingest.claim_interval = Duration::from_millis(200);
    let me = config.ingest.consumer.clone().unwrap();

    // Pending on a dead consumer: good, bad, good.
    publish(&redis, "events", &good_entries(5)).await;
    publish(&redis, "events", &[bad_name_entry()]).await;
    publish(&redis, "events", &good_entries(5)).await;
    read_without_ack(&redis, "ghost", 11).await;
    // Pending on the kernel's own name from an earlier run: bad, good.
    publish(&redis, "events", &[bad_name_entry()]).await;
    publish(&redis, "events", &good_entries(5)).await;
    read_without_ack(&redis, &me, 6).await;
    assert_eq!(pending(&redis, "events", "kernel").await, 17);

    let kernel = start_ready(config).await;
    let pg = env.pg().await;
    assert_eq!(wait_for(WAIT, 15, || stored(&pg)).await, 15);
    assert_eq!(wait_for(WAIT, 2, || xlen(&redis, "events:dlq")).await, 2);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    for letter in raw_entries(&redis, "events:dlq").await {
        assert_eq!(field(&letter, "error"), Some(&b"bad_encoding"[..]));
    }
    assert_eq!(
        metric(kernel.http_addr, "kernel_redis_claimed_total").await,
        11.0
    );
    kernel.shutdown().await;
}

/// `sha256sum` (coreutils) of `bytes`, in hex.
fn sha256sum(bytes: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let out = std::process::Command::new("sha256sum")
        .arg(file.path())
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Asserts that the dead letter `letter` keeps of its field `name`, whose value was `value`,
/// the first 100 bytes, and the whole value's size (`<name>.size`) and SHA-256
/// (`<name>.sha256`).
fn assert_truncated(letter: &RawFields, name: &str, value: &str) {
    assert_eq!(field(letter, name), Some(&value.as_bytes()[..100]));
    assert_eq!(
        field(letter, format!("{name}.size")),
        Some(value.len().to_string().as_bytes())
    );
    assert_eq!(
        field(letter, format!("{name}.sha256")),
        Some(sha256sum(value.as_bytes()).as_bytes())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_a_bounded_prefix_and_the_dlq_is_capped() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let mut config: Config = env.config();
    config.ingest.dlq_field_bytes = 100;
    config.ingest.dlq_max_len = 50;
    let kernel = start_ready(config).await;
    let a = kernel.http_addr;

    // Invalid (bad type), with a 5,000-byte field and a token: within max_entry_bytes.
    let blob: String = (0..5000).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    let mut bad_type = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({"p": 1}));
    bad_type[0].1 = "nonsense".into();
    bad_type.push(("blob".into(), blob.clone()));
    bad_type.push(("token".into(), "secret-token-value".into()));
    // Over max_entry_bytes (64 KiB): one 200,000-byte field.
    let huge: String = (0..200_000)
        .map(|i| (b'0' + (i % 10) as u8) as char)
        .collect();
    let mut too_large = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({"p": 2}));
    too_large.push(("huge".into(), huge.clone()));
    too_large.push(("token".into(), "secret-token-value".into()));
    publish(&redis, "events", &[bad_type, too_large]).await;
    publish(&redis, "events", &good_entries(3)).await;

    let pg = env.pg().await;
    assert_eq!(wait_for(WAIT, 3, || stored(&pg)).await, 3);
    assert_eq!(wait_for(WAIT, 2, || xlen(&redis, "events:dlq")).await, 2);
    let letters = raw_entries(&redis, "events:dlq").await;
    let by_error: HashMap<&[u8], &RawFields> = letters
        .iter()
        .map(|l| (field(l, "error").unwrap(), l))
        .collect();

    let l = by_error[&b"bad_type"[..]];
    assert_truncated(l, "blob", &blob);
    assert_eq!(field(l, "type"), Some(&b"nonsense"[..]));
    assert!(field(l, "type.size").is_none(), "short values are whole");
    assert!(field(l, "token").is_none());

    let l = by_error[&b"too_large"[..]];
    assert_truncated(l, "huge", &huge);
    assert!(field(l, "token").is_none());
    assert!(l.iter().all(|(k, v)| k.len() <= 100 && v.len() <= 200));
    assert!(!l.iter().any(|(_, v)| v == b"secret-token-value"));

    // 400 more letters: the stream stays near its cap (MAXLEN ~ trims whole nodes of up to
    // 100 entries), and every trimmed letter is counted.
    let mut bad: Vec<Vec<(String, String)>> = good_entries(400);
    for e in &mut bad {
        e[0].1 = "nonsense".into();
    }
    publish(&redis, "events", &bad).await;
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    assert_eq!(
        crate::fault_support::wait_metric_at_least(
            a,
            "kernel_redis_dlq_total{reason=\"bad_type\"}",
            401.0
        )
        .await,
        401.0
    );
    let len = xlen(&redis, "events:dlq").await;
    assert!((50..=150).contains(&len), "dead-letter stream length {len}");
    assert_eq!(
        metric(a, "kernel_redis_dlq_trimmed_total").await,
        (402 - len) as f64
    );
    kernel.shutdown().await;
}

/// Peak RSS of the kernel process stays within the bound of docs/operator.md although 32
/// entries of 10 MB wait in the stream and 32 registration requests with a 10 MB `name` wait
/// on the registration stream when a kernel with the default limits (auth on) starts: each is
/// dead-lettered (`too_large`) or answered (`invalid` / `too_large`) and acknowledged, and
/// the normal entries between them are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_entries_and_requests_are_never_held_whole() {
    use fdc_common::keys;
    use fdc_common::token::TokenIssuer;
    use fdc_kernel::auth::registration::request;

    const BIG: usize = 10 * 1024 * 1024;
    const N: usize = 32;
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, files) = env.auth_config(dir.path());
    let issuer = TokenIssuer::new(
        &keys::load_signing_key(&files.private_key).unwrap(),
        TEST_ISSUER,
        TEST_AUDIENCE,
    )
    .unwrap();
    // The kernel runs as a process with the default limits: only auth in its config file.
    let config_file = dir.path().join("kernel.yaml");
    let auth = &config.auth;
    let yaml = json!({"auth": {
        "enabled": true,
        "issuer": auth.issuer,
        "audience": auth.audience,
        "verify_keys": auth.verify_keys,
        "signing_key": auth.signing_key,
    }});
    std::fs::write(&config_file, serde_yaml::to_string(&yaml).unwrap()).unwrap();
    let token = issuer
        .issue(Uuid::now_v7(), "p", None, Duration::from_secs(3600))
        .unwrap()
        .token;
    let with_token = |mut fields: Vec<(String, String)>| {
        fields.push(("token".into(), token.clone()));
        fields
    };

    // The backlog: good, 10 MB, good, … on `events`.
    let big = "x".repeat(BIG);
    for i in 0..N {
        let good = good_entries(2);
        publish(&redis, "events", &[with_token(good[0].clone())]).await;
        let mut huge = data_fields(Uuid::now_v7(), now_ns(), None, &[], json!({ "i": i }));
        huge.push(("blob".into(), big.clone()));
        publish(&redis, "events", &[with_token(huge)]).await;
        publish(&redis, "events", &[with_token(good[1].clone())]).await;
    }
    // Registration requests from 32 keys, each with a 10 MB name.
    let mut fingerprints = Vec::new();
    for _ in 0..N {
        let key = keys::generate();
        fingerprints.push(keys::fingerprint(&key.verifying_key()));
        let fields = request::build(&key, &big, None, &request::new_nonce(), now_ns());
        publish(&redis, "fdc:register", &[fields]).await;
    }
    drop(big);

    let config_path = config_file.to_str().unwrap().to_string();
    let mut kernel = start_kernel(&env, "mem-test", &[("FDC_CONFIG", config_path.as_str())]);
    kernel.wait_ready(WAIT).await.unwrap();
    let pg = env.pg().await;
    assert_eq!(
        wait_for(WAIT, 2 * N as i64, || stored(&pg)).await,
        2 * N as i64,
        "log:\n{}",
        kernel.log()
    );
    assert_eq!(
        wait_for(WAIT, N as i64, || xlen(&redis, "events:dlq")).await,
        N as i64
    );
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    for letter in raw_entries(&redis, "events:dlq").await {
        assert_eq!(field(&letter, "error"), Some(&b"too_large"[..]));
        assert_eq!(
            field(&letter, "blob.size"),
            Some(BIG.to_string().as_bytes())
        );
        assert!(field(&letter, "token").is_none());
    }
    // Every request answered and removed from the registration stream.
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    assert_eq!(pending(&redis, "fdc:register", "kernel").await, 0);
    for fp in &fingerprints {
        let replies = read_stream(&redis, &format!("fdc:register:reply:{fp}")).await;
        assert_eq!(replies.len(), 1, "one reply for {fp}");
        assert_eq!(replies[0]["status"], "invalid");
        assert_eq!(replies[0]["detail"], "too_large");
    }

    let peak_kib = vm_hwm_kib(kernel.pid());
    let defaults = Config::default();
    // docs/operator.md: about 4 x ingest.max_inflight_bytes + 40 MiB.
    let bound_kib = (4 * defaults.ingest.max_inflight_bytes + 40 * 1024 * 1024) as u64 / 1024;
    eprintln!(
        "peak RSS {} MiB (bound {} MiB)",
        peak_kib / 1024,
        bound_kib / 1024
    );
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB, bound {bound_kib} KiB"
    );
}

/// Peak resident set size (`VmHWM` of `/proc/<pid>/status`), in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmHWM")
}

/// A registration request with a field name that is not UTF-8 is answered `invalid` /
/// `bad_text` on its key's reply stream and removed, and one over the request byte bound
/// (a 20 KB `name`) `invalid` / `too_large`; the registration stream keeps flowing (a valid
/// request behind them is answered too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_requests_with_bad_names_or_over_the_bound_are_answered_invalid() {
    use fdc_common::keys;
    use fdc_kernel::auth::registration::request;

    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let dir = tempfile::tempdir().unwrap();
    let kernel = start_ready(env.auth_config(dir.path()).0).await;

    let mut asked = Vec::new();
    for (junk, name) in [
        (Some(b"\xff\xfejunk".to_vec()), "sensor".to_string()),
        (None, "n".repeat(20_000)),
        (None, "fine".to_string()),
    ] {
        let key = keys::generate();
        let fp = keys::fingerprint(&key.verifying_key());
        let nonce = request::new_nonce();
        let mut fields = raw(request::build(&key, &name, None, &nonce, now_ns()));
        if let Some(junk) = junk {
            fields.push((junk, b"x".to_vec()));
        }
        publish(&redis, "fdc:register", &[fields]).await;
        asked.push((fp, nonce));
    }
    let mut answers = Vec::new();
    for (fp, nonce) in &asked {
        let key = format!("fdc:register:reply:{fp}");
        assert_eq!(
            wait_for(WAIT, 1, || xlen(&redis, &key)).await,
            1,
            "a reply for {fp}"
        );
        let reply = &read_stream(&redis, &key).await[0];
        assert_eq!(&reply["nonce"], nonce);
        answers.push((reply["status"].clone(), reply["detail"].clone()));
    }
    assert_eq!(
        answers,
        [
            ("invalid".to_string(), "bad_text".to_string()),
            ("invalid".to_string(), "too_large".to_string()),
            ("pending".to_string(), "awaiting_approval".to_string()),
        ]
    );
    assert_eq!(wait_for(WAIT, 0, || xlen(&redis, "fdc:register")).await, 0);
    kernel.shutdown().await;
}

/// A dead-letter stream key that holds another type (a string here): the letter cannot be
/// written, so its entry must stay pending (never acknowledged without its letter), the
/// writer lane shows as stalled with the key named, and once the key is a stream again the
/// letter goes out and the entry is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_key_that_is_not_a_stream_loses_no_entry() {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    occupy_key(&redis, "events:dlq", "not a stream").await;
    let mut config = env.config();
    config.ingest.stall_after = Duration::from_secs(1);
    // Two lanes: one keeps retrying the bad entry's dead letter, the other stores the rest.
    config.ingest.writers = 2;
    let kernel = start_ready(config).await;
    let addr = kernel.http_addr;

    let mut bad = good_entries(1).remove(0);
    bad[1].1 = "2.0.0".into();
    publish(&redis, "events", &[bad]).await;
    // The bad entry's batch is stuck before the good entries are published, so they come in
    // another batch whatever the timing (a batch holding both would keep all three pending).
    let writer = "kernel_stalled{stage=\"writer\"}";
    assert_eq!(
        crate::fault_support::wait_metric_at_least(addr, writer, 1.0).await,
        1.0
    );
    publish(&redis, "events", &good_entries(2)).await;
    let pg = env.pg().await;
    assert_eq!(wait_for(WAIT, 2, || stored(&pg)).await, 2);
    assert_eq!(
        wait_for(WAIT, 1, || pending(&redis, "events", "kernel")).await,
        1
    );
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("events:dlq"), "{body}");
    assert!(body.contains("not a stream"), "{body}");
    assert_eq!(pending(&redis, "events", "kernel").await, 1);
    assert_eq!(
        metric(addr, "kernel_redis_dlq_total{reason=\"bad_version\"}").await,
        0.0
    );

    delete_key(&redis, "events:dlq").await;
    assert_eq!(wait_for(WAIT, 1, || xlen(&redis, "events:dlq")).await, 1);
    assert_eq!(
        wait_for(WAIT, 0, || pending(&redis, "events", "kernel")).await,
        0
    );
    let letters = raw_entries(&redis, "events:dlq").await;
    assert_eq!(field(&letters[0], "error"), Some(&b"bad_version"[..]));
    assert_eq!(wait_for(WAIT, 0.0, || metric(addr, writer)).await, 0.0);
    kernel.shutdown().await;
}

/// Peak RSS of a kernel process (`max_inflight` bytes in flight at most) that ingests
/// `streams` streams each holding `per_stream` entries of 60 KB, all waiting when it starts.
async fn peak_rss_reading(streams: usize, per_stream: usize, max_inflight: usize) -> u64 {
    let env = TestEnv::start().await.unwrap();
    let redis = env.redis_conn().await;
    let names: Vec<String> = (0..streams).map(|i| format!("s{i}")).collect();
    let blob = "b".repeat(60_000);
    for name in &names {
        let now = now_ns();
        let entries: Vec<_> = (0..per_stream)
            .map(|_| data_fields(Uuid::now_v7(), now, None, &[], json!({ "blob": blob })))
            .collect();
        publish(&redis, name, &entries).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("kernel.yaml");
    std::fs::write(
        &config_file,
        format!("ingest:\n  streams: {names:?}\n  max_inflight_bytes: {max_inflight}\n"),
    )
    .unwrap();
    let config_path = config_file.to_str().unwrap().to_string();
    let mut kernel = start_kernel(&env, "streams", &[("FDC_CONFIG", config_path.as_str())]);
    kernel.wait_ready(WAIT).await.unwrap();
    let pg = env.pg().await;
    let all = (streams * per_stream) as i64;
    assert_eq!(
        wait_for(WAIT, all, || stored(&pg)).await,
        all,
        "log:\n{}",
        kernel.log()
    );
    vm_hwm_kib(kernel.pid())
}

/// XREADGROUP's COUNT is per stream: a kernel reading four streams must hold no more
/// entries than one reading a single stream (`ingest.max_inflight_bytes` in all), so its
/// peak RSS is that of the one-stream kernel, not about four times its entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_streams_hold_no_more_than_one() {
    const MAX_INFLIGHT: usize = 16 * 1024 * 1024;
    let one = peak_rss_reading(1, 1200, MAX_INFLIGHT).await;
    let four = peak_rss_reading(4, 300, MAX_INFLIGHT).await;
    eprintln!(
        "peak RSS: one stream {} MiB, four streams {} MiB",
        one / 1024,
        four / 1024
    );
    // Reading four times the entries at once added about nine times max_inflight_bytes
    // (258 against 106 MiB); allocator and scheduling noise on a loaded machine adds up to
    // about two, so the bound is three.
    assert!(
        four < one + 3 * (MAX_INFLIGHT / 1024) as u64,
        "peak RSS with four streams {four} KiB, with one {one} KiB"
    );
}
