//! The benchmark end to end at a tiny size, so it cannot rot: every run kind executes against
//! the real kernel binary and the JSON report carries the figures.

use std::process::Command;

#[test]
fn fdc_bench_runs_every_kind_at_a_tiny_size() {
    let (dir, stdout, report) = run_bench(&[
        "--events",
        "2000",
        "--repeats",
        "1",
        "--latency-rate",
        "500",
        "--latency-secs",
        "2",
        "--fsync",
        "false",
        // A non-default setting reaches every kernel (and the limit run's batches) and is noted.
        "--kernel-env",
        "FDC_INGEST__BATCH_MAX_SIZE=500",
    ]);
    assert!(stdout.contains("drain / limit"), "{stdout}");

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

    // The figure, beside the JSON: a bar and a dot (one repeat) per throughput run.
    let svg = std::fs::read_to_string(dir.path().join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    for run in ["limit", "drain", "replicas", "auth"] {
        assert!(
            svg.contains(&format!("\n{run}\n")),
            "no {run} label in the SVG"
        );
    }
    assert!(stdout.contains("SVG: "), "{stdout}");
}

/// Runs `fdc-bench` with `args`, the kernel binary and a JSON report in a temp dir, and asserts
/// that it succeeded. Returns the temp dir (the figure is beside the JSON), stdout and the report.
fn run_bench(args: &[&str]) -> (tempfile::TempDir, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fdc-bench"))
        .args(args)
        .arg("--kernel-bin")
        .arg(env!("CARGO_BIN_EXE_fdc-kernel"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "fdc-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (dir, stdout, report)
}

/// Runs `fdc-bench` with `args` at a tiny size (fsync and full-page writes off) and returns its
/// JSON report.
fn bench(args: &[&str]) -> serde_json::Value {
    let tiny = [
        "--repeats",
        "1",
        "--fsync",
        "false",
        "--full-page-writes",
        "false",
    ];
    run_bench(&[&tiny[..], args].concat()).2
}

#[test]
fn query_run_times_every_query_on_the_loaded_events() {
    let report = bench(&["--events", "2000", "--runs", "query"]);
    let run = &report["query"]["runs"][0];
    assert_eq!(run["load"]["events"], 2000);
    let queries = run["queries"].as_array().unwrap();
    let names: Vec<&str> = queries
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "event_by_id",
            "event_tags_by_id",
            "subject_hour",
            "subject_day",
            "one_tag_hour",
            "two_tags_day",
            "tag_counts_hourly_day",
            "newest_100"
        ]
    );
    let by_name = |n: &str| queries.iter().find(|q| q["name"] == n).unwrap();
    // Every id looked up was loaded: exactly one row each time.
    assert_eq!(by_name("event_by_id")["mean_rows"], 1.0);
    assert_eq!(by_name("event_tags_by_id")["mean_rows"], 3.0);
    assert_eq!(by_name("newest_100")["mean_rows"], 100.0);
    // Windows are drawn around a loaded event holding the subject or tags asked for.
    for name in [
        "subject_hour",
        "subject_day",
        "one_tag_hour",
        "two_tags_day",
    ] {
        assert!(
            by_name(name)["mean_rows"].as_f64().unwrap() >= 1.0,
            "{name}"
        );
    }
    for q in queries {
        assert!(q["executions"].as_u64().unwrap() >= 20, "{q}");
        assert!(
            q["p99_ms"].as_f64().unwrap() >= q["p50_ms"].as_f64().unwrap(),
            "{q}"
        );
    }
    let sizes = run["sizes"].as_array().unwrap();
    let relations: Vec<&str> = sizes
        .iter()
        .map(|s| s["relation"].as_str().unwrap())
        .collect();
    // event_tags is a view since migration 6: no storage of its own to report.
    assert_eq!(relations, ["event_index", "events"]);
    for s in sizes {
        assert!(s["table_bytes"].as_i64().unwrap() > 0, "{s}");
        assert!(s["index_bytes"].as_i64().unwrap() > 0, "{s}");
    }
}

#[test]
fn catchup_run_spills_while_postgres_is_down_and_replays_all() {
    let report = bench(&[
        "--events",
        "2000",
        "--runs",
        "drain,catchup",
        "--catchup-rate",
        "500",
        "--catchup-outage-secs",
        "3",
    ]);
    let c = &report["catchup"]["median"];
    // The run itself checked that every event produced is stored.
    let spilled = c["spilled_events"].as_f64().unwrap();
    assert!(spilled > 0.0, "{c}");
    assert!(c["peak_backlog"].as_f64().unwrap() >= spilled * 0.5, "{c}");
    assert!(c["replay_per_s"].as_f64().unwrap() > 0.0, "{c}");
    assert!(c["recovery_seconds"].as_f64().unwrap() > 0.0, "{c}");
    let targets = report["targets"].as_array().unwrap();
    assert!(
        targets.iter().any(|t| t["name"] == "catch-up / drain"),
        "{targets:?}"
    );
}

#[test]
fn cluster_and_three_replica_drains_store_every_event_once() {
    let report = bench(&[
        "--events",
        "2000",
        "--runs",
        "drain,replicas3",
        "--redis",
        "cluster",
    ]);
    // The runs themselves checked stored == sent in Postgres, 3 tags each, no dead letters.
    for kind in ["cluster", "replicas3"] {
        let run = &report[kind]["runs"][0];
        assert_eq!(run["events"], 2000, "{kind}: {run}");
        assert!(run["events_per_s"].as_f64().unwrap() > 0.0, "{kind}");
        let stored: u64 = run["stored_by_replica"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(stored, 2000, "{kind}: {run}");
    }
    assert_eq!(
        report["replicas3"]["runs"][0]["stored_by_replica"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Redis CPU of the cluster run is its primaries', each also per event of its streams.
    let cluster = &report["cluster"]["median"];
    assert!(cluster["redis_cpu_us_per_event"].as_f64().unwrap() > 0.0);
    let by_primary = cluster["redis_cpu_us_per_event_by_primary"]
        .as_array()
        .unwrap();
    assert_eq!(by_primary.len(), 3, "{cluster}");
    assert!(by_primary.iter().all(|us| us.as_f64().unwrap() > 0.0));
    assert!(
        cluster["redis_replica_cpu_us_per_event"].is_number(),
        "{cluster}"
    );
    let figures: Vec<&str> = report["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(figures, ["cluster drain / drain", "3 replicas / 1 replica"]);
}

/// `--wal-records` splits the limit run's WAL by record type: each event row appends to the
/// GIN pending list once and makes three B-tree entries (`event_index`'s key, `events`' key and
/// `(subject_id, ts)`; `event_index (ts)` is a BRIN index since migration 7; an entry that
/// splits its page is logged as the split), and the parts add up to the report's WAL per event.
#[test]
fn wal_records_split_the_limit_runs_wal_by_record_type() {
    let (_dir, stdout, report) = run_bench(&[
        "--repeats",
        "1",
        "--fsync",
        "false",
        "--events",
        "2000",
        "--runs",
        "limit",
        "--wal-records",
    ]);
    let line = |kind: &str| -> Vec<f64> {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} line in:\n{stdout}"));
        line.split_whitespace()
            .skip(1)
            .map(|n| n.parse().unwrap())
            .collect()
    };
    assert_eq!(line("Gin/UPDATE_META_PAGE")[0], 1.0, "{stdout}");
    let leaf = line("Btree/INSERT_LEAF")[0];
    assert!(
        (2.95..3.05).contains(&leaf),
        "{leaf} B-tree entries per event:\n{stdout}"
    );
    let total = line("total")[0];
    let measured = report["limit"]["median"]["wal_bytes_per_event"]
        .as_f64()
        .unwrap();
    assert!(
        (total - measured).abs() < measured * 0.1,
        "records add up to {total} B/event, the report says {measured}:\n{stdout}"
    );
}
