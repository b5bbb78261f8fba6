//! The ingest side of the registry: which schema version validates each event, with caches, and
//! the validation itself.
//!
//! An event is validated against its producer's binding (auth on) or, when the producer has no
//! binding of its own (or auth is off), against its stream's binding from `ingest.schemas`.
//! Bindings and the versions of a name are cached for `ingest.schema_cache_ttl`, so a new
//! binding or version takes effect within it, on every replica, without a restart. Compiled
//! validators are cached per `schema_id` for good: a version's body never changes.
//!
//! Postgres outages never lose or hold up entries: a failed lookup pauses lookups (the breaker
//! of `retry::breaker`) and the last known state is used, even past the TTL; an event whose
//! binding was never known is returned as undecided, for the caller to leave pending. Entries
//! are dropped only after a lookup that answered, once they are older than the TTL (`ttl_cache`),
//! so the caches hold what was used lately, not every producer ever seen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fdc_common::schema_binding::Binding;
use jsonschema::Validator;
use sqlx::PgPool;
use uuid::Uuid;

use super::compile::{check, compile};
use super::store::{self, VersionRow};
use super::ttl_cache::TtlCache;
use crate::protocol::{Event, Reason, Rejection};
use crate::retry::breaker::OutageBreaker;

/// Longest wait for one lookup; a slower Postgres counts as unavailable.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A compiled schema version.
pub struct Compiled {
    pub schema_id: Uuid,
    /// `name@version`.
    pub label: String,
    /// `Err`: the stored body does not compile (added by hand, or by an older kernel).
    validator: Result<Validator, String>,
}

/// What became of a batch's events.
#[derive(Default)]
pub struct Judged {
    /// Events to store, each with the `schema_id` it was validated against (if any).
    pub kept: Vec<Event>,
    /// Events whose payload does not conform (reason `schema`), by entry.
    pub dead: Vec<(Event, Rejection)>,
    /// Events whose binding could not be looked up (Postgres unavailable, nothing cached).
    pub undecided: Vec<Event>,
}

/// The registry as the ingest path uses it. Cheap to clone.
#[derive(Clone)]
pub struct Schemas {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    /// `ingest.schemas`, parsed (config validation checked the syntax).
    streams: HashMap<String, Binding>,
    breaker: OutageBreaker,
    /// Each producer's binding text (`None`: unbound); entries unused for a TTL are dropped.
    producers: Mutex<TtlCache<Uuid, Option<String>>>,
    /// The versions of each schema name; entries unused for a TTL are dropped.
    names: Mutex<TtlCache<String, Vec<VersionRow>>>,
    compiled: Mutex<HashMap<Uuid, Arc<Compiled>>>,
}

/// Where an event's binding comes from, for the dead letter's detail.
enum Source<'a> {
    Producer(&'a str),
    Stream(&'a str, &'a Binding),
}

impl Schemas {
    pub fn new(pool: PgPool, ttl: Duration, streams: &BTreeMap<String, String>) -> Schemas {
        let streams = streams
            .iter()
            .filter_map(|(s, b)| Some((s.clone(), b.parse().ok()?)))
            .collect();
        Schemas {
            inner: Arc::new(Inner {
                pool,
                streams,
                breaker: OutageBreaker::default(),
                producers: Mutex::new(TtlCache::new(ttl)),
                names: Mutex::new(TtlCache::new(ttl)),
                compiled: Mutex::default(),
            }),
        }
    }

    /// Validates the `events` that have a binding. Never fails and never waits longer than a
    /// lookup timeout; see the module doc for outages.
    pub async fn judge(&self, events: Vec<Event>) -> Judged {
        let inner = &self.inner;
        let producers: HashSet<Uuid> = events.iter().filter_map(|e| e.producer_id).collect();
        if producers.is_empty() && inner.streams.is_empty() {
            return Judged {
                kept: events,
                ..Judged::default()
            };
        }
        self.refresh_producers(&producers).await;
        let known = {
            let cache = inner.producers.lock().expect("schema cache");
            producers
                .iter()
                .filter_map(|id| Some((*id, cache.get(id)?.clone())))
                .collect::<HashMap<_, _>>()
        };

        // The binding text of each event: `Err(())` when its producer's is unknown.
        let mut names: HashSet<String> = HashSet::new();
        let mut parsed: HashMap<String, Result<Binding, String>> = HashMap::new();
        let binding_of = |e: &Event| -> Result<Option<String>, ()> {
            if let Some(id) = e.producer_id {
                match known.get(&id) {
                    None => return Err(()),
                    Some(Some(text)) => return Ok(Some(text.clone())),
                    Some(None) => {}
                }
            }
            Ok(inner.streams.get(&*e.source.stream).map(|b| b.to_string()))
        };
        for e in &events {
            if let Ok(Some(text)) = binding_of(e) {
                let b = parsed
                    .entry(text.clone())
                    .or_insert_with(|| text.parse::<Binding>().map_err(|e| e.to_string()));
                if let Ok(b) = b {
                    names.insert(b.name.clone());
                }
            }
        }
        self.refresh_names(&names).await;
        let picked = self.pick_all(&parsed);
        self.compile_missing(&picked).await;

        let compiled = inner.compiled.lock().expect("schema cache").clone();
        let mut out = Judged::default();
        for mut e in events {
            let text = match binding_of(&e) {
                Err(()) => {
                    out.undecided.push(e);
                    continue;
                }
                Ok(None) => {
                    out.kept.push(e);
                    continue;
                }
                Ok(Some(text)) => text,
            };
            let source = match e
                .producer_id
                .filter(|id| matches!(known.get(id), Some(Some(_))))
            {
                Some(_) => Source::Producer(&text),
                None => Source::Stream(&e.source.stream, &inner.streams[&*e.source.stream]),
            };
            let verdict = match picked.get(&text) {
                None => Verdict::Undecided,
                Some(Err(why)) => Verdict::Dead(format!("{}: {why}", source.describe())),
                Some(Ok(id)) => match compiled.get(id) {
                    None => Verdict::Undecided,
                    Some(c) => match &c.validator {
                        Err(why) => Verdict::Dead(format!(
                            "schema {} (schema_id {}) does not compile: {why}",
                            c.label, c.schema_id
                        )),
                        Ok(v) => match check(v, &e.payload) {
                            Ok(()) => Verdict::Valid(c.schema_id),
                            Err(bad) => Verdict::Dead(format!(
                                "payload does not match schema {} (schema_id {}): at {:?}, keyword {:?}: {}",
                                c.label, c.schema_id, bad.pointer, bad.keyword, bad.message
                            )),
                        },
                    },
                },
            };
            match verdict {
                Verdict::Valid(id) => {
                    e.schema_id = Some(id);
                    out.kept.push(e);
                }
                Verdict::Dead(detail) => out.dead.push((e, Rejection::new(Reason::Schema, detail))),
                Verdict::Undecided => out.undecided.push(e),
            }
        }
        out
    }

