//! Builders tested directly: config rendering, StatefulSet, PDB, key set and Secrets.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use crate::builders::issuer_keys::{self, IssuerKeySet, RETIRE_MARGIN};
use crate::builders::producer_secret::{self, Credentials, Stored};
use crate::builders::{config, config_check, pdb, statefulset};
use crate::controller::fixtures::{kernel, producer};

fn yaml(rendered: &config::RenderedConfig) -> Value {
    serde_yaml::from_str(&rendered.yaml).unwrap()
}

#[test]
fn config_has_every_key_the_kernel_needs_and_no_secret() {
    let k = kernel("k", 2);
    let rendered = config::render(&k, &["aaaa".into(), "bbbb".into()]).unwrap();
    let v = yaml(&rendered);
    assert_eq!(v["redis"]["url"], "redis://redis:6379/0");
    assert_eq!(v["ingest"]["streams"], json!(["events"]));
    assert_eq!(v["ingest"]["group"], "kernel");
    assert!(
        v["ingest"].get("consumer").is_none(),
        "consumer comes from the downward API"
    );
    assert!(
        v.get("postgres").is_none(),
        "the Postgres URL comes from a Secret via env"
    );
    assert_eq!(v["http"]["listen"], "0.0.0.0:8080");
    assert_eq!(v["spill"]["dir"], "/var/lib/fdc/spill");
    assert_eq!(
        v["spill"]["max_bytes"],
        2u64 * 1024 * 1024 * 1024 / 100 * 90
    );
    assert_eq!(v["auth"]["enabled"], true);
    assert_eq!(v["auth"]["issuer"], "fdc");
    assert_eq!(v["auth"]["audience"], "fdc-kernel");
    assert_eq!(v["auth"]["token_ttl"], "24h");
    assert_eq!(v["auth"]["signing_key"], "/etc/fdc/keys/signing.pem");
    assert_eq!(
        v["auth"]["verify_keys"],
        json!(["/etc/fdc/keys/aaaa.pub.pem", "/etc/fdc/keys/bbbb.pub.pem"])
    );
    assert_eq!(v["auth"]["admin_token_file"], "/etc/fdc/admin/token");
    assert_eq!(v["auth"]["admin_listen"], "0.0.0.0:8081");
    assert_eq!(v["log"]["level"], "info");
    assert_eq!(v["shutdown"]["timeout"], "30s");
    assert!(v.get("republish").is_none());
}

#[test]
fn the_kernel_accepts_the_rendered_config() {
    use figment::providers::{Format, Yaml};
    let mut k = kernel("k", 2);
    k.spec.republish = Some(
        serde_json::from_value(json!({"enabled": true, "stream": "out", "maxLen": 5000})).unwrap(),
    );
    k.spec.config =
        Some(json!({"ingest": {"batch_max_size": 500}, "partitions": {"ahead_days": 3}}));
    let rendered = config::render(&k, &["aaaa".into()]).unwrap();
    let config = fdc_common::config::Config::from_figment(figment::Figment::from(Yaml::string(
        &rendered.yaml,
    )))
    .unwrap_or_else(|e| panic!("kernel rejects the rendered config: {e}\n{}", rendered.yaml));
    assert_eq!(config.ingest.batch_max_size, 500);
    assert_eq!(config.partitions.ahead_days, 3);
    assert_eq!(config.republish.stream, "out");
    assert_eq!(config.republish.maxlen, 5000);
    assert_eq!(config.shutdown.timeout, std::time::Duration::from_secs(30));
    assert!(config.auth.enabled);
    assert_eq!(config.auth.admin_listen.port(), 8081);
    assert_eq!(config.http.listen.port(), 8080);
    let spill = config.spill.expect("spill section");
    assert_eq!(spill.dir, std::path::PathBuf::from("/var/lib/fdc/spill"));
    assert_eq!(spill.max_bytes, 2u64 * 1024 * 1024 * 1024 / 100 * 90);
}

/// `config_check::check` of `k` rendered, as the message a user would read.
fn verdict(k: &crate::crd::FdcKernel) -> Result<(), String> {
    config_check::check(&config::render(k, &["aaaa".into()]).unwrap()).map_err(|e| e.to_string())
}

