//! The benchmark end to end at a tiny size, so it cannot rot: every run kind executes against
//! the real kernel binary and the JSON report carries the figures.

use std::process::Command;

#[test]
fn fdc_bench_runs_every_kind_at_a_tiny_size() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fdc-bench"))
        .args(["--events", "2000", "--repeats", "1"])
        .args(["--latency-rate", "500", "--latency-secs", "2"])
        .args(["--fsync", "false"])
        // A non-default setting reaches every kernel (and the limit run's batches) and is noted.
        .args(["--kernel-env", "FDC_INGEST__BATCH_MAX_SIZE=500"])
        .arg("--kernel-bin")
        .arg(env!("CARGO_BIN_EXE_fdc-kernel"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fdc-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("drain / limit"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for kind in ["limit", "drain", "replicas", "auth", "schema"] {
        let median = &report[kind]["median"];
        assert_eq!(median["events"], 2000, "{kind}: {median}");
        assert!(median["events_per_s"].as_f64().unwrap() > 0.0, "{kind}");
    }
    // The drains asserted stored == sent and no duplicates themselves; here: every stored
    // event is accounted to a replica.
    let stored: u64 = report["replicas"]["runs"][0]["stored_by_replica"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(stored, 2000);
    assert!(report["drain"]["median"]["peak_rss_mib"].as_f64().unwrap() > 1.0);
    assert!(report["validation_us_per_event"].is_number(), "{report}");
    assert_eq!(report["latency"]["median"]["events"], 1000);
    assert!(report["latency"]["median"]["ack_p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        report["machine"]["cores"],
        std::thread::available_parallelism().unwrap().get()
    );
    assert_eq!(report["machine"]["batch_size"], 500);
    assert_eq!(
        report["notes"],
        serde_json::json!([
            "non-default kernel setting FDC_INGEST__BATCH_MAX_SIZE=500 (--kernel-env)"
        ])
    );
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 6, "{targets:?}");
}