    /// The schema id each binding text resolves to, or why it resolves to none; bindings
    /// whose name's versions are unknown (never looked up) are absent.
    fn pick_all(
        &self,
        parsed: &HashMap<String, Result<Binding, String>>,
    ) -> HashMap<String, Result<Uuid, String>> {
        let names = self.inner.names.lock().expect("schema cache");
        parsed
            .iter()
            .filter_map(|(text, b)| {
                let resolved = match b {
                    Err(why) => Err(format!("binding {text:?} is not valid: {why}")),
                    Ok(b) => {
                        let versions = names.get(&b.name)?;
                        b.pick(versions).map(|v| v.schema_id).ok_or_else(|| {
                            format!("no version of schema {} matches binding {b}", b.name)
                        })
                    }
                };
                Some((text.clone(), resolved))
            })
            .collect()
    }

    async fn refresh_producers(&self, producers: &HashSet<Uuid>) {
        let now = Instant::now();
        let stale = self
            .inner
            .producers
            .lock()
            .expect("schema cache")
            .stale(producers, now);
        if stale.is_empty() {
            return;
        }
        let Some(rows) = self
            .lookup(store::bindings_of(&self.inner.pool, &stale))
            .await
        else {
            return;
        };
        let mut cache = self.inner.producers.lock().expect("schema cache");
        // A producer without a row (not created yet) is unbound.
        for id in stale {
            cache.insert(id, None, now);
        }
        for (id, binding) in rows {
            cache.insert(id, binding, now);
        }
        cache.sweep_after_lookup(now);
    }

    async fn refresh_names(&self, names: &HashSet<String>) {
        let now = Instant::now();
        let stale = self
            .inner
            .names
            .lock()
            .expect("schema cache")
            .stale(names, now);
        if stale.is_empty() {
            return;
        }
        let pool = self.inner.pool.clone();
        let query = async move {
            let mut conn = pool.acquire().await?;
            store::versions_of(&mut conn, &stale)
                .await
                .map(|rows| (stale, rows))
        };
        let Some((stale, rows)) = self.lookup(query).await else {
            return;
        };
        let mut cache = self.inner.names.lock().expect("schema cache");
        for name in stale {
            let value = rows.iter().filter(|r| r.name == name).cloned().collect();
            cache.insert(name, value, now);
        }
        cache.sweep_after_lookup(now);
    }

    async fn compile_missing(&self, picked: &HashMap<String, Result<Uuid, String>>) {
        let missing: Vec<Uuid> = {
            let cache = self.inner.compiled.lock().expect("schema cache");
            let ids: HashSet<Uuid> = picked
                .values()
                .filter_map(|r| r.as_ref().ok())
                .filter(|id| !cache.contains_key(*id))
                .copied()
                .collect();
            ids.into_iter().collect()
        };
        if missing.is_empty() {
            return;
        }
        let Some(rows) = self.lookup(store::bodies(&self.inner.pool, &missing)).await else {
            return;
        };
        for (schema_id, label, body) in rows {
            let validator = compile(&body).map_err(|e| e.to_string());
            let compiled = Arc::new(Compiled {
                schema_id,
                label,
                validator,
            });
            self.inner
                .compiled
                .lock()
                .expect("schema cache")
                .insert(schema_id, compiled);
        }
    }

    /// Runs a lookup unless the breaker pauses lookups; `None` when it did not run or failed.
    async fn lookup<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Option<T> {
        let breaker = &self.inner.breaker;
        if !breaker.allows(Instant::now()) {
            return None;
        }
        let error = match tokio::time::timeout(LOOKUP_TIMEOUT, query).await {
            Ok(Ok(rows)) => {
                if breaker.is_open() {
                    tracing::info!("schema lookups answer again");
                }
                breaker.success();
                return Some(rows);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {LOOKUP_TIMEOUT:?}"),
        };
        let was_open = breaker.is_open();
        let pause = breaker.failure(Instant::now());
        if !was_open {
            tracing::warn!(%error, ?pause, "cannot look up payload schemas; using the last known bindings, leaving entries of unknown ones pending");
        }
        None
    }
}

enum Verdict {
    Valid(Uuid),
    Dead(String),
    Undecided,
}

impl Source<'_> {
    fn describe(&self) -> String {
        match self {
            Source::Producer(text) => format!("producer is bound to schema {text}"),
            Source::Stream(stream, b) => {
                format!("stream {stream} is bound to schema {b} (ingest.schemas)")
            }
        }
    }
}
