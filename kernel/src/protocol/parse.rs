//! Validation of a raw entry against protocol v1 and the configured limits.

use foldhash::{HashSet, HashSetExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use std::borrow::Cow;

use super::{
    envelope, Entry, Event, Message, Parsed, Reason, Rejection, Tags, Token, SUPPORTED_MAJOR,
};
use fdc_common::config::LimitsConfig;

/// The limits `parse` enforces, with the clock reading to judge `ts` against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub config: LimitsConfig,
    /// Now, in nanoseconds since the epoch.
    pub now_ns: i64,
}

const REQUIRED: [&str; 4] = ["type", "version", "id", "ts"];

pub fn parse(entry: &Entry, limits: &Limits) -> Result<Parsed, Rejection> {
    let fields = entry
        .fields
        .as_ref()
        .ok_or_else(|| Rejection::new(Reason::MissingField, "entry has no fields"))?;
    let size = entry.size();
    if size > limits.config.max_entry_bytes {
        return Err(Rejection::new(
            Reason::TooLarge,
            format!(
                "entry is {size} bytes, limit is {}",
                limits.config.max_entry_bytes
            ),
        ));
    }
    if let Some(name) = fields.repeated_name() {
        return Err(Rejection::new(
            Reason::DuplicateField,
            format!("field `{name}` appears more than once"),
        ));
    }
    for name in REQUIRED {
        if entry.field(name).is_none() {
            return Err(Rejection::new(
                Reason::MissingField,
                format!("required field `{name}` is missing"),
            ));
        }
    }
    let text = |name: &str| -> Result<&str, Rejection> {
        std::str::from_utf8(entry.field(name).unwrap_or_default()).map_err(|_| {
            Rejection::new(
                reason_for_field(name),
                format!("field `{name}` is not UTF-8"),
            )
        })
    };

    check_version(text("version")?)?;
    let kind = text("type")?;
    let id = parse_id(text("id")?)?;
    let ts_ns = parse_ts(text("ts")?, limits)?;
    let token = envelope(entry)
        .token
        .map(|t| Token::new(String::from_utf8_lossy(t).into_owned()));

    let message = match kind {
        "data" => {
            let data = entry.field("data").ok_or_else(|| {
                Rejection::new(Reason::MissingField, "`data` message has no `data` field")
            })?;
            let body = parse_data(data, &limits.config)?;
            Message::Data(Event {
                id,
                ts_ns,
                subject: body.subject,
                tags: body.tags,
                payload: body.payload.get().to_string(),
                source: entry.at.clone(),
                producer_id: None,
                schema_id: None,
            })
        }
        "heartbeat" => Message::Heartbeat,
        "control" => Message::Control {
            data: String::from_utf8_lossy(entry.field("data").unwrap_or_default()).into_owned(),
        },
        "ack" | "error" => {
            return Err(Rejection::new(
                Reason::BadDirection,
                format!("`{kind}` messages flow from the kernel to producers only"),
            ))
        }
        other => {
            return Err(Rejection::new(
                Reason::BadType,
                format!(
                    "unknown type `{}`; expected data, heartbeat or control",
                    truncate(other)
                ),
            ))
        }
    };
    Ok(Parsed { message, token })
}

fn reason_for_field(name: &str) -> Reason {
    match name {
        "type" => Reason::BadType,
        "version" => Reason::BadVersion,
        "id" => Reason::BadId,
        "ts" => Reason::BadTs,
        _ => Reason::BadData,
    }
}

fn check_version(version: &str) -> Result<(), Rejection> {
    let bad = || {
        Rejection::new(
            Reason::BadVersion,
            format!(
                "version `{}` is not MAJOR.MINOR.PATCH with major {SUPPORTED_MAJOR}",
                truncate(version)
            ),
        )
    };
    let parts: Vec<&str> = version.split('.').collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    match parts[0].parse::<u64>() {
        Ok(SUPPORTED_MAJOR) => Ok(()),
        _ => Err(bad()),
    }
}

fn parse_id(id: &str) -> Result<Uuid, Rejection> {
    Uuid::parse_str(id).map_err(|_| {
        Rejection::new(
            Reason::BadId,
            format!("id `{}` is not a UUID", truncate(id)),
        )
    })
}

