//! `FdcKernel` reconciler against the mock API server: exact request sequences.

use std::time::Duration;

use kube::runtime::controller::Action;
use serde_json::{json, Value};

use crate::controller::fixtures::{
    self, kernel, secret_with_key, test_context, ApiServer, FakeKernel, NS,
};
use crate::controller::kernel::reconcile_kernel;
use crate::crd::FdcKernel;
use crate::labels::ROTATE_ISSUER_KEY_ANNOTATION;

const APPLY: &str = "?&force=true&fieldManager=fdc-operator";

fn core(kind: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/{kind}/{name}")
}

fn sts_uri(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
}

fn status_uri(name: &str) -> String {
    format!("/apis/fdc.dev/v1alpha1/namespaces/{NS}/fdckernels/{name}/status{APPLY}")
}

/// A StatefulSet as the API server returns it after an apply, with a status.
fn sts_with_status(applied: &Value, replicas: i64, ready: i64) -> Value {
    let mut sts = applied.clone();
    sts["metadata"]["generation"] = json!(1);
    sts["status"] = json!({
        "observedGeneration": 1, "replicas": replicas, "readyReplicas": ready,
        "updatedReplicas": replicas, "currentRevision": "r1", "updateRevision": "r1"
    });
    sts
}

const PODS_URI: &str = "/api/v1/namespaces/apps/pods?&labelSelector=app.kubernetes.io%2Finstance%3Dk%2Capp.kubernetes.io%2Fname%3Dfdc-kernel";

/// Answers the list of the kernel's pods (asked when some are not ready).
async fn expect_pods(server: &mut ApiServer, pods: &[Value]) {
    server.expect("GET", PODS_URI).await.ok(&json!({
        "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods
    }));
}

/// Pod `name`: `ip` None = just created (no IP), `ready` its Ready condition.
fn pod(name: &str, ip: Option<&str>, ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// Answers the credential reads of a kernel whose Secrets exist.
async fn existing_credentials(server: &mut ApiServer, issuer: &Value, admin: &Value) {
    server
        .expect("GET", &core("secrets", "k-issuer-keys"))
        .await
        .ok(issuer);
    server
        .expect("GET", &core("secrets", "k-admin-token"))
        .await
        .ok(admin);
}

/// Everything a new single-replica kernel causes, in order. Returns the created Secrets,
/// the applied StatefulSet and the status patch.
async fn first_pass(server: &mut ApiServer) -> (Value, Value, Value, Value) {
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));

    // Issuer key: absent, so generated and created once, with an Event.
    server
        .expect("GET", &core("secrets", "k-issuer-keys"))
        .await
        .not_found();
    let call = server
        .expect(
            "POST",
            &format!("/api/v1/namespaces/{NS}/secrets?&fieldManager=fdc-operator"),
        )
        .await;
    let issuer = call.body.clone();
    call.echo();
    server.expect_event(NS, "IssuerKeyCreated").await;

    server
        .expect("GET", &core("secrets", "k-admin-token"))
        .await
        .not_found();
    let call = server
        .expect(
            "POST",
            &format!("/api/v1/namespaces/{NS}/secrets?&fieldManager=fdc-operator"),
        )
        .await;
    let admin = call.body.clone();
    call.echo();
    server.expect_event(NS, "AdminTokenCreated").await;

    let cm = server
        .expect(
            "PATCH",
            &format!("{}{APPLY}", core("configmaps", "k-config")),
        )
        .await;
    assert!(cm.body["data"]["kernel.yaml"]
        .as_str()
        .unwrap()
        .contains("group: kernel"));
    cm.echo();

    server.expect("GET", &sts_uri("k")).await.not_found();
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    let sts = call.body.clone();
    call.ok(&sts_with_status(&sts, 1, 0));

    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    // One replica: no PDB (it would block node drains), and a stale one is removed.
    server
        .expect(
            "DELETE",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k?"),
        )
        .await
        .not_found();
    server
        .expect("GET", "/apis/monitoring.coreos.com/v1")
        .await
        .not_found();
    // The pod is not ready: the status says which and why.
    expect_pods(server, &[pod("k-0", None, false)]).await;

    let call = server.expect("PATCH", &status_uri("k")).await;
    let status = call.body.clone();
    call.status_ok(&kernel("k", 1));
    (issuer, admin, sts, status)
}

