//! Stages 1 and 2 of a batch: admitting its entries. Auth first (when on): refused entries
//! become `auth` dead letters, undecided ones are parked in the holdings. Then, in this
//! order: a trimmed entry is settled, an entry read only as a summary is dead-lettered with
//! its flaw, an entry delivered more than `ingest.max_deliveries` times is dead-lettered, and
//! the rest is parsed into an event, a settled heartbeat or control, or a dead letter. Last,
//! events with a payload schema binding are validated: a payload that does not conform is a
//! `schema` dead letter, an event whose binding cannot be looked up now is parked like an
//! undecided auth entry. Nothing here writes to Redis or Postgres.

use tracing::{info, warn};

use super::settle::now_ns;
use super::{Chunk, Holdings};
use crate::auth::gate::AuthGate;
use crate::entry::{EntriesByRef, Entry, EntryRef};
use crate::metrics::Metrics;
use crate::protocol::{self, Event, Limits, Message, Reason, Rejection};
use crate::schemas::Schemas;
use fdc_common::config::LimitsConfig;

/// A batch after admission: what commit and settle need.
#[derive(Debug, Default)]
pub struct Batch {
    /// Entries done with once the batch commits (heartbeats, controls, trimmed).
    pub settled: Vec<EntryRef>,
    pub dead: Vec<(Entry, Rejection)>,
    pub events: Vec<Event>,
    /// The entry behind each event, for the DLQ should Postgres reject the event.
    pub entries: EntriesByRef,
}

pub struct Admit {
    /// Producer authentication; `None` while `auth.enabled` is false.
    pub auth: Option<AuthGate>,
    /// Where undecided entries are parked for the next batch.
    pub holdings: Holdings,
    pub limits: LimitsConfig,
    /// `ingest.max_deliveries`.
    pub max_deliveries: u64,
    pub metrics: Metrics,
    /// Payload schema validation; `None` when no Postgres backs it (unit tests).
    pub schemas: Option<Schemas>,
}

impl Admit {
    /// Auth (when on) first: refused entries are dead-lettered as `auth`, accepted events get
    /// their producer id from the token; then validation.
    pub async fn admit(&self, chunk: Chunk) -> Batch {
        let parked = self.holdings.take_parked();
        let was_parked: foldhash::HashSet<EntryRef> = parked.iter().map(|e| e.at.clone()).collect();
        let mut auth = crate::auth::gate::check(self.auth.as_ref(), chunk, parked).await;
        if let Some(gate) = &self.auth {
            let parked = self
                .holdings
                .park(std::mem::take(&mut auth.undecided), &was_parked);
            gate.count_parked(parked.new, parked.held);
        }
        let mut batch = self.sort(std::mem::take(&mut auth.kept));
        auth.apply(&mut batch.events, &mut batch.dead);
        if let Some(schemas) = &self.schemas {
            self.validate(schemas, &mut batch, &was_parked).await;
        }
        batch
    }

    /// Validates the payloads of bound producers and streams: conforming events get their
    /// `schema_id`, the others become `schema` dead letters; undecided ones are parked.
    async fn validate(
        &self,
        schemas: &Schemas,
        batch: &mut Batch,
        was_parked: &foldhash::HashSet<EntryRef>,
    ) {
        let judged = schemas.judge(std::mem::take(&mut batch.events)).await;
        batch.events = judged.kept;
        for (event, why) in judged.dead {
            if let Some(entry) = batch.entries.remove(&event.source) {
                batch.dead.push((entry, why));
            }
        }
        let undecided: Vec<Entry> = judged
            .undecided
            .iter()
            .filter_map(|e| batch.entries.remove(&e.source))
            .collect();
        if !undecided.is_empty() {
            let parked = self.holdings.park(undecided, was_parked);
            if let Some(gate) = &self.auth {
                gate.count_parked(parked.new, parked.held);
            }
        }
    }

