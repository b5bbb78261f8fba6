//! `FdcKernel` reconciler against the mock API server, as scenarios: each test states what
//! the cluster holds, and asserts the objects, status and Events the pass produced. The
//! request order is checked by the scenario code in `controller/fixtures.rs`.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::controller::fixtures::{
    self, condition, kernel, pass, pod, pods_uri, secret_with_key, sts_answer, sts_with_status,
    test_context, FakeKernel, KernelWorld, Scenario, Seen, MONITORING_DISCOVERY, NS,
};
use crate::controller::kernel::reconcile_kernel;
use crate::crd::FdcKernel;
use crate::labels::ROTATE_ISSUER_KEY_ANNOTATION;

fn config_hash(sts: &Value) -> Value {
    sts["spec"]["template"]["metadata"]["annotations"]["fdc.dev/config-hash"].clone()
}

/// A new single-replica kernel whose pod is not ready yet: everything is created.
fn fresh_world(k: &FdcKernel) -> KernelWorld {
    KernelWorld {
        sts_after: sts_answer(1, 0),
        pods: vec![pod("k-0", None, false)],
        ..KernelWorld::fresh(k)
    }
}

#[tokio::test]
async fn new_kernel_creates_everything_once_and_a_second_pass_regenerates_nothing() {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", 1);

    let (action, server, seen) = pass(
        server,
        Scenario::Kernel(fresh_world(&k)),
        reconcile_kernel(&k, &ctx),
    )
    .await;
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(10)));

    // Issuer key and admin token: absent, so generated and created once, each with an Event.
    assert_eq!(
        seen.event_reasons(),
        ["IssuerKeyCreated", "AdminTokenCreated"]
    );
    let [issuer, admin] = &seen.created[..] else {
        panic!("two Secrets created: {:?}", seen.requests)
    };
    assert!(seen.applied("configmaps")["data"]["kernel.yaml"]
        .as_str()
        .unwrap()
        .contains("group: kernel"));
    // One replica: no PDB (it would block node drains), and a stale one is removed.
    assert_eq!(seen.deleted, ["poddisruptionbudgets"]);
    assert!(seen.asked("GET", MONITORING_DISCOVERY));
    // The pod is not ready: the status says which and why (the pods were listed).
    assert!(seen.asked("GET", &pods_uri("k")));
    let sts = seen.applied("statefulsets").clone();
    let status = seen.status().clone();

    // Secrets: owned by the kernel, with the files the pod mounts.
    for secret in [issuer, admin] {
        assert_eq!(
            secret["metadata"]["ownerReferences"][0]["uid"],
            fixtures::KERNEL_UID
        );
        assert_eq!(secret["metadata"]["ownerReferences"][0]["controller"], true);
    }
    let files: Vec<&String> = issuer["data"].as_object().unwrap().keys().collect();
    assert_eq!(
        files.len(),
        3,
        "signing.pem, <kid>.pub.pem, keys.json: {files:?}"
    );
    assert!(issuer["data"]["signing.pem"].is_string());
    assert!(admin["data"]["token"].is_string());

    // StatefulSet essentials.
    let spec = &sts["spec"];
    assert_eq!(spec["replicas"], 1);
    let claim = &spec["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "spill");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
    assert_eq!(claim["spec"]["storageClassName"], "fast");
    assert_eq!(
        spec["persistentVolumeClaimRetentionPolicy"],
        json!({"whenScaled": "Retain", "whenDeleted": "Retain"})
    );
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        c["args"],
        json!(["run", "--config", "/etc/fdc/kernel.yaml"])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["timeoutSeconds"], 3);
    assert_eq!(c["livenessProbe"]["timeoutSeconds"], 3);
    // Hardened container: read-only root, non-root, no capabilities, RuntimeDefault seccomp;
    // the spill volume is the one writable path.
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    let writable: Vec<&Value> = mounts
        .iter()
        .filter(|m| m["readOnly"] != true)
        .map(|m| &m["mountPath"])
        .collect();
    assert_eq!(writable, [&json!("/var/lib/fdc/spill")]);
    let consumer = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "FDC_INGEST__CONSUMER")
        .unwrap();
    assert_eq!(
        consumer["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    let pg = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "FDC_POSTGRES__URL")
        .unwrap();
    assert_eq!(
        pg["valueFrom"]["secretKeyRef"],
        json!({"name": "pg", "key": "url", "optional": false})
    );
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 45,
        "30s shutdown timeout + 15s margin"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // No service-link variables (FDC_SERVICE_HOST, ... from a Service named `fdc`): the
    // kernel's FDC_-prefixed config would refuse them.
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    let hash = config_hash(&sts);
    assert!(hash.as_str().is_some_and(|h| h.len() == 16), "{hash}");

    // Status: pods not ready yet.
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(
        status["status"]["selector"],
        "app.kubernetes.io/instance=k,app.kubernetes.io/name=fdc-kernel"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "ReplicasNotReady");
    assert_eq!(
        condition(&status, "Ready")["message"],
        "0/1 replicas ready: pod k-0: pending (no pod IP yet); see `kubectl describe pod -l app.kubernetes.io/instance=k`"
    );
    assert_eq!(condition(&status, "Progressing")["reason"], "Starting");
    assert_eq!(status["status"].get("settledReplicas"), None);
    assert_eq!(condition(&status, "Degraded")["status"], "False");
    assert_eq!(condition(&status, "SpillDrained")["status"], "True");
    assert_eq!(condition(&status, "Ready")["observedGeneration"], 1);

    // Second pass: the Secrets exist, so nothing is generated or written, and the pod
    // template hash is unchanged (no restart loop). Pods are ready now.
    let world = KernelWorld::running(&k, issuer, admin, sts_with_status(&sts, 1, 1));
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    assert!(seen.created.is_empty() && seen.replaced.is_empty() && seen.events.is_empty());
    assert_eq!(config_hash(seen.applied("statefulsets")), hash);
    assert_eq!(seen.deleted, ["poddisruptionbudgets"]);
    // ServiceMonitor discovery is cached: no second lookup.
    assert!(!seen.asked("GET", MONITORING_DISCOVERY));
    let status = seen.status();
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "Ready")["message"], "1/1 replicas ready");
    assert_eq!(condition(status, "Progressing")["status"], "False");
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(60)));

    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn missing_postgres_secret_is_degraded_with_a_clear_message_and_creates_nothing() {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let world = KernelWorld {
        pg_secret: None,
        ..KernelWorld::fresh(&k)
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    assert_eq!(seen.event_reasons(), ["SecretMissing"]);
    assert_eq!(seen.events[0]["type"], "Warning");
    let status = seen.status();
    let degraded = condition(status, "Degraded").clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "SecretMissing");
    let message = degraded["message"].as_str().unwrap();
    assert!(
        message.starts_with("Postgres URL: Secret pg not found."),
        "{message}"
    );
    assert!(
        message.contains("kubectl -n apps create secret generic pg --from-literal=url="),
        "{message}"
    );
    assert_eq!(condition(status, "Ready")["status"], "False");
    // Nothing created or applied: the Secret read, the Event, the status.
    assert!(seen.created.is_empty() && seen.applied.is_empty());
    assert_eq!(seen.requests.len(), 3, "{:?}", seen.requests);
    // A plain requeue, not an error: no crash loop, no error backoff storm.
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(30)));
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn secret_without_the_key_is_reported_too() {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let world = KernelWorld {
        pg_secret: Some(secret_with_key("pg", "uri")),
        ..KernelWorld::fresh(&k)
    };
    let (action, _server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    assert_eq!(seen.event_reasons(), ["SecretMissing"]);
    let message = condition(seen.status(), "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("Postgres URL: Secret pg has no key \"url\""),
        "{message}"
    );
    action.unwrap();
}

