//! The real `fdc-kernel` binary as a child process, configured only through `FDC_*`
//! environment variables: what the benchmark measures and what the fault tests SIGKILL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ports::free_port;
use super::{http_get, metric_value};

/// Why a kernel process failed to start, died, or did not become ready or stop in time.
#[derive(thiserror::Error)]
pub enum KernelProcessError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("exited with {status}; last lines of {log}:\n{tail}")]
    Exited {
        status: ExitStatus,
        log: String,
        tail: String,
    },
    #[error("kernel not ready after {waited:?} (/readyz); last lines of {log}:\n{tail}")]
    NotReady {
        waited: Duration,
        log: String,
        tail: String,
    },
    #[error("exited with {0} on SIGTERM")]
    BadExit(ExitStatus),
    #[error("kernel shutdown")]
    ShutdownTimeout,
}

/// `unwrap()` in a test prints the message with the log tail, not a struct dump.
impl std::fmt::Debug for KernelProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// A running `fdc-kernel run`; SIGKILLed on drop unless [`stop`](Self::stop) ended it.
pub struct KernelProcess {
    child: Child,
    pub http: SocketAddr,
    pub consumer: String,
    log: PathBuf,
    /// The log's directory when the caller gave none; removed with the process.
    _log_dir: Option<TempDir>,
}

impl KernelProcess {
    /// Starts `bin run` with an empty environment plus the server URLs, a free HTTP port, the
    /// consumer name and `extra_env`; everything else is the kernel's default config. Its
    /// stdout and stderr go to `<log_dir>/<consumer>.log` (a private temp dir when `None`).
    pub fn spawn(
        bin: &Path,
        redis_url: &str,
        postgres_url: &str,
        consumer: &str,
        extra_env: &[(String, String)],
        log_dir: Option<&Path>,
    ) -> Result<KernelProcess, KernelProcessError> {
        let own_dir = match log_dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix("fdc-kernel-log-")
                    .tempdir()?,
            ),
        };
        let dir = log_dir.unwrap_or_else(|| own_dir.as_ref().expect("just made").path());
        let http: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let log = dir.join(format!("{consumer}.log"));
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
            .map_err(|source| KernelProcessError::Spawn {
                program: bin.display().to_string(),
                source,
            })?;
        Ok(KernelProcess {
            child,
            http,
            consumer: consumer.to_string(),
            log,
            _log_dir: own_dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`) to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Fails when the process has exited (with the tail of its log).
    pub fn check_alive(&mut self) -> Result<(), KernelProcessError> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(KernelProcessError::Exited {
                status,
                log: self.log.display().to_string(),
                tail: self.log_tail(),
            }),
        }
    }

    /// The process's whole log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the kernel's log, oldest first (the kernel never logs secrets).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let mut tail: Vec<&str> = log.lines().rev().take(20).collect();
        tail.reverse();
        tail.join("\n")
    }

    /// Whether `/readyz` answers 200 right now.
    pub async fn is_ready(&self) -> bool {
        http_get(self.http, "/readyz").await.0 == 200
    }

    /// Waits until `/readyz` answers 200 (Redis and Postgres reachable, migrated); fails at
    /// once when the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<(), KernelProcessError> {
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
    pub fn not_ready(&self, waited: Duration) -> KernelProcessError {
        KernelProcessError::NotReady {
            waited,
            log: self.log.display().to_string(),
            tail: self.log_tail(),
        }
    }

    pub async fn metrics(&self) -> String {
        http_get(self.http, "/metrics").await.1
    }

    /// The value of one sample of `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series).unwrap_or(0.0)
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after `timeout`.
    pub fn stop(mut self, timeout: Duration) -> Result<(), KernelProcessError> {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return if status.success() {
                    Ok(())
                } else {
                    Err(KernelProcessError::BadExit(status))
                };
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(KernelProcessError::ShutdownTimeout);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for KernelProcess {
    fn drop(&mut self) {
        // Reached when `stop` was not called (a test, or an error path): do not leave it running.
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}