fn parse_ts(ts: &str, limits: &Limits) -> Result<i64, Rejection> {
    let value: i64 = ts.parse().map_err(|_| {
        Rejection::new(
            Reason::BadTs,
            format!(
                "ts `{}` is not an integer count of nanoseconds",
                truncate(ts)
            ),
        )
    })?;
    let max_age = i64::try_from(limits.config.max_past_age.as_nanos()).unwrap_or(i64::MAX);
    if value < limits.now_ns.saturating_sub(max_age) {
        return Err(Rejection::new(
            Reason::BadTs,
            format!(
                "ts is older than limits.max_past_age ({}s); is it in nanoseconds?",
                limits.config.max_past_age.as_secs()
            ),
        ));
    }
    let skew = i64::try_from(limits.config.max_future_skew.as_nanos()).unwrap_or(i64::MAX);
    if value > limits.now_ns.saturating_add(skew) {
        return Err(Rejection::new(
            Reason::BadTs,
            format!(
                "ts is {}s in the future, more than limits.max_future_skew ({}s)",
                (value - limits.now_ns) / 1_000_000_000,
                limits.config.max_future_skew.as_secs()
            ),
        ));
    }
    Ok(value)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataBody<'a> {
    #[serde(default)]
    subject: Option<String>,
    #[serde(default, borrow)]
    tags: Option<&'a RawValue>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

struct DataFields<'a> {
    subject: Option<String>,
    tags: Tags,
    payload: &'a RawValue,
}

/// A `tags` object as its pairs sorted by key, a repeated key keeping its last value: what a
/// map would hold, without building one (an event's tags go on as a list).
struct TagList(Tags);

/// A string of the tags object: borrowed from the text when it has no escapes.
struct Text<'de>(Cow<'de, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        struct Str;
        impl<'de> serde::de::Visitor<'de> for Str {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        deserializer.deserialize_str(Str)
    }
}

