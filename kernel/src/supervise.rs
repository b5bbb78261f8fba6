//! Tasks that must keep running until shutdown.
//!
//! The kernel's ingest is a few long-lived tasks (reader, writer lanes, spill replay). One that
//! ends early, or panics, would stop ingest while the probes still said healthy, so the kernel
//! treats it as fatal: it stops and exits non-zero to be restarted. A restart is safe because
//! nothing is acknowledged before it is committed or spilled; whatever was in flight stays
//! pending in Redis and is redelivered.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Named tasks watched until shutdown, then joined in the order they were added.
#[derive(Default)]
pub struct Supervised {
    tasks: Vec<Watched>,
}

struct Watched {
    name: &'static str,
    /// `None` once joined: a `JoinHandle` must not be polled after it completed.
    handle: Option<JoinHandle<()>>,
}

impl Supervised {
    pub fn add(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.tasks.push(Watched {
            name,
            handle: Some(handle),
        });
    }

    /// Waits for `stop` or for the first task to end, whichever comes first. Returns the name
    /// of a task that ended (returned or panicked) before shutdown was asked for.
    pub async fn first_to_end(&mut self, stop: &CancellationToken) -> Option<&'static str> {
        let ended = std::future::poll_fn(|cx| {
            for task in &mut self.tasks {
                let Some(handle) = task.handle.as_mut() else {
                    continue;
                };
                if let Poll::Ready(joined) = Pin::new(handle).poll(cx) {
                    task.handle = None;
                    let panic = joined.err().filter(|e| e.is_panic()).map(panic_message);
                    error!(
                        task = task.name,
                        panic = panic.as_deref().unwrap_or("none"),
                        "a kernel task ended before shutdown"
                    );
                    return Poll::Ready(task.name);
                }
            }
            Poll::Pending
        });
        tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            name = ended => Some(name),
        }
    }

    /// Waits for every task not yet joined, in the order they were added (the reader first,
    /// so that the writer sees its queue close). Returns the name of one that panicked: the
    /// process must not exit 0 after a panic, even one during shutdown.
    pub async fn join_unfinished(self) -> Option<&'static str> {
        let mut panicked = None;
        for task in self.tasks {
            let Some(handle) = task.handle else { continue };
            if let Err(e) = handle.await {
                if e.is_panic() {
                    error!(
                        task = task.name,
                        panic = panic_message(e),
                        "a kernel task panicked during shutdown"
                    );
                    panicked = panicked.or(Some(task.name));
                }
            }
        }
        panicked
    }
}

/// Runs until every lane has ended, or until the first lane panics: then it returns the panic
/// at once and the other lanes are aborted with the set. Aborting is a crash as far as data
/// goes, which the acknowledgement rules make safe; carrying on with fewer lanes would hide the
/// bug behind lower throughput.
pub async fn join_lanes(mut lanes: JoinSet<()>) -> Result<(), LanePanicked> {
    while let Some(joined) = lanes.join_next().await {
        if let Err(e) = joined {
            if e.is_panic() {
                return Err(LanePanicked(panic_message(e)));
            }
        }
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("a writer lane panicked: {0}")]
pub struct LanePanicked(pub String);

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(not a string)".into()),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A task that runs until `stop`, counting how many of its kind finished cleanly.
    fn until_stop(stop: &CancellationToken, finished: &Arc<AtomicUsize>) -> JoinHandle<()> {
        let (stop, finished) = (stop.clone(), finished.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            finished.fetch_add(1, Ordering::SeqCst);
        })
    }

    /// A stop token, the count of clean finishes, and tasks holding one `reader` that runs
    /// until the stop.
    fn with_a_reader() -> (CancellationToken, Arc<AtomicUsize>, Supervised) {
        let stop = CancellationToken::new();
        let finished = Arc::new(AtomicUsize::new(0));
        let mut tasks = Supervised::default();
        tasks.add("reader", until_stop(&stop, &finished));
        (stop, finished, tasks)
    }

    #[tokio::test]
    async fn shutdown_is_not_a_failure_and_every_task_is_joined() {
        let (stop, finished, mut tasks) = with_a_reader();
        tasks.add("writer", until_stop(&stop, &finished));
        stop.cancel();
        assert_eq!(tasks.first_to_end(&stop).await, None);
        assert_eq!(tasks.join_unfinished().await, None);
        assert_eq!(finished.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_named() {
        let (stop, finished, mut tasks) = with_a_reader();
        tasks.add("writer", tokio::spawn(async {}));
        assert_eq!(tasks.first_to_end(&stop).await, Some("writer"));
        // The ended task was joined already; the others are joined after the stop.
        stop.cancel();
        assert_eq!(tasks.join_unfinished().await, None);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_task_that_panics_is_named() {
        let (stop, finished, mut tasks) = with_a_reader();
        tasks.add(
            "spill replay",
            tokio::spawn(async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                panic!("replay broke");
            }),
        );
        assert_eq!(tasks.first_to_end(&stop).await, Some("spill replay"));
        assert!(
            !stop.is_cancelled(),
            "supervision reports; the caller stops"
        );
        stop.cancel();
        assert_eq!(tasks.join_unfinished().await, None);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_panic_during_shutdown_is_reported() {
        let stop = CancellationToken::new();
        let mut tasks = Supervised::default();
        let panics_on_stop = {
            let stop = stop.clone();
            tokio::spawn(async move {
                stop.cancelled().await;
                panic!("broke while draining");
            })
        };
        tasks.add("writer", panics_on_stop);
        stop.cancel();
        assert_eq!(tasks.first_to_end(&stop).await, None);
        assert_eq!(tasks.join_unfinished().await, Some("writer"));
    }

    #[tokio::test]
    async fn lanes_that_finish_are_ok() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut lanes = JoinSet::new();
        for _ in 0..3 {
            let finished = finished.clone();
            lanes.spawn(async move {
                finished.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(join_lanes(lanes).await.is_ok());
        assert_eq!(finished.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_panicking_lane_ends_the_writer_and_aborts_the_others() {
        // Held by the lanes that never finish; aborting them drops their clones.
        let held = Arc::new(());
        let mut lanes = JoinSet::new();
        for _ in 0..2 {
            let held = held.clone();
            lanes.spawn(async move {
                let _held = held;
                std::future::pending::<()>().await;
            });
        }
        lanes.spawn(async { panic!("lane broke") });
        let err = tokio::time::timeout(Duration::from_secs(5), join_lanes(lanes))
            .await
            .expect("returns at the first panic, without waiting for the other lanes")
            .unwrap_err();
        assert_eq!(err.0, "lane broke");
        // Abort is asynchronous: the aborted lanes drop their clones when next polled.
        for _ in 0..100 {
            if Arc::strong_count(&held) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} lanes still running", Arc::strong_count(&held) - 1);
    }
}