#[test]
fn config_check_uses_the_kernels_rules_and_names_the_spec_field() {
    let mut k = kernel("k", 1);
    assert_eq!(verdict(&k), Ok(()));

    k.spec.shutdown_timeout = "90s".into();
    assert_eq!(
        verdict(&k),
        Err("the kernel refuses the rendered kernel.yaml: invalid config key `ingest.claim_idle`: does not exceed shutdown.timeout, so a draining replica's batch could be claimed; fix: raise ingest.claim_idle or lower shutdown.timeout. In the FdcKernel: ingest.claim_idle is spec.config.ingest.claim_idle, shutdown.timeout is spec.shutdownTimeout".into())
    );
    // Raising claim_idle in any spelling the kernel reads (CEL only knows Go durations).
    k.spec.config = Some(json!({"ingest": {"claim_idle": "2min"}}));
    assert_eq!(verdict(&k), Ok(()));

    // A relation between two free-form keys, out of CEL's sight.
    let mut k = kernel("k", 1);
    k.spec.config = Some(json!({"postgres": {"statement_timeout": "2m"}}));
    let err = verdict(&k).unwrap_err();
    assert!(
        err.contains("invalid config key `ingest.claim_idle`: 60s does not exceed postgres.statement_timeout (120s)"),
        "{err}"
    );
    assert!(
        err.ends_with("In the FdcKernel: ingest.claim_idle is spec.config.ingest.claim_idle, postgres.statement_timeout is spec.config.postgres.statement_timeout"),
        "{err}"
    );

    // A typo: the kernel denies unknown keys.
    let mut k = kernel("k", 1);
    k.spec.config = Some(json!({"ingest": {"batch_max_sise": 5}}));
    let err = verdict(&k).unwrap_err();
    assert!(err.contains("batch_max_sise"), "{err}");

    // The spill section is checked too (the kernel checks it when the spill opens).
    let mut k = kernel("k", 1);
    k.spec.config = Some(json!({"spill": {"segment_bytes": 0}}));
    assert_eq!(
        verdict(&k),
        Err("the kernel refuses the rendered kernel.yaml: invalid config key `spill.segment_bytes`: is 0; fix: use e.g. 67108864 (64 MiB, the default). In the FdcKernel: spill.segment_bytes is spec.config.spill.segment_bytes".into())
    );
}

#[test]
fn the_example_kernel_renders_to_a_config_the_kernel_accepts_and_a_pod_without_service_links() {
    // docs/examples/10-kernel.yaml names its kernel `fdc`, so its Service `fdc` would inject
    // FDC_SERVICE_HOST, FDC_PORT, ... into every pod of the namespace with service links on.
    let mut k: crate::crd::FdcKernel =
        serde_yaml::from_str(include_str!("../../../docs/examples/10-kernel.yaml")).unwrap();
    k.metadata.namespace = Some("default".into());
    k.metadata.uid = Some(crate::controller::fixtures::KERNEL_UID.into());
    let rendered = config::render(&k, &["aaaa".into()]).unwrap();
    assert_eq!(config_check::check(&rendered), Ok(()));
    let sts = statefulset::statefulset(&k, 2, &rendered.hash).unwrap();
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(pod.enable_service_links, Some(false));
    let env: Vec<String> = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    // Every FDC_ variable the pod gets is a nested config key (`__`), none a service link.
    assert_eq!(env, vec!["FDC_INGEST__CONSUMER", "FDC_POSTGRES__URL"]);
}

#[test]
fn overrides_merge_but_cannot_move_operator_owned_keys() {
    let mut k = kernel("k", 1);
    k.spec.config = Some(json!({
        "http": {"listen": "0.0.0.0:9999"},
        "spill": {"dir": "/tmp/elsewhere"},
        "postgres": {"url": "postgres://leak:pw@db/x", "max_connections": 8},
        "ingest": {"consumer": "fixed", "claim_idle": "2m"},
        "log": {"level": "debug"},
    }));
    let v = yaml(&config::render(&k, &[]).unwrap());
    assert_eq!(v["http"]["listen"], "0.0.0.0:8080");
    assert_eq!(v["spill"]["dir"], "/var/lib/fdc/spill");
    assert_eq!(
        v["postgres"],
        json!({"max_connections": 8}),
        "no URL (and no password) in the ConfigMap"
    );
    assert_eq!(v["ingest"]["claim_idle"], "2m");
    assert!(v["ingest"].get("consumer").is_none());
    assert_eq!(v["log"]["level"], "debug", "not owned: overridable");
}

#[test]
fn config_hash_is_stable_and_follows_content() {
    let k = kernel("k", 1);
    let a = config::render(&k, &["x".into()]).unwrap();
    assert_eq!(a, config::render(&k, &["x".into()]).unwrap());
    assert_ne!(
        a.hash,
        config::render(&k, &["x".into(), "y".into()]).unwrap().hash
    );
    let mut k2 = k.clone();
    k2.spec.log_level = crate::crd::kernel::LogLevel::Debug;
    assert_ne!(a.hash, config::render(&k2, &["x".into()]).unwrap().hash);
}

#[test]
fn statefulset_grace_covers_fractional_shutdown_timeouts_and_uses_the_hash() {
    let mut k = kernel("k", 2);
    k.spec.shutdown_timeout = "1m".into();
    let sts = statefulset::statefulset(&k, 2, "abc").unwrap();
    let pod = sts.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(75));
    assert_eq!(
        sts.spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["fdc.dev/config-hash"],
        "abc"
    );
    k.spec.shutdown_timeout = "1500ms".into();
    let sts = statefulset::statefulset(&k, 2, "abc").unwrap();
    assert_eq!(
        sts.spec
            .template
            .spec
            .unwrap()
            .termination_grace_period_seconds,
        Some(17)
    );
}