/// Creates credentials by running a first pass on a throwaway context: the issuer key and
/// admin token Secrets, and the single-replica StatefulSet.
async fn credentials() -> (Value, Value, Value) {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let (action, _server, seen) = pass(
        server,
        Scenario::Kernel(fresh_world(&k)),
        reconcile_kernel(&k, &ctx),
    )
    .await;
    action.unwrap();
    let sts = seen.applied("statefulsets").clone();
    let [issuer, admin] = <[Value; 2]>::try_from(seen.created).expect("two Secrets");
    (issuer, admin, sts)
}

/// The StatefulSet `sts1` as stored with `replicas` replicas, all ready.
fn existing_sts(sts1: &Value, replicas: i64) -> Value {
    let mut existing = sts_with_status(sts1, replicas, replicas);
    existing["spec"]["replicas"] = json!(replicas);
    existing
}

#[tokio::test]
async fn scale_out_applies_replicas_and_a_pdb() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = settled_kernel(3, 1);
    let mut pulling = named_pod("k-2", false);
    pulling["status"]["containerStatuses"] = json!([{
        "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}
    }]);
    let world = KernelWorld {
        sts_after: sts_answer(3, 1),
        pods: vec![named_pod("k-0", true), named_pod("k-1", false), pulling],
        ..KernelWorld::running(&k, &issuer, &admin, sts_with_status(&sts1, 1, 1))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    assert_eq!(seen.applied("statefulsets")["spec"]["replicas"], 3);
    let pdb = seen.applied("poddisruptionbudgets");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "k"
    );
    let status = seen.status();
    assert_eq!(status["status"]["replicas"], 3);
    assert_eq!(status["status"]["readyReplicas"], 1);
    // The one replica that served before the scale-out still does: available.
    expect_summary(status, ["True", "Available", "True", "ScalingOut"]);
    assert_eq!(
        condition(status, "Progressing")["message"],
        "scaling out from 1 to 3 replicas: 1/3 ready"
    );
    assert_eq!(status["status"]["settledReplicas"], 1);
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(10)));
    drop(ctx);
    server.expect_done().await;
}

