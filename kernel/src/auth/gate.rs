//! The ingest pipeline's auth step: one call per batch, before protocol validation.
//!
//! With auth on, every `data` and `heartbeat` entry needs a valid token; the gate reads only
//! an entry's envelope ([`crate::protocol::envelope`]: its `type` and `token`). Refused entries are
//! returned as dead letters with reason `auth` (the DLQ writer drops the `token` field); the
//! producer id of each accepted entry comes from its token's `sub` and is stamped on the
//! events after parsing. Other types (`control`, and `ack`/`error` which the parser refuses)
//! pass through untouched.
//!
//! The gate never waits for Postgres (see `docs/auth.md`, "Postgres outages"): the writer's
//! store/spill step handles the outage for the entries it can decide. It keeps no entries:
//! the undecided ones go back to the caller, which holds them for the next batch.

use std::sync::Arc;

use foldhash::{HashMap, HashSet, HashSetExt};
use uuid::Uuid;

use super::authenticator::Authenticator;
use crate::protocol::{envelope, Entry, EntryRef, Event, Reason, Rejection};

/// Outcome of the auth step for one batch.
#[derive(Debug, Default)]
pub struct Checked {
    /// Entries to go on to validation and storage.
    pub kept: Vec<Entry>,
    /// Refused entries, for the dead-letter stream.
    pub dead: Vec<(Entry, Rejection)>,
    /// Producer id of every accepted `data`/`heartbeat` entry.
    pub producers: HashMap<EntryRef, Uuid>,
    /// Entries of never-seen producers that could not be decided (Postgres unavailable): in
    /// neither list above, so the writer neither stores, dead-letters nor acknowledges them.
    pub undecided: Vec<Entry>,
    /// The parked entries this batch was given, for telling new undecided entries apart.
    pub was_parked: HashSet<EntryRef>,
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
/// Postgres outage reaches the writer's store/spill step. `parked`: the entries undecided by
/// earlier calls, decided again in front of `batch`.
pub async fn check(gate: Option<&AuthGate>, batch: Vec<Entry>, parked: Vec<Entry>) -> Checked {
    match gate {
        None => Checked {
            kept: with_parked(parked, batch).0,
            ..Checked::default()
        },
        Some(gate) => gate.check(batch, parked).await,
    }
}

#[derive(Clone)]
pub struct AuthGate {
    authenticator: Arc<Authenticator>,
}

impl AuthGate {
    pub fn new(authenticator: Arc<Authenticator>) -> AuthGate {
        AuthGate { authenticator }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Counts what the caller parked of [`Checked::undecided`]: `new` entries not parked
    /// before, `held` parked in all.
    pub fn count_parked(&self, new: usize, held: usize) {
        let metrics = self.authenticator.metrics();
        metrics.undecided.inc_by(new as u64);
        metrics.parked.set(held as i64);
    }

    /// Authenticate a batch (plus the `parked` entries of earlier calls). Never fails and never
    /// waits for Postgres:
    /// - accepted entries are `kept` with their producer id, refused ones are `dead`;
    /// - during an outage, producers with a cached state are decided from it (even past
    ///   `cache_ttl`);
    /// - entries of producers never seen cannot be decided then: they are in neither list, so
    ///   the writer neither stores, dead-letters nor acknowledges them. They stay pending in
    ///   Redis and are returned as `undecided`, for the caller to park and pass back with a
    ///   later batch once Postgres answers.
    ///
    /// Last-seen times are only noted (written in the background, best effort).
    pub async fn check(&self, batch: Vec<Entry>, parked: Vec<Entry>) -> Checked {
        let (batch, held) = with_parked(parked, batch);
        let (gated, free): (Vec<Entry>, Vec<Entry>) =
            batch.into_iter().partition(|e| envelope(e).needs_token());
        let tokens: Vec<Option<&str>> = gated.iter().map(|e| envelope(e).token_text()).collect();
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
        out.undecided = undecided;
        out.was_parked = held;
        out
    }
}

/// `batch` with the parked entries in front, each entry once (a parked entry can come
/// again through the claim sweep or a re-read of our pending list; the parked copy keeps
/// its original delivery count). Also returns the refs that were parked.
fn with_parked(parked: Vec<Entry>, batch: Vec<Entry>) -> (Vec<Entry>, HashSet<EntryRef>) {
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