impl<'de> Deserialize<'de> for TagList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TagList, D::Error> {
        struct Pairs;
        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = TagList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<TagList, A::Error> {
                // A few tags are usual (serde_json gives no size hint for objects).
                let mut pairs: Vec<(Text<'de>, Text<'de>)> = Vec::with_capacity(4);
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                // Stable: among equal keys the order of arrival stays; the last value is moved
                // into the first of them, which is kept.
                pairs.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
                pairs.dedup_by(|later, kept| {
                    let same = later.0.as_ref() == kept.0.as_ref();
                    if same {
                        std::mem::swap(later, kept);
                    }
                    same
                });
                Ok(TagList(Tags::from_pairs(&pairs)))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

fn parse_data<'a>(data: &'a [u8], limits: &LimitsConfig) -> Result<DataFields<'a>, Rejection> {
    // Measured before parsing: the parser's own recursion limit and Postgres's stack depth
    // never decide. `data` is one level above `payload`.
    // The reason is that of the key it happens under: only `payload` may nest at all.
    if let Some(key) = super::too_deep_under(data, limits.max_json_depth.saturating_add(1)) {
        let (reason, what) = match key.as_slice() {
            b"payload" => (Reason::BadPayload, "`payload`"),
            b"tags" => (Reason::BadTags, "`tags`"),
            _ => (Reason::BadData, "`data`"),
        };
        return Err(Rejection::new(
            reason,
            format!(
                "{what} nests deeper than limits.max_json_depth = {}",
                limits.max_json_depth
            ),
        ));
    }
    // UTF-8 checked once for the whole text: parsing a `str`, serde_json checks no string
    // and no raw value again.
    let data = std::str::from_utf8(data)
        .map_err(|e| Rejection::new(Reason::BadData, format!("`data` is not UTF-8: {e}")))?;
    let raw: DataBody = serde_json::from_str(data).map_err(|e| {
        Rejection::new(
            Reason::BadData,
            format!("`data` is not a valid data object: {e}"),
        )
    })?;
    let tags = match raw.tags {
        None => Tags::default(),
        Some(tags) => serde_json::from_str::<TagList>(tags.get())
            .map(|t| t.0)
            .map_err(|e| {
                Rejection::new(
                    Reason::BadTags,
                    format!("`tags` must be an object of string values: {e}"),
                )
            })?,
    };
    let Some(payload) = raw.payload else {
        return Err(Rejection::new(
            Reason::BadPayload,
            "`data` has no `payload` (or it is null)",
        ));
    };
    let body = DataFields {
        subject: raw.subject,
        tags,
        payload,
    };
    let payload = body.payload.get();
    if !payload.starts_with('{') {
        return Err(Rejection::new(
            Reason::BadPayload,
            "`payload` must be a JSON object",
        ));
    }
    // Postgres `jsonb` cannot hold these; they would fail the whole batch later.
    if let Some(what) = super::unstorable_escape(payload.as_bytes()) {
        return Err(Rejection::new(
            Reason::BadPayload,
            format!("`payload` contains {what}, which Postgres jsonb cannot store"),
        ));
    }
    if let Some(subject) = &body.subject {
        if subject.is_empty() || subject.len() > limits.max_subject_len || subject.contains('\0') {
            return Err(Rejection::new(
                Reason::BadSubject,
                format!(
                    "subject must be 1..={} bytes without NUL",
                    limits.max_subject_len
                ),
            ));
        }
    }
    if body.tags.len() > limits.max_tags {
        return Err(Rejection::new(
            Reason::BadTags,
            format!(
                "{} tags, limit is limits.max_tags = {}",
                body.tags.len(),
                limits.max_tags
            ),
        ));
    }
    for (key, value) in &body.tags {
        if key.is_empty() || key.len() > limits.max_tag_key_len || key.contains('\0') {
            return Err(Rejection::new(
                Reason::BadTags,
                format!(
                    "tag key `{}` must be 1..={} bytes without NUL",
                    truncate(key),
                    limits.max_tag_key_len
                ),
            ));
        }
        if value.len() > limits.max_tag_value_len || value.contains('\0') {
            return Err(Rejection::new(
                Reason::BadTags,
                format!(
                    "value of tag `{}` must be at most {} bytes without NUL",
                    truncate(key),
                    limits.max_tag_value_len
                ),
            ));
        }
    }
    // Tag keys are case-insensitive in Postgres (citext): two keys differing only in case
    // would collide on insert.
    // Distinct keys that are ASCII without capitals are their own lower case: they cannot
    // collide, and no lowered copy is made.
    let all_lower = body
        .tags
        .iter()
        .all(|(k, _)| k.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()));
    let mut lowered = HashSet::new();
    let collision = if all_lower {
        None
    } else {
        body.tags
            .iter()
            .map(|(k, _)| k)
            .find(|k| !lowered.insert(k.to_lowercase()))
    };
    if let Some(key) = collision {
        return Err(Rejection::new(
            Reason::BadTags,
            format!("tag key `{}` repeats another key up to case", truncate(key)),
        ));
    }
    Ok(body)
}