#[tokio::test]
async fn new_kernel_creates_everything_once_and_a_second_pass_regenerates_nothing() {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", 1);

    let task = tokio::spawn({
        let ctx = ctx.clone();
        let k = k.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    let (issuer, admin, sts, status) = first_pass(&mut server).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(10))
    );

    // Secrets: owned by the kernel, with the files the pod mounts.
    for secret in [&issuer, &admin] {
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
    let hash = spec["template"]["metadata"]["annotations"]["fdc.dev/config-hash"].clone();
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
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));
    existing_credentials(&mut server, &issuer, &admin).await;
    server
        .expect(
            "PATCH",
            &format!("{}{APPLY}", core("configmaps", "k-config")),
        )
        .await
        .echo();
    server
        .expect("GET", &sts_uri("k"))
        .await
        .ok(&sts_with_status(&sts, 1, 1));
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    assert_eq!(
        call.body["spec"]["template"]["metadata"]["annotations"]["fdc.dev/config-hash"],
        hash
    );
    let applied = call.body.clone();
    call.ok(&sts_with_status(&applied, 1, 1));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "DELETE",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k?"),
        )
        .await
        .not_found();
    // ServiceMonitor discovery is cached: no second lookup.
    let call = server.expect("PATCH", &status_uri("k")).await;
    assert_eq!(condition(&call.body, "Ready")["status"], "True");
    assert_eq!(
        condition(&call.body, "Ready")["message"],
        "1/1 replicas ready"
    );
    assert_eq!(condition(&call.body, "Progressing")["status"], "False");
    call.status_ok(&kernel("k", 1));
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(300))
    );

    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn missing_postgres_secret_is_degraded_with_a_clear_message_and_creates_nothing() {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .not_found();
    let event = server.expect_event(NS, "SecretMissing").await;
    assert_eq!(event["type"], "Warning");
    let call = server.expect("PATCH", &status_uri("k")).await;
    let degraded = condition(&call.body, "Degraded").clone();
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
    assert_eq!(condition(&call.body, "Ready")["status"], "False");
    call.status_ok(&kernel("k", 1));
    // A plain requeue, not an error: no crash loop, no error backoff storm.
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn secret_without_the_key_is_reported_too() {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "uri"));
    server.expect_event(NS, "SecretMissing").await;
    let call = server.expect("PATCH", &status_uri("k")).await;
    let message = condition(&call.body, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with("Postgres URL: Secret pg has no key \"url\""),
        "{message}"
    );
    call.status_ok(&kernel("k", 1));
    task.await.unwrap().unwrap();
}

/// Runs one pass up to the StatefulSet read, with existing credentials.
async fn pass_until_sts_get(server: &mut ApiServer, issuer: &Value, admin: &Value) {
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));
    existing_credentials(server, issuer, admin).await;
    server
        .expect(
            "PATCH",
            &format!("{}{APPLY}", core("configmaps", "k-config")),
        )
        .await
        .echo();
}

/// Creates credentials by running a first pass on a throwaway context.
async fn credentials() -> (Value, Value, Value) {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let task = tokio::spawn(async move { reconcile_kernel(&k, &ctx).await });
    let (issuer, admin, sts, _) = first_pass(&mut server).await;
    task.await.unwrap().unwrap();
    (issuer, admin, sts)
}

