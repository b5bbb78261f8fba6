//! Workload W1: protocol v1 `data` events, seeded so every run sends the same bytes.
//!
//! Subjects are drawn from 10,000 keys, each event carries 3 tags with distinct keys out of a
//! vocabulary of 20 keys × 50 values (1,000 pairs), a JSON payload of about 300 bytes, a `ts`
//! spread evenly over two consecutive UTC days (two daily partitions) and a UUIDv7 id whose
//! time part is the event's `ts`.

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

pub const SUBJECTS: u32 = 10_000;
pub const TAG_KEYS: u8 = 20;
pub const TAG_VALUES: u8 = 50;
pub const TAGS_PER_EVENT: usize = 3;

const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// The W1 workload of `events` events starting at UTC day `first_day` (days since the epoch).
#[derive(Debug, Clone, Copy)]
pub struct W1 {
    pub events: usize,
    pub seed: u64,
    pub first_day: i64,
}

/// One generated event, before it becomes a stream entry or COPY rows.
#[derive(Debug, Clone, PartialEq)]
pub struct W1Event {
    pub id: Uuid,
    pub ts_ns: i64,
    /// Index of the subject key, see [`subject_key`].
    pub subject: u32,
    /// (key index, value index) of each tag, keys distinct; see [`tag_key`] / [`tag_value`].
    pub tags: [(u8, u8); TAGS_PER_EVENT],
    pub payload: String,
}

pub fn subject_key(index: u32) -> String {
    format!("subject-{index:05}")
}

pub fn tag_key(index: u8) -> String {
    format!("key{index:02}")
}

pub fn tag_value(index: u8) -> String {
    format!("value{index:02}")
}

impl W1 {
    /// Events in `ts` order; the same seed gives the same events.
    pub fn iter(&self) -> impl Iterator<Item = W1Event> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let n = self.events.max(1) as i64;
        let start = self.first_day * NS_PER_DAY;
        // Each event owns an equal slot of the two days; its ts is random within the slot.
        let slot = (2 * NS_PER_DAY / n).max(1);
        (0..self.events).map(move |i| {
            let ts_ns = start + i as i64 * slot + rng.gen_range(0..slot);
            let mut random = [0u8; 10];
            rng.fill(&mut random);
            let id = uuid::Builder::from_unix_timestamp_millis((ts_ns / 1_000_000) as u64, &random)
                .into_uuid();
            let subject = rng.gen_range(0..SUBJECTS);
            let keys = sample(&mut rng, TAG_KEYS as usize, TAGS_PER_EVENT);
            let mut tags = [(0u8, 0u8); TAGS_PER_EVENT];
            for (slot, key) in tags.iter_mut().zip(keys.iter()) {
                *slot = (key as u8, rng.gen_range(0..TAG_VALUES));
            }
            let payload = payload(&mut rng, i);
            W1Event {
                id,
                ts_ns,
                subject,
                tags,
                payload,
            }
        })
    }

    /// Every subject key the workload can draw.
    pub fn all_subjects() -> impl Iterator<Item = String> {
        (0..SUBJECTS).map(subject_key)
    }

    /// Every (key, value) tag pair the workload can draw.
    pub fn all_tags() -> impl Iterator<Item = (String, String)> {
        (0..TAG_KEYS).flat_map(|k| (0..TAG_VALUES).map(move |v| (tag_key(k), tag_value(v))))
    }
}