/// The last pod (`k-2`) of a 3-replica kernel, Ready or not.
fn victim_pod(ready: bool) -> Value {
    let ready = if ready { "True" } else { "False" };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "k-2", "namespace": NS},
        "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": ready}]}
    })
}

/// One scale-in pass from 3 to `desired` replicas; the last pod is `victim` and its spill
/// is whatever `fake` says. Returns the applied StatefulSet, the status and the Event (if any).
async fn scale_in_pass(
    fake: &FakeKernel,
    issuer: &Value,
    admin: &Value,
    sts1: &Value,
    desired: i32,
    victim: Value,
) -> (Value, Value, Option<Value>) {
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", desired);
    let world = KernelWorld {
        victim: Some(victim),
        ..KernelWorld::running(&k, issuer, admin, existing_sts(sts1, 3))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    action.unwrap();
    drop(ctx);
    server.expect_done().await;
    assert!(seen.events.len() <= 1, "{:?}", seen.events);
    // Every pass applies a PDB here: 2 or 3 replicas.
    seen.applied("poddisruptionbudgets");
    let Seen {
        mut applied,
        status,
        mut events,
        ..
    } = seen;
    (
        applied.remove("statefulsets").expect("statefulset"),
        status.expect("status"),
        events.pop(),
    )
}

/// Asserts a scale-in pass was held back: the StatefulSet keeps its 3 replicas, no Event,
/// Progressing says ScalingIn and SpillDrained is False (SpillPending) with a message
/// `message_ok` accepts. Returns the status.
fn scale_in_held(
    (applied, status, event): (Value, Value, Option<Value>),
    message_ok: impl Fn(&str) -> bool,
) -> Value {
    assert_eq!(applied["spec"]["replicas"], 3);
    assert!(event.is_none(), "{event:?}");
    let drained = condition(&status, "SpillDrained");
    assert_eq!(drained["status"], "False");
    assert_eq!(drained["reason"], "SpillPending");
    assert!(
        message_ok(drained["message"].as_str().unwrap()),
        "{drained}"
    );
    assert_eq!(condition(&status, "Progressing")["reason"], "ScalingIn");
    status
}

#[tokio::test]
async fn scale_in_waits_for_the_spill_to_drain_then_removes_one_pod() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;

    // Spill not empty: the StatefulSet keeps 3 replicas and SpillDrained says why.
    fake.set_spill("k-2", 4096);
    let status = scale_in_held(
        scale_in_pass(&fake, &issuer, &admin, &sts1, 1, victim_pod(true)).await,
        |message| message.contains("pod k-2 still holds 4096 spilled records"),
    );
    // Every pod is ready: the kernel is available while it scales in.
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "Available");

    // Drained: one pod goes (3 -> 2), with an Event; the next pass handles the next pod.
    fake.set_spill("k-2", 0);
    let (applied, status, event) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 1, victim_pod(true)).await;
    assert_eq!(applied["spec"]["replicas"], 2);
    assert_eq!(event.expect("event")["reason"], "ScalingIn");
    assert_eq!(condition(&status, "SpillDrained")["status"], "True");
    assert_eq!(condition(&status, "Progressing")["status"], "True");
}