#[tokio::test]
async fn scale_out_applies_replicas_and_a_pdb() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = settled_kernel(3, 1);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    pass_until_sts_get(&mut server, &issuer, &admin).await;
    server
        .expect("GET", &sts_uri("k"))
        .await
        .ok(&sts_with_status(&sts1, 1, 1));
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    assert_eq!(call.body["spec"]["replicas"], 3);
    let applied = call.body.clone();
    call.ok(&sts_with_status(&applied, 3, 1));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    let call = server
        .expect(
            "PATCH",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k{APPLY}"),
        )
        .await;
    assert_eq!(call.body["spec"]["maxUnavailable"], 1);
    assert_eq!(
        call.body["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "k"
    );
    call.echo();
    server
        .expect("GET", "/apis/monitoring.coreos.com/v1")
        .await
        .not_found();
    let mut pulling = named_pod("k-2", false);
    pulling["status"]["containerStatuses"] = json!([{
        "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ErrImagePull", "message": "pull access denied"}}
    }]);
    expect_pods(
        &mut server,
        &[named_pod("k-0", true), named_pod("k-1", false), pulling],
    )
    .await;
    let call = server.expect("PATCH", &status_uri("k")).await;
    assert_eq!(call.body["status"]["replicas"], 3);
    assert_eq!(call.body["status"]["readyReplicas"], 1);
    // The one replica that served before the scale-out still does: available.
    expect_summary(&call.body, ["True", "Available", "True", "ScalingOut"]);
    assert_eq!(
        condition(&call.body, "Progressing")["message"],
        "scaling out from 1 to 3 replicas: 1/3 ready"
    );
    assert_eq!(call.body["status"]["settledReplicas"], 1);
    call.status_ok(&kernel("k", 1));
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(10))
    );
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
/// is whatever `fake` says.
async fn scale_in_pass(
    fake: &FakeKernel,
    issuer: &Value,
    admin: &Value,
    sts1: &Value,
    desired: i32,
    victim: Value,
) -> (Value, Value, Option<Value>) {
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", desired);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    pass_until_sts_get(&mut server, issuer, admin).await;
    let mut existing = sts_with_status(sts1, 3, 3);
    existing["spec"]["replicas"] = json!(3);
    server.expect("GET", &sts_uri("k")).await.ok(&existing);
    server.expect("GET", &core("pods", "k-2")).await.ok(&victim);
    let mut event = None;
    let first = server.next().await;
    let call = if first.method == "POST" {
        event = Some(first.body.clone());
        first.echo();
        server
            .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
            .await
    } else {
        assert_eq!(first.uri, format!("{}{APPLY}", sts_uri("k")));
        first
    };
    let applied = call.body.clone();
    let replicas = applied["spec"]["replicas"].as_i64().unwrap();
    call.ok(&sts_with_status(&applied, replicas, replicas));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "PATCH",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k{APPLY}"),
        )
        .await
        .echo();
    server
        .expect("GET", "/apis/monitoring.coreos.com/v1")
        .await
        .not_found();
    let call = server.expect("PATCH", &status_uri("k")).await;
    let status = call.body.clone();
    call.status_ok(&kernel("k", 1));
    task.await.unwrap().unwrap();
    drop(ctx);
    server.expect_done().await;
    (applied, status, event)
}

#[tokio::test]
async fn scale_in_waits_for_the_spill_to_drain_then_removes_one_pod() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;

    // Spill not empty: the StatefulSet keeps 3 replicas and SpillDrained says why.
    fake.set_spill("k-2", 4096);
    let (applied, status, event) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 1, victim_pod(true)).await;
    assert_eq!(applied["spec"]["replicas"], 3);
    assert!(event.is_none());
    let drained = condition(&status, "SpillDrained");
    assert_eq!(drained["status"], "False");
    assert_eq!(drained["reason"], "SpillPending");
    assert!(
        drained["message"]
            .as_str()
            .unwrap()
            .contains("pod k-2 still holds 4096 spilled records"),
        "{drained}"
    );
    assert_eq!(condition(&status, "Progressing")["reason"], "ScalingIn");
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
    let (applied, status, event) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 2, victim_pod(false)).await;
    assert_eq!(applied["spec"]["replicas"], 3);
    assert!(event.is_none());
    let drained = condition(&status, "SpillDrained");
    assert_eq!(drained["status"], "False");
    assert_eq!(drained["reason"], "SpillPending");
    assert!(
        drained["message"]
            .as_str()
            .unwrap()
            .starts_with("scale-in waits: pod k-2 is not Ready"),
        "{drained}"
    );
    assert_eq!(condition(&status, "Progressing")["reason"], "ScalingIn");

    // Ready again: it goes.
    let (applied, _, event) =
        scale_in_pass(&fake, &issuer, &admin, &sts1, 2, victim_pod(true)).await;
    assert_eq!(applied["spec"]["replicas"], 2);
    assert_eq!(event.expect("event")["reason"], "ScalingIn");
}

