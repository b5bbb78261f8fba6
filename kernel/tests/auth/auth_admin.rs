//! The admin API and the CLI: 401 without the admin token (and nothing changes), recorded
//! decisions, and the newcomer path through the real binary.

use std::process::Stdio;

use crate::auth_support::*;
use crate::support::*;
use fdc_common::keys;
use uuid::Uuid;

async fn snapshot(pg: &sqlx::PgPool) -> Vec<i64> {
    vec![
        count(
            pg,
            "SELECT count(*) FROM producer_registrations WHERE status = 'pending'",
        )
        .await,
        count(
            pg,
            "SELECT count(*) FROM producer_keys WHERE status = 'pending'",
        )
        .await,
        count(pg, "SELECT count(*) FROM producers").await,
        count(
            pg,
            "SELECT count(*) FROM producers WHERE revoked_at IS NOT NULL",
        )
        .await,
        count(pg, "SELECT count(*) FROM auth_decisions").await,
        count(pg, "SELECT count(*) FROM auth_tokens_issued").await,
    ]
}

#[tokio::test]
async fn admin_api_without_or_with_wrong_token_is_401_and_changes_nothing() {
    let k = AuthKernel::start(Options::default()).await;
    let (redis, pg) = k.clients().await;
    // One pending registration and one producer to act upon.
    let (key, fp) = new_key();
    publish(
        &redis,
        "fdc:register",
        &[register_request(&key, "dev", None)],
    )
    .await;
    assert_eq!(
        wait_for(WAIT, 1, || count(
            &pg,
            "SELECT count(*) FROM producer_registrations"
        ))
        .await,
        1
    );
    let reg: Uuid = sqlx::query_scalar("SELECT registration_id FROM producer_registrations")
        .fetch_one(&pg)
        .await
        .unwrap();
    let producer = Uuid::now_v7();
    k.assert_ingests_as(&k.token(producer, "p"), producer).await;
    let before = snapshot(&pg).await;
    assert_eq!(before, vec![1, 1, 1, 0, 0, 0]);

    let http = reqwest::Client::new();
    let reason = serde_json::json!({"reason": "x", "producer_id": null});
    let calls: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::GET, "/v1/registrations".into()),
        (
            reqwest::Method::POST,
            format!("/v1/registrations/{reg}/approve"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/registrations/{reg}/reject"),
        ),
        (reqwest::Method::GET, format!("/v1/producers/{producer}")),
        (
            reqwest::Method::POST,
            format!("/v1/producers/{producer}/revoke"),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/producers/{producer}/token"),
        ),
        (reqwest::Method::POST, format!("/v1/keys/{fp}/revoke")),
        (reqwest::Method::GET, "/v1/decisions".into()),
    ];
    let mut refused = 0;
    for (method, path) in &calls {
        for auth in [
            None,
            Some("wrong-token"),
            Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        ] {
            let mut req = http
                .request(method.clone(), k.admin_url(path))
                .json(&reason);
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            let body = resp.text().await.unwrap();
            assert!(!body.contains(ADMIN_TOKEN));
            refused += 1;
        }
        // A non-Bearer scheme with the right secret is refused too.
        let resp = http
            .request(method.clone(), k.admin_url(path))
            .header("authorization", format!("Basic {ADMIN_TOKEN}"))
            .json(&reason)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        refused += 1;
    }
    assert_eq!(snapshot(&pg).await, before);
    assert_eq!(
        k.metric("kernel_auth_admin_unauthorized_total").await,
        refused as f64
    );

    // With the right token the same calls work and each decision is recorded with its reason.
    let resp = http
        .get(k.admin_url("/v1/registrations"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Vec<serde_json::Value> = resp.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["fingerprint"], fp.as_str());
    assert_eq!(list[0]["name"], "dev");
    let approve = format!("/v1/registrations/{reg}/approve");
    let body = serde_json::json!({"producer_id": producer, "reason": "same device as p"});
    assert_eq!(k.admin_post(&approve, &body).await.0, 200);
    // Approving twice is a conflict and records nothing more.
    assert_eq!(k.decide(&approve, "again").await, 409);
    let (status, issued) = k
        .admin_post(
            &format!("/v1/producers/{producer}/token"),
            &serde_json::json!({"ttl": "10m", "reason": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    let admin_token = issued["token"].as_str().unwrap().to_string();
    let exp = issued["expires_at"].as_i64().unwrap();
    let left = exp - chrono::Utc::now().timestamp();
    assert!((590..=600).contains(&left), "ttl 10m, {left}s left");

    // The producer's row, with when it was last seen (written in the background).
    let seen = format!("SELECT count(*) FROM producers WHERE producer_id = '{producer}' AND last_seen_at IS NOT NULL");
    assert_eq!(wait_for(WAIT, 1, || count(&pg, &seen)).await, 1);
    let last_seen: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT last_seen_at FROM producers WHERE producer_id = $1")
            .bind(producer)
            .fetch_one(&pg)
            .await
            .unwrap();
    let resp = http
        .get(k.admin_url(&format!("/v1/producers/{producer}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let shown: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(shown["producer_id"], producer.to_string());
    assert_eq!(shown["name"], "p");
    assert_eq!(shown["revoked_at"], serde_json::Value::Null);
    let shown_seen: chrono::DateTime<chrono::Utc> =
        shown["last_seen_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown_seen, last_seen);
    let resp = http
        .get(k.admin_url(&format!("/v1/producers/{}", Uuid::now_v7())))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "producer not found"
    );

    let decisions: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, target, reason FROM auth_decisions WHERE decided_at IS NOT NULL ORDER BY decision_id",
    )
    .fetch_all(&pg)
    .await
    .unwrap();
    assert_eq!(
        decisions,
        vec![
            (
                "approve".to_string(),
                reg.to_string(),
                "same device as p".to_string()
            ),
            (
                "issue_token".to_string(),
                producer.to_string(),
                "manual".to_string()
            ),
        ]
    );
    assert_eq!(
        count(&pg, &format!("SELECT count(*) FROM producer_keys WHERE fingerprint = '{fp}' AND status = 'approved' AND producer_id = '{producer}'")).await,
        1
    );
    k.finish(&[ADMIN_TOKEN, &admin_token], &[]).await;
}

// Multi-threaded: the test blocks on the CLI processes while the kernel runs on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newcomer_path_through_the_cli_keygen_register_approve_publish() {
    let k = AuthKernel::start(Options::default()).await;
    let pg = k.env.pg().await;
    let dir = k.dir.path().join("producer");
    let redis_url = k.env.redis.url();
    let admin_file = k.dir.path().join("admin-token");
    let admin_url = format!("http://{}", k.admin);

    let (code, out) = run_cli({
        let mut c = kernel_cli();
        c.arg("keygen").arg("--out").arg(&dir);
        c
    });
    assert_eq!(code, 0, "{out}");
    let key = keys::load_signing_key(&dir.join(keys::PRIVATE_KEY_FILE)).unwrap();
    let fp = keys::fingerprint(&key.verifying_key());
    assert!(out.contains(&fp));

    let register = || {
        let mut c = kernel_cli();
        c.args(["register", "--name", "newcomer", "--timeout", "20s"])
            .arg("--key")
            .arg(&dir)
            .env("FDC_REDIS__URL", &redis_url);
        c
    };
    let (code, out1) = run_cli(register());
    assert_eq!(code, 2, "pending exits 2: {out1}");
    assert!(out1.contains("pending"));

    let admin = |args: &[&str]| {
        let mut c = kernel_cli();
        c.arg("admin")
            .arg("--url")
            .arg(&admin_url)
            .arg("--token-file")
            .arg(&admin_file)
            .args(args);
        c
    };
    let (code, listing) = run_cli(admin(&["registrations"]));
    assert_eq!(code, 0, "{listing}");
    let list: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert_eq!(list.len(), 1);
    let reg = list[0]["registration_id"].as_str().unwrap().to_string();
    let (code, out) = run_cli(admin(&["approve", &reg, "--reason", "welcome"]));
    assert_eq!(code, 0, "{out}");

    let (code, out2) = run_cli(register());
    assert_eq!(code, 0, "{out2}");
    let token_file = dir.join("token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!out2.contains(&token), "register never prints the token");

    let mut c = kernel_cli();
    c.arg("publish")
        .arg("--token-file")
        .arg(&token_file)
        .env("FDC_REDIS__URL", &redis_url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, r#"{{"temp": 21.5}}"#).unwrap();
        writeln!(
            stdin,
            r#"{{"subject": "room-1", "tags": {{"floor": "2"}}, "payload": {{"temp": 22}}}}"#
        )
        .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let pub_text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pub_text.contains(&token));

    let producer: Uuid =
        sqlx::query_scalar("SELECT producer_id FROM producer_keys WHERE fingerprint = $1")
            .bind(&fp)
            .fetch_one(&pg)
            .await
            .unwrap();
    let sql = format!("SELECT count(*) FROM events WHERE producer_id = '{producer}'");
    assert_eq!(wait_for(WAIT, 2, || count(&pg, &sql)).await, 2);
    assert_eq!(
        count(&pg, "SELECT count(*) FROM events e JOIN subjects s USING (subject_id) WHERE s.subject_key = 'room-1' AND (payload->>'temp')::int = 22").await,
        1
    );

    // `token issue` prints a token the kernel accepts (its purpose: for scripts).
    let signing_key = k.config.auth.signing_key.clone().unwrap();
    let scripted = Uuid::now_v7();
    let (code, printed) = run_cli({
        let mut c = kernel_cli();
        c.args(["token", "issue", "--name", "script", "--ttl", "1h"])
            .arg("--producer-id")
            .arg(scripted.to_string())
            .arg("--signing-key")
            .arg(&signing_key)
            .args(["--issuer", "fdc-test", "--audience", "fdc-kernel-test"]);
        c
    });
    assert_eq!(code, 0, "{printed}");
    let redis = k.env.redis_conn().await;
    publish(&redis, "events", &[data_entry(Some(printed.trim()), 9)]).await;
    let sql = format!("SELECT count(*) FROM events WHERE producer_id = '{scripted}'");
    assert_eq!(wait_for(WAIT, 1, || count(&pg, &sql)).await, 1);

    let all_cli = format!("{out1}{listing}{out2}{pub_text}");
    assert!(!all_cli.contains("PRIVATE KEY"));
    assert!(!all_cli.contains(ADMIN_TOKEN));
    let mut secrets = vec![token.trim(), printed.trim(), ADMIN_TOKEN];
    let ks = key_secrets(&key);
    secrets.extend(ks.iter().map(String::as_str));
    for s in &secrets[3..] {
        assert!(!all_cli.contains(s));
    }
    k.finish(&secrets, &[]).await;
}
