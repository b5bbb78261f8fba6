//! The ingest pipeline's auth step: one call per batch, before protocol validation.
//!
//! With auth on, every `data` and `heartbeat` entry needs a valid token. Refused entries are
//! returned as dead letters with reason `auth` (the DLQ writer drops the `token` field); the
//! producer id of each accepted entry comes from its token's `sub` and is stamped on the
//! events after parsing. Other types (`control`, and `ack`/`error` which the parser refuses)
//! pass through untouched.
//!
//! The gate never waits for Postgres (see `docs/auth.md`, "Postgres outages"): the writer's
//! store/spill step handles the outage for the entries it can decide.

use std::sync::{Arc, Mutex};

use foldhash::{HashMap, HashSet, HashSetExt};
use uuid::Uuid;

use super::authenticator::Authenticator;
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

/// The pipeline's single auth call: with `gate` (auth on) the batch is authenticated; without
/// it every entry is kept as is. Never waits for Postgres (see [`AuthGate::check`]), so a
/// Postgres outage reaches the writer's store/spill step.
pub async fn check(gate: Option<&AuthGate>, batch: Vec<Entry>) -> Checked {
    match gate {
        None => Checked {
            kept: batch,
            ..Checked::default()
        },
        Some(gate) => gate.check(batch).await,
    }
}

/// Most undecided entries held in memory; beyond it they are left pending in Redis without a
/// copy here (the claim sweep redelivers them). Entries are at most `limits.max_entry_bytes`.
pub const PARKED_MAX: usize = 1024;

#[derive(Clone)]
pub struct AuthGate {
    authenticator: Arc<Authenticator>,
    /// Entries of never-seen producers that could not be decided during a Postgres outage.
    /// Not acknowledged (still pending in Redis); retried with every later batch.
    parked: Arc<Mutex<Vec<Entry>>>,
}

fn needs_token(entry: &Entry) -> bool {
    matches!(entry.field("type"), Some(b"data") | Some(b"heartbeat"))
}

impl AuthGate {
    pub fn new(authenticator: Arc<Authenticator>) -> AuthGate {
        AuthGate {
            authenticator,
            parked: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Entries held undecided right now.
    pub fn parked(&self) -> usize {
        self.parked.lock().expect("parked lock").len()
    }

    /// Authenticate a batch (plus the entries parked by earlier calls). Never fails and never
    /// waits for Postgres:
    /// - accepted entries are `kept` with their producer id, refused ones are `dead`;
    /// - during an outage, producers with a cached state are decided from it (even past
    ///   `cache_ttl`);
    /// - entries of producers never seen cannot be decided then: they are in neither list, so
    ///   the writer neither stores, dead-letters nor acknowledges them. They stay pending in
    ///   Redis and are parked here to be decided with a later batch once Postgres answers.
    ///
    /// Last-seen times are only noted (written in the background, best effort).
    pub async fn check(&self, batch: Vec<Entry>) -> Checked {
        let (batch, held) = self.with_parked(batch);
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
        let verdicts = self.authenticator.authenticate_batch(&tokens).await;
        let mut out = Checked {
            kept: free,
            ..Checked::default()
        };
        let mut seen = HashSet::new();
        let mut undecided = Vec::new();
        for (entry, verdict) in gated.into_iter().zip(verdicts) {
            match verdict {
                Some(Ok(identity)) => {
                    seen.insert(identity.producer_id);
                    out.producers.insert(entry.at.clone(), identity.producer_id);
                    out.kept.push(entry);
                }
                Some(Err(denial)) => {
                    let why = Rejection::new(Reason::Auth, denial.why);
                    out.dead.push((entry, why));
                }
                None => undecided.push(entry),
            }
        }
        self.authenticator.note_seen(seen);
        self.park(undecided, &held);
        out
    }

    /// `batch` with the parked entries in front, each entry once (a parked entry can come
    /// again through the claim sweep or a re-read of our pending list; the parked copy keeps
    /// its original delivery count). Also returns the refs that were parked.
    fn with_parked(&self, batch: Vec<Entry>) -> (Vec<Entry>, HashSet<EntryRef>) {
        let parked = std::mem::take(&mut *self.parked.lock().expect("parked lock"));
        if parked.is_empty() {
            return (batch, HashSet::new());
        }
        let held: HashSet<EntryRef> = parked.iter().map(|e| e.at.clone()).collect();
        let merged = parked
            .into_iter()
            .chain(batch.into_iter().filter(|e| !held.contains(&e.at)))
            .collect();
        (merged, held)
    }

    fn park(&self, entries: Vec<Entry>, held: &HashSet<EntryRef>) {
        let metrics = self.authenticator.metrics();
        let new = entries.iter().filter(|e| !held.contains(&e.at)).count();
        metrics.undecided.inc_by(new as u64);
        let mut parked = self.parked.lock().expect("parked lock");
        let total = entries.len();
        let room = PARKED_MAX.saturating_sub(parked.len());
        parked.extend(entries.into_iter().take(room));
        metrics.parked.set(parked.len() as i64);
        if new > 0 {
            tracing::warn!(
                entries = new,
                parked = parked.len(),
                "Postgres unavailable and producer never seen: entries left pending until it answers"
            );
        }
        if total > room {
            tracing::warn!(
                entries = total - room,
                "too many undecided entries to hold; left pending in Redis for the claim sweep"
            );
        }
    }
}
