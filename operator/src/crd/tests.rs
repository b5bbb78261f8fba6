//! CRD generation and the schema's CEL rules, evaluated client-side (kube's `cel` feature).

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use serde_json::{json, Value};

use crate::crd::{crds, FdcKernel, FdcSchema, Producer};

fn schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

/// The rules as kube-cel needs them. kube-cel 0.8 escapes every `_` of a property name to
/// `__`, while the API server (apiserver/schema/cel/model/escaping.go) escapes only `__`
/// and leaves `claim_idle` as is; the CRD carries the API server's spelling, so the
/// client-side check renames the one such field a rule reads.
fn kube_cel_names(schema: Value) -> Value {
    let text = serde_json::to_string(&schema).unwrap();
    serde_json::from_str(&text.replace(
        "self.config.ingest.claim_idle",
        "self.config.ingest.claim__idle",
    ))
    .unwrap()
}

/// The `required` properties of an object `schema`.
fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn kernel_obj(spec: Value) -> Value {
    json!({"apiVersion": "fdc.dev/v1alpha1", "kind": "FdcKernel", "metadata": {"name": "k"}, "spec": spec})
}

fn base_spec() -> Value {
    json!({
        "image": "fdc-kernel:1",
        "redis": {"url": "redis://r:6379"},
        "postgres": {"urlSecretRef": {"name": "pg"}},
    })
}

/// CEL messages for `obj` (against `old` for transition rules).
fn cel_errors<K: CustomResourceExt>(obj: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&kube_cel_names(schema::<K>()), obj, old) {
        Ok(()) => vec![],
        Err(errors) => errors.into_vec().into_iter().map(|e| e.message).collect(),
    }
}

#[test]
fn crds_have_names_subresources_and_printer_columns() {
    let all = crds();
    let names: Vec<_> = all
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "fdckernels.fdc.dev",
            "producers.fdc.dev",
            "fdcschemas.fdc.dev"
        ]
    );

    let k = &FdcKernel::crd().spec.versions[0];
    let scale = k.subresources.as_ref().unwrap().scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    assert!(k.subresources.as_ref().unwrap().status.is_some());
    let cols: Vec<_> = k
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        cols,
        vec![
            "Ready",
            "Replicas",
            "Available",
            "Lag",
            "Stored/s",
            "Reason",
            "Progressing",
            "Age"
        ]
    );

    let p = &Producer::crd().spec.versions[0];
    let columns = p.additional_printer_columns.as_ref().unwrap();
    let cols: Vec<_> = columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cols,
        vec![
            "Kernel",
            "Ready",
            "Expires In",
            "Last Seen",
            "Expires At",
            "Reason",
            "Age"
        ]
    );
    // kubectl renders a `date` column as the age of a time, so a future expiry would read
    // `<invalid>`: the expiry columns are strings (time left, and the timestamp).
    for c in columns.iter().filter(|c| c.name.starts_with("Expires")) {
        assert_eq!(c.type_, "string", "{}", c.name);
    }
    let dates: Vec<_> = columns
        .iter()
        .filter(|c| c.type_ == "date")
        .map(|c| c.json_path.as_str())
        .collect();
    assert_eq!(
        dates,
        vec![".status.lastSeenAt", ".metadata.creationTimestamp"],
        "only past times as dates"
    );
}

#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    for s in [
        schema::<FdcKernel>(),
        schema::<Producer>(),
        schema::<FdcSchema>(),
    ] {
        let conditions = &s["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map", "{conditions}");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
        assert!(conditions["items"]["properties"]["observedGeneration"].is_object());
    }
}

#[test]
fn schema_carries_ranges_defaults_and_required_fields() {
    let s = schema::<FdcKernel>();
    let spec = &s["properties"]["spec"];
    assert_eq!(
        spec["properties"]["replicas"]["minimum"].as_f64(),
        Some(0.0)
    );
    assert_eq!(
        spec["properties"]["replicas"]["maximum"].as_f64(),
        Some(64.0)
    );
    assert_eq!(spec["properties"]["replicas"]["default"], 1);
    assert_eq!(spec["properties"]["streams"]["minItems"], 1);
    assert_eq!(
        spec["properties"]["streams"]["x-kubernetes-list-type"],
        "set"
    );
    assert_eq!(required(spec), vec!["image", "postgres", "redis"]);
    assert_eq!(
        spec["properties"]["config"]["x-kubernetes-preserve-unknown-fields"],
        true
    );
}

#[test]
fn redis_url_pattern_takes_single_servers_and_cluster_seeds() {
    let s = schema::<FdcKernel>();
    let pattern = s["properties"]["spec"]["properties"]["redis"]["properties"]["url"]["pattern"]
        .as_str()
        .unwrap()
        .to_string();
    let re = regex::Regex::new(&pattern).unwrap();
    for ok in [
        "redis://redis:6379/0",
        "rediss://redis:6380/0",
        "redis+cluster://redis-0:6379,redis-1:6379/",
    ] {
        assert!(re.is_match(ok), "{ok} refused by {pattern}");
    }
    for bad in ["http://redis:6379", "redis-cluster://a:1/", "redis:6379"] {
        assert!(!re.is_match(bad), "{bad} accepted by {pattern}");
    }
}

