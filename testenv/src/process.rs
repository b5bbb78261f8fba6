//! Running a server process, as the `postgres` OS user when we are root.

use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ServerError;

/// The uid/gid to drop to: Postgres refuses to run as root, and CI runs as root.
#[derive(Clone, Copy, Debug)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// `Some(postgres user)` when running as root, `None` otherwise.
    pub fn for_postgres() -> Option<RunAs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let name = std::ffi::CString::new("postgres").expect("static name");
        // SAFETY: getpwnam returns null or a pointer to static storage, read at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return None;
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        Some(RunAs { uid, gid })
    }

    /// Hands `path` (recursively) to this user.
    pub fn own(&self, path: &Path) -> std::io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))?;
        if path.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.own(&entry?.path())?;
            }
        }
        Ok(())
    }
}

pub fn command(program: &Path, run_as: Option<RunAs>) -> Command {
    let mut cmd = Command::new(program);
    // A group of its own: Ctrl-C in a terminal (`fdc-kernel dev`) reaches the kernel, which
    // drains first; the servers are stopped by their owner afterwards.
    cmd.process_group(0);
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid);
        // HOME of root is not readable by the postgres user; some tools stat it.
        cmd.env("HOME", "/tmp");
    }
    cmd
}

/// Runs a command to completion, turning a non-zero exit into an error with its output.
pub fn run(mut cmd: Command) -> Result<(), ServerError> {
    let program = format!("{:?}", cmd.get_program());
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ServerError::Spawn {
            program: program.clone(),
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(ServerError::Failed {
            program,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

pub fn spawn(mut cmd: Command, log: &Path) -> Result<Child, ServerError> {
    let program = format!("{:?}", cmd.get_program());
    let log_file = std::fs::File::create(log)?;
    cmd.stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .map_err(|source| ServerError::Spawn { program, source })
}

/// Sends SIGKILL and reaps the process.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One launch attempt of [`retry_launch`]: a future that may borrow the attempt's state.
pub type Attempt<'a, T> = Pin<Box<dyn Future<Output = Result<T, ServerError>> + Send + 'a>>;

/// Runs `attempt` (a launch on freshly chosen free ports) on `state` up to five times: a port
/// taken by another process between choosing and binding fails one attempt, not the start.
/// The last error when none succeeds.
pub async fn retry_launch<S, T>(
    state: &mut S,
    mut attempt: impl for<'a> FnMut(&'a mut S) -> Attempt<'a, T> + Send,
) -> Result<T, ServerError> {
    let mut last = None;
    for _ in 0..5 {
        match attempt(state).await {
            Ok(launched) => return Ok(launched),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Polls `probe` until it succeeds or `timeout` passes.
pub async fn wait_ready<F, Fut>(
    server: &'static str,
    timeout: Duration,
    mut probe: F,
) -> Result<(), ServerError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(()) => return Ok(()),
            Err(last_error) if Instant::now() >= deadline => {
                return Err(ServerError::NotReady {
                    server,
                    seconds: timeout.as_secs(),
                    last_error,
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
