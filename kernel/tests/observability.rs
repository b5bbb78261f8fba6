//! The observability pack against a live kernel: a real Prometheus (Debian's `prometheus`,
//! private port, temp dir) scrapes a kernel with auth and spill on under a small load while
//! Postgres is stopped. Every kernel panel of docs/grafana/fdc-dashboard.json must then return
//! data, and the alerts of docs/prometheus/fdc-rules.yaml that match the fault
//! (FdcPostgresErrors, FdcSpillActive) must fire, evaluated by that Prometheus from a copy of
//! the rules with the `for:` durations and range windows shortened.

mod auth_support;
mod fault_support;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use auth_support::{data_entry, AuthKernel, Options};
use fault_support::spill_config;
use serde_json::Value;
use support::*;
use uuid::Uuid;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Labels the ServiceMonitor gives a kernel's series; set here by the static scrape config.
const LABELS: &str = r#"{namespace: test, service: fdc, pod: fdc-0}"#;

/// A Prometheus server of its own, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates `rules` every second.
    fn start(target: SocketAddr, rules: &str) -> Prometheus {
        let binary = on_path("prometheus").expect(
            "prometheus not found on PATH; install Debian's prometheus package (scripts/test.sh does)",
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yaml"), rules).unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files: [rules.yaml]\n\
             scrape_configs:\n  - job_name: fdc\n    static_configs:\n      \
             - targets: ['{target}']\n        labels: {LABELS}\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", ports::free_port().unwrap())
            .parse()
            .unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .current_dir(dir.path())
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = format!("http://{}{path}", self.addr);
        match reqwest::Client::new().get(&url).query(query).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    /// The result vector of an instant query (empty on error).
    async fn query(&self, expr: &str) -> Vec<Value> {
        let v = self.get("/api/v1/query", &[("query", expr)]).await;
        assert_ne!(v["status"], "error", "{expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Names of the alerts currently firing.
    async fn firing(&self) -> Vec<String> {
        let v = self.get("/api/v1/alerts", &[]).await;
        v["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// docs/prometheus/fdc-rules.yaml with every `for:` at 1s and every range window at 15s, so
/// alerts fire within seconds of their condition (the conditions themselves are unchanged).
fn fast_rules() -> String {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("docs/prometheus/fdc-rules.yaml")).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("for: ") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: 1s\n"));
        } else {
            out.push_str(&shorten_ranges(line));
            out.push('\n');
        }
    }
    out
}

fn shorten_ranges(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('[') {
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        out.push_str(&rest[..start]);
        out.push_str("[15s]");
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}

/// Every panel target of the dashboard as (panel title, PromQL with the variables set).
fn dashboard_queries() -> Vec<(String, String)> {
    let path: PathBuf = Path::new(ROOT).join("docs/grafana/fdc-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "15s")
                .replace("$namespace", "test")
                .replace("$kernel", ".*")
                .replace("$pod", ".*")
                .replace("$stream", ".*");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

/// Panels fed by something other than the kernel: the operator (reconciles), which does not
/// run here.
fn fed_by_the_kernel(expr: &str) -> bool {
    !expr.contains("fdc_operator_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_every_panel_and_fires_the_postgres_alerts_while_postgres_is_down() {
    let spill_dir = tempfile::tempdir().unwrap();
    let spill = spill_config(spill_dir.path(), 64 << 20);
    let mut k = AuthKernel::start_with(TestEnv::start().await.unwrap(), Options::default(), |c| {
        c.postgres.connect_timeout = Duration::from_secs(1);
        c.ingest.batch_max_size = 50;
        c.spill = Some(spill);
    })
    .await;
    let prometheus = Prometheus::start(k.kernel.http_addr, &fast_rules());
    let redis = k.env.redis_conn().await;
    let token = k.token(Uuid::now_v7(), "sensor-1");

    // Load: valid events, plus entries without a token (auth denials, dead letters).
    let mut n = 0;
    let mut send = |count: usize| {
        let mut entries = Vec::new();
        for _ in 0..count {
            n += 1;
            entries.push(data_entry(Some(&token), n));
        }
        entries.push(data_entry(None, n));
        entries
    };
    let pg = k.env.pg().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        publish(&redis, "events", &send(40)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(count(&pg, "SELECT count(*) FROM events").await > 0);

    // The fault: Postgres stopped while the load goes on.
    k.env.postgres.stop();
    let start = Instant::now();
    let expected = ["FdcPostgresErrors", "FdcSpillActive"];
    let queries = dashboard_queries();
    let mut empty: Vec<String>;
    let mut firing: Vec<String>;
    loop {
        publish(&redis, "events", &send(40)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        empty = Vec::new();
        for (title, expr) in queries.iter().filter(|(_, e)| fed_by_the_kernel(e)) {
            if prometheus.query(expr).await.is_empty() {
                empty.push(format!("{title}: {expr}"));
            }
        }
        firing = prometheus.firing().await;
        let all_fire = expected.iter().all(|a| firing.iter().any(|f| f == a));
        if (empty.is_empty() && all_fire) || start.elapsed() > Duration::from_secs(40) {
            break;
        }
    }
    assert!(
        empty.is_empty(),
        "panels without data: {empty:#?}\nprometheus log:\n{}",
        prometheus.log()
    );
    for alert in expected {
        assert!(
            firing.iter().any(|f| f == alert),
            "{alert} not firing; firing: {firing:?}"
        );
    }
    // Only the four operator targets were left out.
    let kernel_targets = queries.iter().filter(|(_, e)| fed_by_the_kernel(e)).count();
    assert_eq!(kernel_targets, queries.len() - 4);
    // The bounds the panels and alerts compare against are the ones this kernel runs with.
    let bound = |metric: &'static str| {
        let p = &prometheus;
        async move {
            let result = p.query(&format!("max({metric})")).await;
            result[0]["value"][1]
                .as_str()
                .unwrap()
                .parse::<f64>()
                .unwrap()
        }
    };
    assert_eq!(
        bound("kernel_spill_max_bytes").await,
        f64::from(64u32 << 20)
    );
    assert_eq!(
        bound("kernel_inflight_max_bytes").await,
        k.config.ingest.max_inflight_bytes as f64
    );
    // Nothing was lost on the way: Postgres errors counted, events in the spill.
    assert!(metric(&k, "kernel_pg_errors_total{kind=\"unavailable\"}").await >= 1.0);
    assert!(metric(&k, "kernel_spill_pending_records").await >= 1.0);
    k.env.postgres.restart().await.unwrap();
    k.kernel.shutdown().await;
}

async fn metric(k: &AuthKernel, series: &str) -> f64 {
    k.metric(series).await
}