#[tokio::test]
async fn a_config_the_kernel_refuses_is_degraded_and_nothing_is_applied() {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    // 90s shutdown timeout vs. the kernel's default ingest.claim_idle of 60s: the kernel
    // would exit at start-up (a crash loop reported only as ReplicasNotReady).
    let mut k = kernel("k", 2);
    k.spec.shutdown_timeout = "90s".into();
    k.metadata.generation = Some(4);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));
    // No credential reads or writes, no ConfigMap, no StatefulSet: an Event, then the status.
    let event = server.expect_event(NS, "InvalidConfig").await;
    assert_eq!(event["type"], "Warning");
    let call = server.expect("PATCH", &status_uri("k")).await;
    let degraded = condition(&call.body, "Degraded").clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "InvalidConfig");
    assert_eq!(degraded["observedGeneration"], 4);
    let expected = "the kernel refuses the rendered kernel.yaml: invalid config key `ingest.claim_idle`: does not exceed shutdown.timeout, so a draining replica's batch could be claimed; fix: raise ingest.claim_idle or lower shutdown.timeout. In the FdcKernel: ingest.claim_idle is spec.config.ingest.claim_idle, shutdown.timeout is spec.shutdownTimeout. Nothing was applied; the pods keep their current config. Fix the FdcKernel (the operator retries every 30s)";
    assert_eq!(degraded["message"], expected);
    assert_eq!(event["note"], expected);
    let ready = condition(&call.body, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "InvalidConfig");
    assert_eq!(call.body["status"]["observedGeneration"], 4);
    call.status_ok(&kernel("k", 2));
    // A plain requeue, not an error: no retry storm.
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn rotation_annotation_rotates_once_keeps_the_old_key_and_changes_the_pod_hash() {
    let (issuer, admin, sts1) = credentials().await;
    let old_hash =
        sts1["spec"]["template"]["metadata"]["annotations"]["fdc.dev/config-hash"].clone();
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let mut k: FdcKernel = kernel("k", 1);
    k.metadata.annotations = Some(
        [(
            ROTATE_ISSUER_KEY_ANNOTATION.to_string(),
            "2026-01-01".to_string(),
        )]
        .into(),
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let k = k.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));
    let mut stored = issuer.clone();
    stored["metadata"]["resourceVersion"] = json!("41");
    server
        .expect("GET", &core("secrets", "k-issuer-keys"))
        .await
        .ok(&stored);
    let call = server
        .expect("PUT", &format!("{}?", core("secrets", "k-issuer-keys")))
        .await;
    let rotated = call.body.clone();
    call.echo();
    let event = server.expect_event(NS, "IssuerKeyRotated").await;
    server
        .expect("GET", &core("secrets", "k-admin-token"))
        .await
        .ok(&admin);
    let cm = server
        .expect(
            "PATCH",
            &format!("{}{APPLY}", core("configmaps", "k-config")),
        )
        .await;
    let config = cm.body["data"]["kernel.yaml"].as_str().unwrap().to_string();
    cm.echo();
    server
        .expect("GET", &sts_uri("k"))
        .await
        .ok(&sts_with_status(&sts1, 1, 1));
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    let new_hash =
        call.body["spec"]["template"]["metadata"]["annotations"]["fdc.dev/config-hash"].clone();
    let applied = call.body.clone();
    call.ok(&sts_with_status(&applied, 1, 1));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "DELETE",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k?"),
        )
        .await
        .not_found();
    server
        .expect("GET", "/apis/monitoring.coreos.com/v1")
        .await
        .not_found();
    let status = server.expect("PATCH", &status_uri("k")).await;
    let new_kid = status.body["status"]["issuerKeyId"]
        .as_str()
        .unwrap()
        .to_string();
    status.status_ok(&kernel("k", 1));
    let action = task.await.unwrap().unwrap();
    // Requeued in time to retire the old key (24h + 5m margin), not the idle 5 minutes.
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));

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
    let (ctx, mut server) = test_context(&fake.base);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    server
        .expect("GET", &core("secrets", "pg"))
        .await
        .ok(&secret_with_key("pg", "url"));
    server
        .expect("GET", &core("secrets", "k-issuer-keys"))
        .await
        .ok(&rotated);
    server
        .expect("GET", &core("secrets", "k-admin-token"))
        .await
        .ok(&admin);
    server
        .expect(
            "PATCH",
            &format!("{}{APPLY}", core("configmaps", "k-config")),
        )
        .await
        .echo();
    server
        .expect("GET", &sts_uri("k"))
        .await
        .ok(&sts_with_status(&sts1, 1, 1));
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    assert_eq!(
        call.body["spec"]["template"]["metadata"]["annotations"]["fdc.dev/config-hash"],
        new_hash
    );
    let applied = call.body.clone();
    call.ok(&sts_with_status(&applied, 1, 1));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "DELETE",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k?"),
        )
        .await
        .not_found();
    server
        .expect("GET", "/apis/monitoring.coreos.com/v1")
        .await
        .not_found();
    server
        .expect("PATCH", &status_uri("k"))
        .await
        .status_ok(&kernel("k", 1));
    task.await.unwrap().unwrap();
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn paused_kernel_only_reports_paused() {
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let mut k = kernel("k", 1);
    k.metadata.annotations = Some(
        [(
            crate::labels::PAUSE_ANNOTATION.to_string(),
            "true".to_string(),
        )]
        .into(),
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    let call = server.expect("PATCH", &status_uri("k")).await;
    assert_eq!(condition(&call.body, "Paused")["status"], "True");
    call.status_ok(&kernel("k", 1));
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn service_monitor_is_applied_when_the_crd_exists() {
    let (issuer, admin, sts1) = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let k = kernel("k", 1);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    pass_until_sts_get(&mut server, &issuer, &admin).await;
    server
        .expect("GET", &sts_uri("k"))
        .await
        .ok(&sts_with_status(&sts1, 1, 1));
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    let applied = call.body.clone();
    call.ok(&sts_with_status(&applied, 1, 1));
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "DELETE",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k?"),
        )
        .await
        .not_found();
    server.expect("GET", "/apis/monitoring.coreos.com/v1").await.ok(&json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
        "resources": [{"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true,
                       "kind": "ServiceMonitor", "verbs": ["get", "patch"]}]
    }));
    let call = server
        .expect(
            "PATCH",
            &format!("/apis/monitoring.coreos.com/v1/namespaces/{NS}/servicemonitors/k{APPLY}"),
        )
        .await;
    assert_eq!(call.body["kind"], "ServiceMonitor");
    assert_eq!(call.body["spec"]["endpoints"][0]["port"], "http");
    call.echo();
    server
        .expect("PATCH", &status_uri("k"))
        .await
        .status_ok(&kernel("k", 1));
    task.await.unwrap().unwrap();
    drop(ctx);
    server.expect_done().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[tokio::test]