#[test]
fn a_valid_kernel_passes_cel() {
    assert_eq!(
        cel_errors::<FdcKernel>(&kernel_obj(base_spec()), None),
        Vec::<String>::new()
    );
}

#[test]
fn redis_needs_exactly_one_source() {
    let mut spec = base_spec();
    spec["redis"]["urlSecretRef"] = json!({"name": "redis"});
    assert_eq!(
        cel_errors::<FdcKernel>(&kernel_obj(spec), None),
        vec!["set exactly one of redis.url and redis.urlSecretRef"]
    );
    let mut spec = base_spec();
    spec["redis"] = json!({});
    assert_eq!(cel_errors::<FdcKernel>(&kernel_obj(spec), None).len(), 1);
}

#[test]
fn republishing_into_an_ingest_stream_is_refused() {
    let mut spec = base_spec();
    spec["streams"] = json!(["events", "audit"]);
    spec["republish"] = json!({"enabled": true, "stream": "audit"});
    assert_eq!(
        cel_errors::<FdcKernel>(&kernel_obj(spec.clone()), None),
        vec!["republish.stream must not be one of the ingest streams: the kernel would re-ingest its own output"]
    );
    spec["republish"]["enabled"] = json!(false);
    assert!(cel_errors::<FdcKernel>(&kernel_obj(spec), None).is_empty());
}

const SHUTDOWN_MESSAGE: &str = "shutdownTimeout must be shorter than the kernel's ingest.claim_idle (spec.config.ingest.claim_idle, default 60s): another replica could claim the batch a stopping pod is still finishing";

#[test]
fn shutdown_timeout_must_stay_below_the_claim_idle() {
    let check = |shutdown: &str, config: Option<Value>| {
        let mut spec = base_spec();
        spec["shutdownTimeout"] = json!(shutdown);
        if let Some(config) = config {
            spec["config"] = config;
        }
        cel_errors::<FdcKernel>(&kernel_obj(spec), None)
    };
    let refused = vec![SHUTDOWN_MESSAGE.to_string()];
    // Against the kernel's default claim_idle (60s), also when spec.config sets other keys.
    assert!(check("59s", None).is_empty());
    assert_eq!(check("60s", None), refused);
    assert_eq!(check("90s", None), refused);
    assert_eq!(check("1m30s", None), refused);
    assert_eq!(
        check("90s", Some(json!({"ingest": {"batch_max_size": 10}}))),
        refused
    );
    // Against an overridden claim_idle.
    let claim = |d: &str| Some(json!({"ingest": {"claim_idle": d}}));
    assert!(check("90s", claim("2m")).is_empty());
    assert_eq!(check("90s", claim("1m")), refused);
    assert_eq!(check("2h", claim("1h")), refused);
    // Spellings CEL cannot parse are left to the reconcile's kernel-config check.
    assert!(check("90s", claim("1min")).is_empty());
    assert!(check("1d", None).is_empty());
}

#[test]
fn the_cel_rule_assumes_the_kernels_default_claim_idle() {
    assert_eq!(
        fdc_common::config::IngestConfig::default().claim_idle,
        std::time::Duration::from_secs(60)
    );
    assert!(crate::crd::kernel::SHUTDOWN_WITHIN_CLAIM_IDLE
        .ends_with(": duration(self.shutdownTimeout) < duration('60s'))"));
    let s = schema::<FdcKernel>();
    let claim_idle = &s["properties"]["spec"]["properties"]["config"]["properties"]["ingest"]
        ["properties"]["claim_idle"];
    assert_eq!(claim_idle["type"], "string", "{claim_idle}");
}

#[test]
fn consumer_group_and_spill_volume_are_immutable_but_replicas_are_not() {
    let old = kernel_obj(base_spec());
    let mut spec = base_spec();
    spec["consumerGroup"] = json!("other");
    spec["spill"] = json!({"size": "5Gi"});
    spec["replicas"] = json!(4);
    let mut errors = cel_errors::<FdcKernel>(&kernel_obj(spec), Some(&old));
    errors.sort();
    assert_eq!(
        errors,
        vec![
            "consumerGroup is immutable: pending entries of the old group would be stranded",
            "spill.size is immutable (StatefulSet volumeClaimTemplates are)",
        ]
    );
    let mut spec = base_spec();
    spec["replicas"] = json!(4);
    assert!(cel_errors::<FdcKernel>(&kernel_obj(spec), Some(&old)).is_empty());
}

#[test]
fn producer_rules() {
    let producer = |spec: Value| json!({"apiVersion": "fdc.dev/v1alpha1", "kind": "Producer", "metadata": {"name": "p"}, "spec": spec});
    let ok = producer(json!({"kernelRef": {"name": "k"}}));
    assert!(cel_errors::<Producer>(&ok, None).is_empty());
    let bad_key = producer(json!({"kernelRef": {"name": "k"}, "publicKey": "ssh-ed25519 AAAA"}));
    assert_eq!(
        cel_errors::<Producer>(&bad_key, None),
        vec!["publicKey must be a PEM public key (-----BEGIN PUBLIC KEY-----)"]
    );
    let moved = producer(json!({"kernelRef": {"name": "other"}}));
    assert_eq!(
        cel_errors::<Producer>(&moved, Some(&ok)),
        vec!["kernelRef is immutable; delete and recreate the Producer"]
    );
}

