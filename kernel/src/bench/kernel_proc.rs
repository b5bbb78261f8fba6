//! The real `fdc-kernel` binary as a child process: default config pointed at the private
//! servers, so the benchmark measures what a deployment runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{procfs, BenchError};
use fdc_testenv::ports::free_port;
use fdc_testenv::{http_get, metric_value};

pub struct KernelProcess {
    child: Child,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl KernelProcess {
    /// Starts `bin run` with only the server URLs, HTTP port and consumer name set (plus
    /// `extra_env`); everything else is the kernel's default config.
    pub fn spawn(
        bin: &Path,
        redis_url: &str,
        postgres_url: &str,
        consumer: &str,
        extra_env: &[(String, String)],
        log_dir: &Path,
    ) -> Result<KernelProcess, BenchError> {
        let port = free_port()?;
        let http: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = log_dir.join(format!("{consumer}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("run")
            .env_clear()
            .env("FDC_REDIS__URL", redis_url)
            .env("FDC_POSTGRES__URL", postgres_url)
            .env("FDC_HTTP__LISTEN", http.to_string())
            .env("FDC_INGEST__CONSUMER", consumer)
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| BenchError::Kernel(format!("cannot start {}: {e}", bin.display())))?;
        Ok(KernelProcess { child, http, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(BenchError::Kernel(format!(
                "exited with {status}; last lines of {}:\n{}",
                self.log.display(),
                self.log_tail()
            ))),
        }
    }

    /// The last lines of the kernel's log, oldest first (the kernel never logs secrets).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Whether `/readyz` answers 200 right now.
    pub async fn is_ready(&self) -> bool {
        http_get(self.http, "/readyz").await.0 == 200
    }

    /// Waits until `/readyz` answers 200 (Redis and Postgres reachable, migrated).
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_alive()?;
            if self.is_ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The error for a kernel that is running but never became ready (bad setting, server
    /// unreachable): it names the wait and carries the log, instead of a silent long timeout.
    pub fn not_ready(&self, waited: Duration) -> BenchError {
        BenchError::Timeout(format!(
            "kernel not ready after {waited:?} (/readyz); last lines of {}:\n{}",
            self.log.display(),
            self.log_tail()
        ))
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }

    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series).unwrap_or(0.0)
    }

    /// Peak resident set size so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        procfs::status_kib(self.pid(), "VmHWM").unwrap_or(0)
    }

    pub fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after `timeout`.
    pub fn stop(mut self, timeout: Duration) -> Result<(), BenchError> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(BenchError::Kernel(format!(
                        "exited with {status} on SIGTERM"
                    )))
                };
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(BenchError::Timeout("kernel shutdown".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        // Only reached when `stop` was not called (an error path): do not leave it running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