async fn a_malformed_kernel_gets_a_warning_event_and_no_retry_storm() {
    use crate::controller::kernel::reconcile;
    use kube::core::error_boundary::InvalidObject;
    use kube::core::DeserializeGuard;
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let invalid = InvalidObject {
        error: "spec.replicas: invalid type: string \"three\", expected i32".into(),
        metadata: kernel("k", 1).metadata,
    };
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { reconcile(std::sync::Arc::new(DeserializeGuard(Err(invalid))), ctx).await }
    });
    let event = server.expect_event(NS, "InvalidSpec").await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "k");
    assert!(
        event["note"].as_str().unwrap().contains("expected i32"),
        "{event}"
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    drop(ctx);
    server.expect_done().await;
}

/// One reconcile pass of kernel `k` whose StatefulSet has `current` replicas (all ready).
/// `victim` is the pod the pass reads before a scale-in step (None when not scaling in);
/// after the apply the StatefulSet reports `pods_after` pods (pods, ready), and when not all
/// are ready the pod list answers `pods`. Returns the applied replicas, the status patch and
/// the Event notes, and updates `k.status` as the API server would.
#[allow(clippy::too_many_arguments)]
async fn step(
    ctx: &std::sync::Arc<crate::controller::Context>,
    server: &mut ApiServer,
    k: &mut FdcKernel,
    creds: &(Value, Value, Value),
    current: i64,
    victim: Option<Value>,
    pods_after: (i64, i64),
    pods: &[Value],
) -> (i64, Value, Vec<String>) {
    let (issuer, admin, sts1) = creds;
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let k = k.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    pass_until_sts_get(server, issuer, admin).await;
    let mut existing = sts_with_status(sts1, current, current);
    existing["spec"]["replicas"] = json!(current);
    server.expect("GET", &sts_uri("k")).await.ok(&existing);
    if let Some(victim) = victim {
        let name = victim["metadata"]["name"].as_str().unwrap().to_string();
        server.expect("GET", &core("pods", &name)).await.ok(&victim);
    }
    let mut notes = Vec::new();
    let call = loop {
        let call = server.next().await;
        if call.method == "POST" && call.uri.contains("/events") {
            notes.push(call.body["note"].as_str().unwrap().to_string());
            call.echo();
            continue;
        }
        assert_eq!(call.uri, format!("{}{APPLY}", sts_uri("k")));
        break call;
    };
    let applied = call.body.clone();
    let replicas = applied["spec"]["replicas"].as_i64().unwrap();
    let mut answer = sts_with_status(&applied, pods_after.0, pods_after.1);
    answer["status"]["updatedReplicas"] = json!(pods_after.0);
    call.ok(&answer);
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    let pdb = format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k");
    if replicas > 1 {
        server
            .expect("PATCH", &format!("{pdb}{APPLY}"))
            .await
            .echo();
    } else {
        server
            .expect("DELETE", &format!("{pdb}?"))
            .await
            .not_found();
    }
    let mut call = server.next().await;
    if call.uri == "/apis/monitoring.coreos.com/v1" {
        call.not_found(); // asked once per context
        call = server.next().await;
    }
    if pods_after.1 < pods_after.0.max(replicas) {
        assert_eq!(call.uri, PODS_URI);
        call.ok(&json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods}));
        call = server.next().await;
    }
    assert_eq!(
        (call.method.as_str(), call.uri.as_str()),
        ("PATCH", status_uri("k").as_str())
    );
    let status = call.body.clone();
    call.status_ok(&*k);
    task.await.unwrap().unwrap();
    k.status = Some(serde_json::from_value(status["status"].clone()).unwrap());
    (replicas, status, notes)
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
    let creds = credentials().await;
    let fake = FakeKernel::start().await;
    fake.set_spill("k-2", 0);
    fake.set_spill("k-1", 0);
    let (ctx, mut server) = test_context(&fake.base);
    let mut k = settled_kernel(1, 3);
    k.metadata.generation = Some(2);

    // Pass 1: k-2 is drained and goes; 3 pods still exist (k-2 terminating), all ready.
    let (replicas, status, notes) = step(
        &ctx,
        &mut server,
        &mut k,
        &creds,
        3,
        Some(named_pod("k-2", true)),
        (3, 3),
        &[],
    )
    .await;
    assert_eq!(replicas, 2);
    assert_eq!(
        notes,
        ["removing pod k-2 (Ready, spill empty): replicas 3 -> 2, target 1"]
    );
    expect_summary(&status, ["True", "Available", "True", "ScalingIn"]);
    assert_eq!(status["status"]["settledReplicas"], 3);

    // Pass 2: the next step, with its own Event (not folded into the first one's series).
    let (replicas, status, notes) = step(
        &ctx,
        &mut server,
        &mut k,
        &creds,
        2,
        Some(named_pod("k-1", true)),
        (2, 2),
        &[],
    )
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
    let (replicas, status, notes) = step(
        &ctx,
        &mut server,
        &mut k,
        &creds,
        1,
        None,
        (2, 1),
        &[named_pod("k-0", true), terminating],
    )
    .await;
    assert_eq!(replicas, 1);
    assert!(notes.is_empty());
    expect_summary(&status, ["True", "Available", "True", "ScalingIn"]);

    // Pass 4: done.
    let (_, status, _) = step(&ctx, &mut server, &mut k, &creds, 1, None, (1, 1), &[]).await;
    expect_summary(&status, ["True", "AllReplicasReady", "False", "RolledOut"]);
    assert_eq!(condition(&status, "Ready")["message"], "1/1 replicas ready");
    assert_eq!(status["status"]["settledReplicas"], 1);
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn a_rollout_keeps_ready_until_a_pod_is_actually_down() {
    let creds = credentials().await;
    let fake = FakeKernel::start().await;
    let (ctx, mut server) = test_context(&fake.base);
    let mut k = settled_kernel(2, 2);

    // Before the change: rolled out, both serve.
    let (_, status, _) = step(&ctx, &mut server, &mut k, &creds, 2, None, (2, 2), &[]).await;
    expect_summary(&status, ["True", "AllReplicasReady", "False", "RolledOut"]);

    // Mid-rollout: k-1 is being replaced and its new container is starting.
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let k = k.clone();
        async move { reconcile_kernel(&k, &ctx).await }
    });
    let (issuer, admin, sts1) = &creds;
    pass_until_sts_get(&mut server, issuer, admin).await;
    let mut existing = sts_with_status(sts1, 2, 2);
    existing["spec"]["replicas"] = json!(2);
    server.expect("GET", &sts_uri("k")).await.ok(&existing);
    let call = server
        .expect("PATCH", &format!("{}{APPLY}", sts_uri("k")))
        .await;
    let mut answer = sts_with_status(&call.body, 2, 1);
    answer["status"]["updatedReplicas"] = json!(1);
    answer["status"]["updateRevision"] = json!("r2");
    call.ok(&answer);
    server
        .expect("PATCH", &format!("{}{APPLY}", core("services", "k")))
        .await
        .echo();
    server
        .expect(
            "PATCH",
            &format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/k{APPLY}"),
        )
        .await
        .echo();
    let mut creating = named_pod("k-1", false);
    creating["status"]["containerStatuses"] = json!([{
        "name": "kernel", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}}
    }]);
    expect_pods(&mut server, &[named_pod("k-0", true), creating]).await;
    let call = server.expect("PATCH", &status_uri("k")).await;
    let status = call.body.clone();
    call.status_ok(&k);
    task.await.unwrap().unwrap();
    expect_summary(&status, ["False", "ReplicasNotReady", "True", "RollingOut"]);
    assert_eq!(
        condition(&status, "Ready")["message"],
        "1/2 replicas ready: pod k-1: ContainerCreating; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
    );
    assert_eq!(
        condition(&status, "Progressing")["message"],
        "1/2 pods updated, 1 ready"
    );
    drop(ctx);
    server.expect_done().await;
}