#[test]
fn redis_url_from_a_secret_goes_to_env_not_config() {
    let mut k = kernel("k", 1);
    k.spec.redis =
        serde_json::from_value(json!({"urlSecretRef": {"name": "redis", "key": "uri"}})).unwrap();
    assert!(yaml(&config::render(&k, &[]).unwrap())
        .get("redis")
        .is_none());
    let sts = statefulset::statefulset(&k, 1, "h").unwrap();
    let env = serde_json::to_value(&sts.spec.template.spec.unwrap().containers[0].env).unwrap();
    let redis = env
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "FDC_REDIS__URL")
        .unwrap();
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["name"], "redis");
    assert_eq!(redis["valueFrom"]["secretKeyRef"]["key"], "uri");
}

#[test]
fn pdb_only_for_more_than_one_replica() {
    let k = kernel("k", 1);
    assert!(pdb::pdb(&k, 0).unwrap().is_none());
    assert!(pdb::pdb(&k, 1).unwrap().is_none());
    let p = pdb::pdb(&k, 2).unwrap().unwrap();
    assert_eq!(
        p.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
}

#[test]
fn key_set_round_trips_through_its_secret_rotates_and_prunes() {
    let k = kernel("k", 1);
    let mut keys = IssuerKeySet::generate().unwrap();
    let first = keys.current_kid().to_string();
    let secret = keys.to_secret(&k, None).unwrap();
    let back = IssuerKeySet::from_secret(&secret).unwrap();
    assert_eq!(back.current_kid(), first);
    assert_eq!(back.signing_pem(), keys.signing_pem());
    assert_eq!(
        crate::auth::key_id(&back.keys()[0].public_pem).unwrap(),
        first
    );

    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let ttl = std::time::Duration::from_secs(3600);
    let second = keys.rotate(ttl, now).unwrap();
    assert_ne!(second, first);
    assert_eq!(keys.verify_kids(), vec![second.clone(), first.clone()]);
    let until = now + SignedDuration::try_from(ttl + RETIRE_MARGIN).unwrap();
    assert_eq!(keys.next_expiry(), Some(until));
    // The rotated set survives its Secret too.
    let back = IssuerKeySet::from_secret(&keys.to_secret(&k, Some("r1")).unwrap()).unwrap();
    assert_eq!(back.verify_kids(), vec![second.clone(), first.clone()]);
    assert_eq!(back.next_expiry(), Some(until));

    assert!(keys.prune(until - SignedDuration::from_secs(1)).is_empty());
    assert_eq!(keys.prune(until), vec![first]);
    assert_eq!(keys.verify_kids(), vec![second]);
    assert_eq!(keys.next_expiry(), None);
}

#[test]
fn damaged_key_secret_is_an_error_not_a_new_key() {
    let k = kernel("k", 1);
    let mut secret = IssuerKeySet::generate()
        .unwrap()
        .to_secret(&k, None)
        .unwrap();
    secret.data.as_mut().unwrap().remove("keys.json");
    let err = IssuerKeySet::from_secret(&secret).unwrap_err();
    assert_eq!(err.to_string(), "secret has no keys.json");
}

#[test]
fn admin_tokens_are_random_and_round_trip() {
    let k = kernel("k", 1);
    let a = issuer_keys::generate_admin_token();
    assert_ne!(a, issuer_keys::generate_admin_token());
    assert_eq!(a.len(), 43, "32 bytes base64url without padding");
    let secret = issuer_keys::admin_secret(&k, &a).unwrap();
    assert_eq!(issuer_keys::admin_token_from_secret(&secret).unwrap(), a);
}

#[test]
fn producer_secret_holds_credentials_and_reads_back() {
    let p = producer("p", "k");
    let c = Credentials {
        producer_id: crate::controller::fixtures::PRODUCER_UID.into(),
        token: "t.o.k".into(),
        expires_at: Timestamp::from_second(1_800_000_000).unwrap(),
        kid: "kid1".into(),
        inputs_hash: "h1".into(),
        stream: "events".into(),
        fingerprint: "fp".into(),
        key_pair: Some(("PRIV".into(), "PUB".into())),
    };
    let secret = producer_secret::credentials_secret(&p, &c).unwrap();
    assert_eq!(secret.metadata.name.as_deref(), Some("p-credentials"));
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].kind,
        "Producer"
    );
    let keys: Vec<&String> = secret.data.as_ref().unwrap().keys().collect();
    assert_eq!(
        keys,
        vec![
            "fingerprint",
            "private-key.pem",
            "producer-id",
            "public-key.pem",
            "stream",
            "token"
        ]
    );
    let stored = Stored::read(&secret);
    assert_eq!(stored.token.as_deref(), Some("t.o.k"));
    assert_eq!(stored.expires_at, Some(c.expires_at));
    assert_eq!(stored.inputs_hash.as_deref(), Some("h1"));
    assert_eq!(
        stored.key_pair,
        Some(("PRIV".to_string(), "PUB".to_string()))
    );
    // Debug output never shows the token.
    assert!(!format!("{c:?}").contains("t.o.k"));
}