/// Echoing producer input in a detail is useful, but bounded.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::EntryRef;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn limits() -> Limits {
        Limits {
            config: LimitsConfig::default(),
            now_ns: NOW,
        }
    }

    /// Changes `e`'s fields as owned pairs.
    fn edit_fields(e: &mut Entry, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) {
        let mut pairs = e.fields.as_ref().unwrap().to_pairs();
        edit(&mut pairs);
        e.fields = Some(pairs.into_iter().collect());
    }

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            at: EntryRef {
                stream: "events".into(),
                id: "1-0".into(),
            },
            fields: Some(fields.iter().map(|(k, v)| (k, v.as_bytes())).collect()),
            deliveries: 1,
            flaw: None,
        }
    }

    fn data(body: &str) -> Entry {
        entry(&[
            ("type", "data"),
            ("version", "1.0.0"),
            ("id", "0190f7a4-8c5e-7b7e-9a53-1c2d3e4f5a6b"),
            ("ts", "1700000000000000001"),
            ("data", body),
        ])
    }

    fn reason(e: &Entry) -> Reason {
        parse(e, &limits()).unwrap_err().reason
    }

    #[test]
    fn accepts_a_full_data_message() {
        let parsed = parse(
            &data(r#"{"subject":"dev-1","tags":{"env":"prod","zone":"a"},"payload":{"x":1}}"#),
            &limits(),
        )
        .unwrap();
        let Message::Data(event) = parsed.message else {
            panic!("not data")
        };
        assert_eq!(event.ts_ns, 1_700_000_000_000_000_001);
        assert_eq!(event.subject.as_deref(), Some("dev-1"));
        assert_eq!(
            event.tags.iter().collect::<Vec<_>>(),
            [("env", "prod"), ("zone", "a")]
        );
        assert_eq!(event.payload, r#"{"x":1}"#);
    }

    #[test]
    fn subject_and_tags_are_optional() {
        let parsed = parse(&data(r#"{"payload":{}}"#), &limits()).unwrap();
        let Message::Data(event) = parsed.message else {
            panic!("not data")
        };
        assert_eq!(event.subject, None);
        assert!(event.tags.is_empty());
    }

    #[test]
    fn tags_come_sorted_by_key_and_a_repeated_key_keeps_its_last_value() {
        let parsed = parse(
            &data(r#"{"tags":{"zone":"a","env":"dev","app":"x","env":"prod"},"payload":{}}"#),
            &limits(),
        )
        .unwrap();
        let Message::Data(event) = parsed.message else {
            panic!("not data")
        };
        let pairs = [("app", "x"), ("env", "prod"), ("zone", "a")];
        assert_eq!(event.tags.iter().collect::<Vec<_>>(), pairs);
        // Escaped strings (not borrowed from the text) alike.
        let parsed = parse(
            &data(r#"{"tags":{"k\u0065y":"v\"1","key":"v2","a":"\u00e9"},"payload":{}}"#),
            &limits(),
        )
        .unwrap();
        let Message::Data(event) = parsed.message else {
            panic!("not data")
        };
        assert_eq!(
            event.tags.iter().collect::<Vec<_>>(),
            [("a", "é"), ("key", "v2")]
        );
        assert_eq!(
            reason(&data(r#"{"tags":[["k","v"]],"payload":{}}"#)),
            Reason::BadTags
        );
    }

    /// A payload nested `levels` deep: `{"a":{"a":…{}}}`.
    fn nested(levels: usize) -> String {
        format!(
            r#"{{"payload":{}{}}}"#,
            r#"{"a":"#.repeat(levels - 1) + "{}",
            "}".repeat(levels - 1)
        )
    }

    #[test]
    fn payload_depth_is_bounded_by_max_json_depth_before_parsing() {
        let limits = limits();
        let max = limits.config.max_json_depth;
        assert!(parse(&data(&nested(max)), &limits).is_ok());
        let e = parse(&data(&nested(max + 1)), &limits).unwrap_err();
        assert_eq!(e.reason, Reason::BadPayload);
        assert!(e.detail.contains("limits.max_json_depth"), "{}", e.detail);
        // Deeper than serde_json's own recursion limit (128): still our bound that decides.
        assert_eq!(reason(&data(&nested(5_000))), Reason::BadPayload);
        // Too deep elsewhere: the reason of that key (tags are strings; no other keys).
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            reason(&data(&format!(r#"{{"payload":{{}},"tags":{deep}}}"#))),
            Reason::BadTags
        );
        assert_eq!(
            reason(&data(&format!(r#"{{"payload":{{}},"x":{deep}}}"#))),
            Reason::BadData
        );
        let mut small = limits.clone();
        small.config.max_json_depth = 2;
        assert!(parse(&data(r#"{"payload":{"a":[1]}}"#), &small).is_ok());
        assert_eq!(
            parse(&data(r#"{"payload":{"a":[[1]]}}"#), &small)
                .unwrap_err()
                .reason,
            Reason::BadPayload
        );
    }

    #[test]
    fn each_invalid_class_has_its_reason() {
        assert_eq!(reason(&data("not json")), Reason::BadData);
        // Bytes that are not UTF-8, inside a payload string: the data field as a whole is bad.
        let mut e = data(r#"{"payload":{"a":"?"}}"#);
        edit_fields(&mut e, |fields| {
            let body = &mut fields.last_mut().unwrap().1;
            let at = body.iter().position(|&b| b == b'?').unwrap();
            body[at] = 0xff;
        });
        let rejection = parse(&e, &limits()).unwrap_err();
        assert_eq!(rejection.reason, Reason::BadData);
        assert!(
            rejection.detail.contains("not UTF-8"),
            "{}",
            rejection.detail
        );
        assert_eq!(reason(&data(r#"{"tags":{}}"#)), Reason::BadPayload);
        assert_eq!(reason(&data(r#"{"payload":null}"#)), Reason::BadPayload);
        assert_eq!(reason(&data(r#"{"payload":{},"x":1}"#)), Reason::BadData);
        assert_eq!(reason(&data(r#"{"payload":[1]}"#)), Reason::BadPayload);
        assert_eq!(reason(&data(r#"{"payload":"x"}"#)), Reason::BadPayload);
        assert_eq!(
            reason(&data(r#"{"payload":{"a":"\u0000"}}"#)),
            Reason::BadPayload
        );
        assert_eq!(
            reason(&data(r#"{"tags":{"k":1},"payload":{}}"#)),
            Reason::BadTags
        );
        let long = format!(r#"{{"tags":{{"k":"{}"}},"payload":{{}}}}"#, "v".repeat(257));
        assert_eq!(reason(&data(&long)), Reason::BadTags);
        assert_eq!(
            reason(&data(r#"{"tags":{"Env":"a","env":"b"},"payload":{}}"#)),
            Reason::BadTags
        );
        assert_eq!(
            reason(&data(
                r#"{"tags":{"env":"a","Été":"b","été":"c"},"payload":{}}"#
            )),
            Reason::BadTags
        );
        assert_eq!(
            reason(&data(r#"{"subject":"","payload":{}}"#)),
            Reason::BadSubject
        );
        let mut e = data(r#"{"payload":{}}"#);
        edit_fields(&mut e, |fields| fields[0].1 = b"bogus".to_vec());
        assert_eq!(reason(&e), Reason::BadType);
        for dir in ["ack", "error"] {
            edit_fields(&mut e, |fields| fields[0].1 = dir.as_bytes().to_vec());
            assert_eq!(reason(&e), Reason::BadDirection);
        }
    }

    #[test]
    fn envelope_fields_are_checked() {
        let now_text = (NOW - 1).to_string();
        let base = [
            ("type", "heartbeat"),
            ("version", "1.2.3"),
            ("id", "0190f7a4-8c5e-7b7e-9a53-1c2d3e4f5a6b"),
            ("ts", &now_text),
        ];
        assert!(parse(&entry(&base), &limits()).is_ok());
        let with = |k: &str, v: &str| {
            let mut f = base.to_vec();
            f.iter_mut().find(|(n, _)| *n == k).unwrap().1 = v;
            reason(&entry(&f))
        };
        assert_eq!(with("version", "2.0.0"), Reason::BadVersion);
        assert_eq!(with("version", "1.0"), Reason::BadVersion);
        assert_eq!(with("version", "v1.0.0"), Reason::BadVersion);
        assert_eq!(with("id", "42"), Reason::BadId);
        assert_eq!(with("ts", "-1"), Reason::BadTs);
        // Milliseconds instead of nanoseconds: a date in 1970.
        assert_eq!(with("ts", &(NOW / 1_000_000).to_string()), Reason::BadTs);
        assert_eq!(with("ts", "1.5"), Reason::BadTs);
        assert_eq!(
            with("ts", &(NOW + 301_000_000_000).to_string()),
            Reason::BadTs
        );
        assert_eq!(reason(&entry(&base[1..])), Reason::MissingField);
        let mut dup = base.to_vec();
        dup.push(("ts", "2"));
        assert_eq!(reason(&entry(&dup)), Reason::DuplicateField);
    }

    #[test]
    fn oversize_entries_are_rejected_first() {
        let big = format!(r#"{{"payload":{{"x":"{}"}}}}"#, "a".repeat(70_000));
        assert_eq!(reason(&data(&big)), Reason::TooLarge);
    }

    #[test]
    fn token_is_kept_but_never_printed() {
        let mut e = data(r#"{"payload":{}}"#);
        e.fields.as_mut().unwrap().push("token", b"secret-token");
        let parsed = parse(&e, &limits()).unwrap();
        assert_eq!(parsed.token.as_ref().unwrap().expose(), "secret-token");
        assert!(!format!("{parsed:?}").contains("secret-token"));
    }

    #[test]
    fn heartbeat_of_1970_boundary_and_day() {
        let e = Event {
            id: Uuid::nil(),
            ts_ns: 86_400 * 1_000_000_000 - 1,
            subject: None,
            tags: Tags::default(),
            payload: "{}".into(),
            source: EntryRef {
                stream: "s".into(),
                id: "1-0".into(),
            },
            producer_id: None,
            schema_id: None,
        };
        assert_eq!(e.day(), 0);
    }
}