/// A sensor-like reading of about 300 bytes: numbers, a short string and a nested object.
fn payload(rng: &mut ChaCha8Rng, sequence: usize) -> String {
    const STATUS: [&str; 4] = ["ok", "degraded", "calibrating", "low-battery"];
    format!(
        concat!(
            r#"{{"temperature":{:.2},"humidity":{:.1},"pressure":{:.2},"battery":{},"#,
            r#""rssi":{},"status":"{}","firmware":"v2.{}.{}","sequence":{},"#,
            r#""location":{{"lat":{:.6},"lon":{:.6},"alt":{:.1},"accuracy":{:.1}}},"#,
            r#""readings":{{"co2":{},"voc":{:.3},"pm25":{:.1},"pm10":{:.1}}},"#,
            r#""flags":{{"charging":{},"alarm":{}}}}}"#
        ),
        rng.gen_range(-20.0..45.0f64),
        rng.gen_range(0.0..100.0f64),
        rng.gen_range(950.0..1050.0f64),
        rng.gen_range(0..=100u32),
        -rng.gen_range(30..=110i32),
        STATUS[rng.gen_range(0..STATUS.len())],
        rng.gen_range(0..10u32),
        rng.gen_range(0..40u32),
        sequence,
        rng.gen_range(-90.0..90.0f64),
        rng.gen_range(-180.0..180.0f64),
        rng.gen_range(0.0..3000.0f64),
        rng.gen_range(1.0..20.0f64),
        rng.gen_range(380..2000u32),
        rng.gen_range(0.0..5.0f64),
        rng.gen_range(0.0..150.0f64),
        rng.gen_range(0.0..200.0f64),
        rng.gen_bool(0.3),
        rng.gen_bool(0.01),
    )
}

/// The `data` field of the event's stream entry: subject, tags and payload.
pub fn data_json(event: &W1Event) -> String {
    let mut tags = String::with_capacity(64);
    for (i, (k, v)) in event.tags.iter().enumerate() {
        if i > 0 {
            tags.push(',');
        }
        tags.push_str(&format!("\"{}\":\"{}\"", tag_key(*k), tag_value(*v)));
    }
    format!(
        r#"{{"subject":"{}","tags":{{{}}},"payload":{}}}"#,
        subject_key(event.subject),
        tags,
        event.payload
    )
}

/// The fields of the protocol v1 stream entry for `event`.
pub fn entry_fields(event: &W1Event) -> [(&'static str, String); 5] {
    [
        ("type", "data".to_string()),
        ("version", "1.0.0".to_string()),
        ("id", event.id.to_string()),
        ("ts", event.ts_ns.to_string()),
        ("data", data_json(event)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w1(events: usize, seed: u64) -> W1 {
        W1 {
            events,
            seed,
            first_day: 20_000,
        }
    }

    #[test]
    fn same_seed_same_events_other_seed_other_events() {
        let a: Vec<W1Event> = w1(50, 7).iter().collect();
        let b: Vec<W1Event> = w1(50, 7).iter().collect();
        let c: Vec<W1Event> = w1(50, 8).iter().collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn events_fit_w1() {
        let events: Vec<W1Event> = w1(2_000, 1).iter().collect();
        let start = 20_000 * NS_PER_DAY;
        for pair in events.windows(2) {
            assert!(pair[0].ts_ns < pair[1].ts_ns, "ts increases");
        }
        assert!(events
            .iter()
            .all(|e| e.ts_ns >= start && e.ts_ns < start + 2 * NS_PER_DAY));
        let days: std::collections::BTreeSet<i64> =
            events.iter().map(|e| e.ts_ns / NS_PER_DAY).collect();
        assert_eq!(days.len(), 2);
        for e in &events {
            assert_eq!(e.id.get_version_num(), 7);
            let keys: std::collections::HashSet<u8> = e.tags.iter().map(|t| t.0).collect();
            assert_eq!(keys.len(), TAGS_PER_EVENT, "tag keys distinct");
            serde_json::from_str::<serde_json::Value>(&e.payload).expect("payload is JSON");
            let data: serde_json::Value = serde_json::from_str(&data_json(e)).expect("JSON");
            assert_eq!(data["tags"].as_object().unwrap().len(), TAGS_PER_EVENT);
        }
        let mean = events.iter().map(|e| e.payload.len()).sum::<usize>() / events.len();
        assert!(
            (270..=330).contains(&mean),
            "payload about 300 bytes, got {mean}"
        );
        assert_eq!(W1::all_tags().count(), 1_000);
        assert_eq!(W1::all_subjects().count(), 10_000);
    }
}