#[tokio::test]
async fn an_outage_names_each_replica_and_the_stalled_stage() {
    let creds = credentials().await;
    let fake = FakeKernel::start().await;
    fake.set_readyz(
        "k-0",
        503,
        "not ready: writer stalled: Postgres unreachable\n",
    );
    fake.set_stalled("k-0", &["writer"]);
    fake.set_readyz("k-1", 503, "not ready: Postgres unreachable\n");
    fake.set_stalled("k-1", &[]);
    let (ctx, mut server) = test_context(&fake.base);
    let mut k = settled_kernel(2, 2);
    let mut k0 = named_pod("k-0", false);
    k0["status"]["podIP"] = json!("10.0.0.1");
    let mut k1 = named_pod("k-1", false);
    k1["status"]["podIP"] = json!("10.0.0.2");
    let (_, status, _) = step(
        &ctx,
        &mut server,
        &mut k,
        &creds,
        2,
        None,
        (2, 0),
        &[k1, k0],
    )
    .await;
    expect_summary(&status, ["False", "Stalled", "False", "RolledOut"]);
    assert_eq!(
        condition(&status, "Ready")["message"],
        "0/2 replicas ready: pod k-0: writer stalled (kernel_stalled), not ready: writer stalled: Postgres unreachable; pod k-1: not ready: Postgres unreachable; see `kubectl describe pod -l app.kubernetes.io/instance=k`"
    );
    drop(ctx);
    server.expect_done().await;
}