#[test]
fn crd_yaml_parses_back_to_the_same_crd() {
    for crd in crds() {
        let yaml = crate::crd::crd_yaml(&crd).unwrap();
        assert!(yaml.starts_with("# Generated by `fdc-operator crd`"));
        let back: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
            serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(back, crd);
    }
}

#[test]
fn committed_crds_match_the_code() {
    // `.ci/operator-checks` diffs the files too; this keeps `cargo test` honest on its own.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/fdc/crds"] {
        for crd in crds() {
            let path = root.join(dir).join(crate::crd::crd_file_name(&crd));
            let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run `fdc-operator crd --out-dir {dir}`",
                    path.display()
                )
            });
            assert_eq!(
                committed,
                crate::crd::crd_yaml(&crd).unwrap(),
                "{} drifted; run `fdc-operator crd --out-dir {dir}`",
                path.display()
            );
        }
    }
}

fn fdc_schema_obj(spec: Value) -> Value {
    json!({"apiVersion": "fdc.dev/v1alpha1", "kind": "FdcSchema", "metadata": {"name": "orders"}, "spec": spec})
}

#[test]
fn fdc_schema_columns_and_body() {
    let v = &FdcSchema::crd().spec.versions[0];
    let cols: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.name.as_str(), c.json_path.as_str()))
        .collect();
    assert_eq!(
        cols,
        vec![
            ("Schema", ".status.schemaName"),
            ("Version", ".spec.version"),
            (
                "Accepted",
                ".status.conditions[?(@.type==\"Accepted\")].status"
            ),
            ("Deprecated", ".spec.deprecated"),
            ("In Use", ".status.conditions[?(@.type==\"InUse\")].status"),
            (
                "Reason",
                ".status.conditions[?(@.type==\"Accepted\")].reason"
            ),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    assert_eq!(
        FdcSchema::crd().spec.names.short_names,
        Some(vec!["fdcs".to_string()])
    );
    let spec = &schema::<FdcSchema>()["properties"]["spec"];
    let body = &spec["properties"]["body"];
    assert_eq!(body["type"], "object");
    assert_eq!(body["x-kubernetes-preserve-unknown-fields"], true);
    assert_eq!(
        spec["properties"]["version"]["pattern"],
        crate::crd::schema::SEMVER_PATTERN
    );
    assert_eq!(required(spec), vec!["body", "kernelRef", "version"]);
}

#[test]
fn fdc_schema_name_version_and_kernel_are_immutable() {
    let spec = json!({"kernelRef": {"name": "k"}, "version": "1.2.0", "body": {"type": "object"}});
    let old = fdc_schema_obj(spec.clone());
    assert!(cel_errors::<FdcSchema>(&old, None).is_empty());
    // The body and the deprecation may change (the kernel judges the body).
    let mut changed = spec.clone();
    changed["body"] = json!({"type": "array"});
    changed["deprecated"] = json!(true);
    assert!(cel_errors::<FdcSchema>(&fdc_schema_obj(changed), Some(&old)).is_empty());

    let mut changed = spec.clone();
    changed["version"] = json!("1.3.0");
    assert_eq!(
        cel_errors::<FdcSchema>(&fdc_schema_obj(changed), Some(&old)),
        vec!["version is immutable: versions never change once added; create another FdcSchema for the new version"]
    );
    let mut changed = spec.clone();
    changed["name"] = json!("orders");
    let name_message = "name is immutable: a schema version is name@version; create another FdcSchema for another name";
    assert_eq!(
        cel_errors::<FdcSchema>(&fdc_schema_obj(changed.clone()), Some(&old)),
        vec![name_message]
    );
    let named = fdc_schema_obj(changed.clone());
    changed["name"] = json!("payments");
    assert_eq!(
        cel_errors::<FdcSchema>(&fdc_schema_obj(changed), Some(&named)),
        vec![name_message]
    );
    let mut changed = spec;
    changed["kernelRef"] = json!({"name": "other"});
    assert_eq!(
        cel_errors::<FdcSchema>(&fdc_schema_obj(changed), Some(&old)),
        vec!["kernelRef is immutable; delete and recreate the FdcSchema"]
    );
}

#[test]
fn a_producers_schema_is_a_name_and_an_optional_range() {
    let pattern = &schema::<Producer>()["properties"]["spec"]["properties"]["schema"]["pattern"];
    let re = regex::Regex::new(pattern.as_str().unwrap()).unwrap();
    for ok in [
        "orders",
        "orders@^1.2",
        "orders@1.2.0",
        "orders@>=1.2, <2",
        "orders-v1",
    ] {
        assert!(re.is_match(ok), "{ok}");
    }
    for bad in ["", "@^1", "orders@", "orders@1@2", "-orders", "ord ers@1"] {
        assert!(!re.is_match(bad), "{bad}");
    }
}