#[tokio::test]
async fn unreadable_spill_backlog_blocks_scale_in() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await; // knows no pod: /metrics answers 404
    let (applied, status, _) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 2, victim_pod(true)).await;
    assert_eq!(applied["spec"]["replicas"], 3);
    let message = condition(&status, "SpillDrained")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("cannot read the spill backlog of pod k-2"),
        "{message}"
    );
    assert!(message.contains("answered HTTP 404"), "{message}");
}

#[tokio::test]
async fn a_victim_that_is_not_ready_blocks_scale_in_even_with_an_empty_spill() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    // Its last read spill is empty, but a pod whose /readyz fails (Postgres unreachable)
    // could spill the batch it finishes while shutting down.
    fake.set_spill("k-2", 0);
    scale_in_held(
        scale_in_pass(&fake, &issuer, &admin, &sts1, 2, victim_pod(false)).await,
        |message| message.starts_with("scale-in waits: pod k-2 is not Ready"),
    );

    // Ready again: it goes.
    let (applied, _, event) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 2, victim_pod(true)).await;
    assert_eq!(applied["spec"]["replicas"], 2);
    assert_eq!(event.expect("event")["reason"], "ScalingIn");
}

#[tokio::test]
async fn a_config_the_kernel_refuses_is_degraded_and_nothing_is_applied() {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    // 90s shutdown timeout vs. the kernel's default ingest.claim_idle of 60s: the kernel
    // would exit at start-up (a crash loop reported only as ReplicasNotReady).
    let mut k = kernel("k", 2);
    k.spec.shutdown_timeout = "90s".into();
    k.metadata.generation = Some(4);
    let world = KernelWorld {
        kernel: kernel("k", 2),
        ..KernelWorld::fresh(&k)
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    // No credential reads or writes, no ConfigMap, no StatefulSet: an Event, then the status.
    assert_eq!(seen.requests.len(), 3, "{:?}", seen.requests);
    assert_eq!(seen.event_reasons(), ["InvalidConfig"]);
    let event = &seen.events[0];
    assert_eq!(event["type"], "Warning");
    let status = seen.status();
    let degraded = condition(status, "Degraded").clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidConfig");
    assert_eq!(degraded["observedGeneration"], 4);
    let expected = "the kernel refuses the rendered kernel.yaml: invalid config key `ingest.claim_idle`: does not exceed shutdown.timeout, so a draining replica's batch could be claimed; fix: raise ingest.claim_idle or lower shutdown.timeout. In the FdcKernel: ingest.claim_idle is spec.config.ingest.claim_idle, shutdown.timeout is spec.shutdownTimeout. Nothing was applied; the pods keep their current config. Fix the FdcKernel (the operator retries every 30s)";
    assert_eq!(degraded["message"], expected);
    assert_eq!(event["note"], expected);
    let ready = condition(status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidConfig");
    assert_eq!(status["status"]["observedGeneration"], 4);
    // A plain requeue, not an error: no retry storm.
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(30)));
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn rotation_annotation_rotates_once_keeps_the_old_key_and_changes_the_pod_hash() {
    let (issuer, admin, sts1) = credentials().await;
    let old_hash = config_hash(&sts1);
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let mut k: FdcKernel = kernel("k", 1);
    k.metadata.annotations = Some(
        [(
            ROTATE_ISSUER_KEY_ANNOTATION.to_string(),
            "2026-01-01".to_string(),
        )]
        .into(),
    );
    let mut stored = issuer.clone();
    stored["metadata"]["resourceVersion"] = json!("41");
    let world = KernelWorld {
        kernel: kernel("k", 1),
        ..KernelWorld::running(&k, &stored, &admin, sts_with_status(&sts1, 1, 1))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    let action = action.unwrap();
    // Requeued in time to retire the old key (24h + 5m margin), not the idle 5 minutes.
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    assert!(seen.created.is_empty());
    let [rotated] = &seen.replaced[..] else {
        panic!("one replace: {:?}", seen.requests)
    };
    assert_eq!(seen.event_reasons(), ["IssuerKeyRotated"]);
    let event = &seen.events[0];
    let config = seen.applied("configmaps")["data"]["kernel.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let new_hash = config_hash(seen.applied("statefulsets"));
    let new_kid = seen.status()["status"]["issuerKeyId"]
        .as_str()
        .unwrap()
        .to_string();

    // The write is a replace guarded by the resourceVersion read.
    assert_eq!(rotated["metadata"]["resourceVersion"], "41");
    assert_eq!(
        rotated["metadata"]["annotations"]["fdc.dev/rotation-handled"],
        "2026-01-01"
    );
    let index: Value = serde_json::from_slice(&base64_decode(
        rotated["data"]["keys.json"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(index["current"], new_kid.as_str());
    let keys = index["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{index}");
    let old = keys.iter().find(|k| k["kid"] != new_kid.as_str()).unwrap();
    let until: k8s_openapi::jiff::Timestamp =
        old["trustedUntil"].as_str().unwrap().parse().unwrap();
    let remaining = until
        .duration_since(k8s_openapi::jiff::Timestamp::now())
        .as_secs();
    assert!(
        (86_000..=86_700).contains(&remaining),
        "old key trusted for tokenTTL + margin, got {remaining}s"
    );
    assert!(event["note"]
        .as_str()
        .unwrap()
        .contains(&format!("-> {new_kid}")));
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .ends_with("stays trusted for 24h5m (auth.tokenTTL 24h + 5m margin)"),
        "{event}"
    );
    // Both keys are trusted by the kernel; the pods roll to pick them up.
    assert_eq!(
        config.matches("/etc/fdc/keys/").count(),
        3,
        "signing key + 2 verify keys:\n{config}"
    );
    assert_ne!(new_hash, old_hash);
    drop(ctx);
    server.expect_done().await;

    // Same annotation again: already handled, so nothing is written.
    let (ctx, server) = test_context(&fake.base);
    let world = KernelWorld {
        kernel: kernel("k", 1),
        ..KernelWorld::running(&k, rotated, &admin, sts_with_status(&sts1, 1, 1))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    assert!(seen.created.is_empty() && seen.replaced.is_empty() && seen.events.is_empty());
    assert_eq!(config_hash(seen.applied("statefulsets")), new_hash);
    action.unwrap();
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn paused_kernel_only_reports_paused() {
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let mut k = kernel("k", 1);
    k.metadata.annotations = Some(
        [(
            crate::labels::PAUSE_ANNOTATION.to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    let (action, server, seen) = pass(
        server,
        Scenario::Paused(kernel("k", 1)),
        reconcile_kernel(&k, &ctx),
    )
    .await;
    assert_eq!(condition(seen.status(), "Paused")["status"], "True");
    assert_eq!(action.unwrap(), Action::await_change());
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn service_monitor_is_applied_when_the_crd_exists() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let world = KernelWorld {
        service_monitor_crd: true,
        ..KernelWorld::running(&k, &issuer, &admin, sts_with_status(&sts1, 1, 1))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    let monitor = seen.applied("servicemonitors");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert!(seen.status.is_some());
    action.unwrap();
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn a_disabled_service_monitor_is_deleted_where_the_crd_exists() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let mut k = kernel("k", 1);
    k.spec.service_monitor.enabled = false;

    // The Prometheus Operator is installed: the ServiceMonitor (applied while it was
    // enabled) is deleted, and none is applied.
    let (ctx, server) = test_context(&fake.base);
    let world = KernelWorld {
        service_monitor_crd: true,
        ..KernelWorld::running(&k, &issuer, &admin, sts_with_status(&sts1, 1, 1))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    action.unwrap();
    assert_eq!(seen.deleted, ["poddisruptionbudgets", "servicemonitors"]);
    assert!(!seen.applied.contains_key("servicemonitors"));
    assert_eq!(condition(seen.status(), "Ready")["status"], "True");
    drop(ctx);
    server.expect_done().await;

    // Not installed: there is nothing to delete, and nothing is asked to.
    let (ctx, server) = test_context(&fake.base);
    let world = KernelWorld::running(&k, &issuer, &admin, sts_with_status(&sts1, 1, 1));
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    action.unwrap();
    assert_eq!(seen.deleted, ["poddisruptionbudgets"]);
    drop(ctx);
    server.expect_done().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn a_malformed_kernel_gets_a_warning_event_and_no_retry_storm() {
    use crate::controller::reconcile;

    use kube::core::error_boundary::InvalidObject;
    use kube::core::DeserializeGuard;
    let fake = FakeKernel::start().await;
    let (ctx, server) = test_context(&fake.base);
    let invalid = InvalidObject {
        error: "spec.replicas: invalid type: string \"three\", expected i32".into(),
        metadata: kernel("k", 1).metadata,
    };
    let (action, server, seen) = pass(
        server,
        Scenario::InvalidSpec,
        reconcile::<FdcKernel>(
            std::sync::Arc::new(DeserializeGuard(Err(invalid))),
            ctx.clone(),
        ),
    )
    .await;
    assert_eq!(seen.event_reasons(), ["InvalidSpec"]);
    let event = &seen.events[0];
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "k");
    assert!(
        event["note"].as_str().unwrap().contains("expected i32"),
        "{event}"
    );
    assert_eq!(action.unwrap(), Action::await_change());
    drop(ctx);
    server.expect_done().await;
}

/// Kernel `k` reconciled pass after pass against one mock API server, with its credentials
/// (`creds`: issuer and admin Secrets, applied StatefulSet); each pass starts from the status
/// the previous one wrote.
struct Passes {
    ctx: std::sync::Arc<crate::controller::Context>,
    server: Option<fixtures::ApiServer>,
    k: FdcKernel,
    creds: (Value, Value, Value),
}

impl Passes {
    async fn start(fake: &FakeKernel, k: FdcKernel) -> Self {
        let (ctx, server) = test_context(&fake.base);
        Passes {
            ctx,
            server: Some(server),
            k,
            creds: credentials().await,
        }
    }

    /// One pass while the StatefulSet has `current` replicas (all ready). `victim` is the
    /// pod the pass reads before a scale-in step (None when not scaling in); after the apply
    /// the StatefulSet reports `pods_after` pods (pods, ready), and when not all are ready
    /// the pod list answers `pods`. Returns the applied replicas, the status patch and the
    /// Event notes, and updates `k.status` as the API server would.
    async fn step(
        &mut self,
        current: i64,
        victim: Option<Value>,
        pods_after: (i64, i64),
        pods: &[Value],
    ) -> (i64, Value, Vec<String>) {
        let (issuer, admin, sts1) = &self.creds;
        let world = KernelWorld {
            victim,
            sts_after: sts_answer(pods_after.0, pods_after.1),
            pods: pods.to_vec(),
            ..KernelWorld::running(&self.k, issuer, admin, existing_sts(sts1, current))
        };
        let server = self.server.take().expect("server");
        let (action, server, seen) = pass(
            server,
            Scenario::Kernel(world),
            reconcile_kernel(&self.k, &self.ctx),
        )
        .await;
        self.server = Some(server);
        action.unwrap();
        let replicas = seen.applied("statefulsets")["spec"]["replicas"]
            .as_i64()
            .unwrap();
        // A PDB with more than one replica, none (deleted) with one.
        if replicas > 1 {
            seen.applied("poddisruptionbudgets");
        } else {
            assert_eq!(seen.deleted, ["poddisruptionbudgets"]);
        }
        // The pods are listed every pass (their metrics give the lag and stored/s).
        assert!(seen.asked("GET", &pods_uri("k")));
        let status = seen.status().clone();
        self.k.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
        (replicas, status, seen.event_notes())
    }

    /// Ends the test: the server must have seen no request that was not answered.
    async fn done(self) {
        drop(self.ctx);
        self.server.expect("server").expect_done().await;
    }
}

fn summary(status: &Value) -> (String, String, String, String) {
    let r = condition(status, "Ready");
    let p = condition(status, "Progressing");
    (
        r["status"].as_str().unwrap().into(),
        r["reason"].as_str().unwrap().into(),
        p["status"].as_str().unwrap().into(),
        p["reason"].as_str().unwrap().into(),
    )
}

fn expect_summary(status: &Value, expected: [&str; 4]) {
    let (a, b, c, d) = summary(status);
    assert_eq!(
        [a.as_str(), b.as_str(), c.as_str(), d.as_str()],
        expected,
        "{status}"
    );
}

fn named_pod(name: &str, ready: bool) -> Value {
    let mut p = victim_pod(ready);
    p["metadata"]["name"] = json!(name);
    p
}

/// A settled kernel with 3 ready replicas.
fn settled_kernel(replicas: i32, settled: i32) -> FdcKernel {
    let mut k = kernel("k", replicas);
    k.status = Some(crate::crd::FdcKernelStatus {
        settled_replicas: Some(settled),
        ..Default::default()
    });
    k
}

#[tokio::test]
async fn scale_in_3_to_1_stays_ready_and_emits_one_event_per_step() {
    let fake = FakeKernel::start().await;
    fake.set_spill("k-2", 0);
    fake.set_spill("k-1", 0);
    let mut k = settled_kernel(1, 3);
    k.metadata.generation = Some(2);
    let mut passes = Passes::start(&fake, k).await;

    // Pass 1: k-2 is drained and goes; 3 pods still exist (k-2 terminating), all ready.
    let (replicas, status, notes) = passes
        .step(3, Some(named_pod("k-2", true)), (3, 3), &[])
        .await;
    assert_eq!(replicas, 2);
    assert_eq!(
        notes,
        ["removing pod k-2 (Ready, spill empty): replicas 3 -> 2, target 1"]
    );
    expect_summary(&status, ["True", "Available", "True", "ScalingIn"]);
    assert_eq!(status["status"]["settledReplicas"], 3);

    // Pass 2: the next step, with its own Event (not folded into the first one's series).
    let (replicas, status, notes) = passes
        .step(2, Some(named_pod("k-1", true)), (2, 2), &[])
        .await;
    assert_eq!(replicas, 1);
    assert_eq!(
        notes,
        ["removing pod k-1 (Ready, spill empty): replicas 2 -> 1, target 1"]
    );
    expect_summary(&status, ["True", "Available", "True", "ScalingIn"]);

    // Pass 3: k-1 still terminating (not ready): Ready holds on k-0, Progressing says why.
    let mut terminating = named_pod("k-1", false);
    terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    let pods = [named_pod("k-0", true), terminating];
    let (replicas, status, notes) = passes.step(1, None, (2, 1), &pods).await;
    assert_eq!(replicas, 1);
    assert!(notes.is_empty());
    expect_summary(&status, ["True", "Available", "True", "ScalingIn"]);

    // Pass 4: done.
    let (_, status, _) = passes.step(1, None, (1, 1), &[]).await;
    expect_summary(&status, ["True", "AllReplicasReady", "False", "RolledOut"]);
    assert_eq!(condition(&status, "Ready")["message"], "1/1 replicas ready");
    assert_eq!(status["status"]["settledReplicas"], 1);
    passes.done().await;
}

#[tokio::test]
async fn a_rollout_keeps_ready_until_a_pod_is_actually_down() {
    let fake = FakeKernel::start().await;
    let mut passes = Passes::start(&fake, settled_kernel(2, 2)).await;

    // Before the change: rolled out, both serve.
    let (_, status, _) = passes.step(2, None, (2, 2), &[]).await;
    expect_summary(&status, ["True", "AllReplicasReady", "False", "RolledOut"]);

    // Mid-rollout: k-1 is being replaced and its new container is starting.
    let Passes {
        ctx,
        server,
        k,
        creds: (issuer, admin, sts1),
    } = passes;
    let server = server.expect("server");
    let mut creating = named_pod("k-1", false);
    creating["status"]["containerStatuses"] = json!([{
        "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}
    }]);
    let world = KernelWorld {
        sts_after: Box::new(|applied| {
            let mut answer = sts_with_status(applied, 2, 1);
            answer["status"]["updatedReplicas"] = json!(1);
            answer["status"]["updateRevision"] = json!("r2");
            answer
        }),
        pods: vec![named_pod("k-0", true), creating],
        ..KernelWorld::running(&k, &issuer, &admin, existing_sts(&sts1, 2))
    };
    let (action, server, seen) =
        pass(server, Scenario::Kernel(world), reconcile_kernel(&k, &ctx)).await;
    action.unwrap();
    seen.applied("poddisruptionbudgets");
    let status = seen.status();
    expect_summary(status, ["False", "ReplicasNotReady", "True", "RollingOut"]);
    assert_eq!(
        condition(status, "Ready")["message"],
        "1/2 replicas ready: pod k-1: ContainerCreating; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
    );
    assert_eq!(
        condition(status, "Progressing")["message"],
        "1/2 pods updated, 1 ready"
    );
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn an_outage_names_each_replica_and_the_stalled_stage() {
    let fake = FakeKernel::start().await;
    fake.set_readyz(
        "k-0",
        503,
        "not ready: writer stalled: Postgres unreachable\n",
    );
    fake.set_stalled("k-0", &["writer"]);
    fake.set_readyz("k-1", 503, "not ready: Postgres unreachable\n");
    fake.set_stalled("k-1", &[]);
    let mut passes = Passes::start(&fake, settled_kernel(2, 2)).await;
    let mut k0 = named_pod("k-0", false);
    k0["status"]["podIP"] = json!("10.0.0.1");
    let mut k1 = named_pod("k-1", false);
    k1["status"]["podIP"] = json!("10.0.0.2");
    let (_, status, _) = passes.step(2, None, (2, 0), &[k1, k0]).await;
    expect_summary(&status, ["False", "Stalled", "False", "Stalled"]);
    assert_eq!(
        condition(&status, "Progressing")["message"],
        "all 2 pods run the current spec; ingest stalled (kernel_stalled): pod k-0: writer; 0 entries wait"
    );
    assert_eq!(
        condition(&status, "Ready")["message"],
        "0/2 replicas ready: pod k-0: writer stalled (kernel_stalled), not ready: writer stalled: Postgres unreachable; pod k-1: not ready: Postgres unreachable; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
    );
    passes.done().await;
}

/// Lag and stored/s come from the pods' `/metrics` every pass; entries that wait while no pod
/// acknowledges any between two passes turn `Progressing` False (`NoProgress`), and ingest
/// moving again turns it back.
#[tokio::test]
async fn status_shows_lag_stored_per_second_and_no_progress() {
    use crate::controller::fixtures::Ingesting;
    use crate::controller::kernel::reconcile_kernel_at;
    use k8s_openapi::jiff::Timestamp;

    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let mut k = settled_kernel(2, 2);
    let mut pods = Vec::new();
    for (i, name) in ["k-0", "k-1"].iter().enumerate() {
        let mut p = named_pod(name, true);
        p["status"]["podIP"] = json!(format!("10.0.0.{i}"));
        pods.push(p);
    }
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    let at = |seconds: i64| t0 + Duration::from_secs(seconds as u64);
    let figures = |lag, pending, stored, acked| Ingesting {
        lag,
        pending,
        stored,
        acked,
    };

    // (seconds, k-0, k-1) -> expected lag, pending, stored/s, Progressing reason.
    let passes = [
        (
            0,
            figures(40, 6, 1_000, 1_000),
            figures(38, 6, 2_000, 2_000),
        ),
        (
            60,
            figures(10, 2, 4_000, 4_000),
            figures(10, 2, 2_600, 2_600),
        ),
        (
            120,
            figures(25, 2, 4_000, 4_000),
            figures(25, 2, 2_600, 2_600),
        ),
        (
            180,
            figures(0, 0, 4_900, 4_930),
            figures(0, 0, 2_600, 2_600),
        ),
    ];
    let mut seen_status = Vec::new();
    for (seconds, k0, k1) in passes {
        fake.set_ingest("k-0", k0);
        fake.set_ingest("k-1", k1);
        let world = KernelWorld {
            sts_after: sts_answer(2, 2),
            pods: pods.clone(),
            ..KernelWorld::running(&k, &issuer, &admin, existing_sts(&sts1, 2))
        };
        let (action, next, seen) = pass(
            server,
            Scenario::Kernel(world),
            reconcile_kernel_at(&k, &ctx, at(seconds)),
        )
        .await;
        server = next;
        let status = seen.status().clone();
        k.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
        seen_status.push((action.unwrap(), status));
    }
    let figures: Vec<(Value, Value, Value, Value)> = seen_status
        .iter()
        .map(|(_, s)| {
            (
                s["status"]["lag"].clone(),
                s["status"]["pending"].clone(),
                s["status"]["storedPerSecond"].clone(),
                condition(s, "Progressing")["reason"].clone(),
            )
        })
        .collect();
    assert_eq!(
        figures,
        [
            // The group's lag (the largest reading of the replicas), no rate yet.
            (json!(40), json!(6), Value::Null, json!("RolledOut")),
            // (3000 + 600) events in 60 s.
            (json!(10), json!(2), json!(60.0), json!("RolledOut")),
            // 27 entries wait, nothing acknowledged in 60 s.
            (json!(25), json!(2), json!(0.0), json!("NoProgress")),
            // 900 stored (and 930 acknowledged) in 60 s: moving again.
            (json!(0), json!(0), json!(15.0), json!("RolledOut")),
        ]
    );
    let (action, stalled) = &seen_status[2];
    assert_eq!(condition(stalled, "Progressing")["status"], "False");
    assert_eq!(
        condition(stalled, "Progressing")["message"],
        "all 2 pods run the current spec; 27 entries wait (lag 25, pending 2) and none was acknowledged in the last 60s"
    );
    assert_eq!(condition(stalled, "Ready")["status"], "True");
    // A stall is looked at again soon; a kernel that moves at the idle period.
    assert_eq!(*action, Action::requeue(Duration::from_secs(10)));
    assert_eq!(seen_status[3].0, Action::requeue(Duration::from_secs(60)));
    drop(ctx);
    server.expect_done().await;
}
