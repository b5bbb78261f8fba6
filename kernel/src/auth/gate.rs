//! The ingest pipeline's auth step: one call per batch, before protocol validation.
//!
//! With auth on, every `data` and `heartbeat` entry needs a valid token. Refused entries are
//! returned as dead letters with reason `auth` (the DLQ writer drops the `token` field); the
//! producer id of each accepted entry comes from its token's `sub` and is stamped on the
//! events after parsing. Other types (`control`, and `ack`/`error` which the parser refuses)
//! pass through untouched.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::authenticator::{AuthError, Authenticator};
use crate::protocol::{Entry, EntryRef, Event, Reason, Rejection};

/// Outcome of the auth step for one batch.
#[derive(Debug, Default)]
pub struct Checked {
    /// Entries to go on to validation and storage.
    pub kept: Vec<Entry>,
    /// Refused entries, for the dead-letter stream.
    pub dead: Vec<(Entry, Rejection)>,
    /// Producer id of every accepted `data`/`heartbeat` entry.
    pub producers: HashMap<EntryRef, Uuid>,
}

impl Checked {
    /// Set `producer_id` on events from the tokens of their entries.
    pub fn stamp(&self, events: &mut [Event]) {
        for e in events {
            if let Some(id) = self.producers.get(&e.source) {
                e.producer_id = Some(*id);
            }
        }
    }

    /// After validation: stamp producer ids on `events` and hand refused entries to `dead`.
    pub fn apply(self, events: &mut [Event], dead: &mut Vec<(Entry, Rejection)>) {
        self.stamp(events);
        dead.extend(self.dead);
    }
}

/// The pipeline's single auth call: with `gate` (auth on) the batch is authenticated, retrying
/// Postgres trouble until `give_up` (`None`: gave up, the batch stays pending); without it
/// every entry is kept as is.
pub async fn check(
    gate: Option<&AuthGate>,
    batch: Vec<Entry>,
    give_up: &tokio_util::sync::CancellationToken,
) -> Option<Checked> {
    match gate {
        None => Some(Checked {
            kept: batch,
            ..Checked::default()
        }),
        Some(gate) => gate.check_retrying(batch, give_up).await,
    }
}

#[derive(Clone)]
pub struct AuthGate {
    authenticator: Arc<Authenticator>,
}

fn needs_token(entry: &Entry) -> bool {
    matches!(entry.field("type"), Some(b"data") | Some(b"heartbeat"))
}

impl AuthGate {
    pub fn new(authenticator: Arc<Authenticator>) -> AuthGate {
        AuthGate { authenticator }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Authenticate a batch. `Err` only for infrastructure trouble (Postgres): nothing was
    /// decided and the caller retries the whole batch.
    pub async fn check(&self, batch: Vec<Entry>) -> Result<Checked, AuthError> {
        let (gated, free): (Vec<Entry>, Vec<Entry>) = batch
            .into_iter()
            .partition(|e| e.fields.is_some() && needs_token(e));
        let tokens: Vec<Option<&str>> = gated
            .iter()
            .map(|e| {
                // A non-UTF-8 token cannot be a JWT; "" makes the verifier call it malformed.
                e.field("token")
                    .map(|t| std::str::from_utf8(t).unwrap_or("\u{0}"))
            })
            .collect();
        let verdicts = self.authenticator.authenticate_batch(&tokens).await?;
        let mut out = Checked {
            kept: free,
            ..Checked::default()
        };
        let mut seen = HashSet::new();
        for (entry, verdict) in gated.into_iter().zip(verdicts) {
            match verdict {
                Ok(identity) => {
                    seen.insert(identity.producer_id);
                    out.producers.insert(entry.at.clone(), identity.producer_id);
                    out.kept.push(entry);
                }
                Err(denial) => {
                    let why = Rejection::new(Reason::Auth, denial.why);
                    out.dead.push((entry, why));
                }
            }
        }
        let seen: Vec<Uuid> = seen.into_iter().collect();
        self.authenticator.touch(&seen).await?;
        Ok(out)
    }

    /// [`check`](Self::check), retried with backoff while Postgres is unavailable; `None` when
    /// `give_up` fires first (the batch then stays pending in Redis).
    pub async fn check_retrying(
        &self,
        batch: Vec<Entry>,
        give_up: &tokio_util::sync::CancellationToken,
    ) -> Option<Checked> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.check(batch.clone()).await {
                Ok(c) => return Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "auth check failed; batch kept pending");
                }
            }
            tokio::select! {
                _ = give_up.cancelled() => return None,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