    /// Validates each entry into an event, a dead letter, or a settled message.
    fn sort(&self, batch: Chunk) -> Batch {
        let limits = Limits {
            config: self.limits.clone(),
            now_ns: now_ns(),
        };
        let mut sorted = Batch::default();
        // Nearly every entry of a batch is an event: grown once, not doubling up to it.
        sorted.events.reserve(batch.len());
        sorted.entries.reserve(batch.len());
        for entry in batch {
            if entry.fields.is_none() {
                // Trimmed while pending: there is nothing left to store or dead-letter.
                warn!(stream = %entry.at.stream, id = %entry.at.id, "pending entry was trimmed from the stream");
                self.metrics.redis_trimmed.inc();
                sorted.settled.push(entry.at);
                continue;
            }
            if let Some(flaw) = &entry.flaw {
                // Unreadable or oversized: held only as a summary, never stored.
                let why = Rejection::from(&flaw.why);
                sorted.dead.push((entry, why));
                continue;
            }
            if entry.deliveries > self.max_deliveries {
                let why = Rejection::new(
                    Reason::MaxDeliveries,
                    format!(
                        "delivered {} times, more than ingest.max_deliveries = {}",
                        entry.deliveries, self.max_deliveries
                    ),
                );
                sorted.dead.push((entry, why));
                continue;
            }
            match protocol::parse(&entry, &limits) {
                Err(why) => sorted.dead.push((entry, why)),
                Ok(parsed) => match parsed.message {
                    Message::Data(event) => {
                        sorted.events.push(event);
                        sorted.entries.insert(entry.at.clone(), entry);
                    }
                    Message::Heartbeat => {
                        self.metrics.heartbeats.inc();
                        sorted.settled.push(entry.at);
                    }
                    Message::Control { data } => {
                        self.metrics.controls.inc();
                        info!(stream = %entry.at.stream, id = %entry.at.id, %data, "control message");
                        sorted.settled.push(entry.at);
                    }
                },
            }
        }
        sorted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: Option<Vec<(&str, &str)>>, deliveries: u64) -> Entry {
        let mut e = Entry::new(
            EntryRef {
                stream: "events".into(),
                id: id.into(),
            },
            fields.map(|f| {
                f.into_iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect()
            }),
        );
        e.deliveries = deliveries;
        e
    }

    fn admit() -> Admit {
        Admit {
            auth: None,
            holdings: Holdings::default(),
            limits: LimitsConfig::default(),
            max_deliveries: 2,
            metrics: Metrics::new(),
            schemas: None,
        }
    }

    fn reason(batch: &Batch, id: &str) -> Option<&'static str> {
        batch
            .dead
            .iter()
            .find(|(e, _)| &*e.at.id == id)
            .map(|(_, why)| why.reason.code())
    }

    /// Trimmed beats everything, a flaw beats max_deliveries, max_deliveries beats the parse
    /// reasons; a good entry within max_deliveries becomes an event.
    #[tokio::test]
    async fn precedence_trimmed_then_flaw_then_max_deliveries_then_parse() {
        let (id, ts) = (uuid::Uuid::new_v4().to_string(), now_ns().to_string());
        let good = vec![
            ("type", "data"),
            ("version", "1.0.0"),
            ("id", id.as_str()),
            ("ts", ts.as_str()),
            ("data", r#"{"payload":{"a":1}}"#),
        ];
        let mut flawed = entry("2-0", Some(vec![]), 9);
        flawed.flaw = Some(Box::new(crate::entry::Flaw {
            why: crate::entry::FlawWhy::new(crate::entry::FlawReason::BadEncoding, "odd"),
            fields: vec![],
            omitted: 0,
        }));
        let chunk = vec![
            entry("1-0", None, 9),
            flawed,
            entry("3-0", Some(vec![("type", "data")]), 9),
            entry("4-0", Some(vec![("type", "data")]), 1),
            entry("5-0", Some(good.clone()), 2),
            entry("6-0", Some(good), 3),
        ];
        let batch = admit().admit(chunk).await;
        assert_eq!(
            batch.settled,
            vec![EntryRef {
                stream: "events".into(),
                id: "1-0".into()
            }]
        );
        assert_eq!(reason(&batch, "2-0"), Some("bad_encoding"));
        assert_eq!(reason(&batch, "3-0"), Some("max_deliveries"));
        let parse = reason(&batch, "4-0").expect("a parse reason");
        assert!(
            parse != "max_deliveries" && parse != "bad_encoding",
            "{parse}"
        );
        assert_eq!(batch.events.len(), 1);
        assert_eq!(&*batch.events[0].source.id, "5-0");
        assert_eq!(reason(&batch, "6-0"), Some("max_deliveries"));
        assert_eq!(batch.dead.len(), 4);
    }
}
