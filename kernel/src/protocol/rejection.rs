//! Why an entry was dead-lettered: a short machine-readable code plus a human detail.

/// Reason codes written to the DLQ's `error` field and the `reason` label of
/// `kernel_redis_dlq_total`. Stable: documented in docs/protocol.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BadEncoding,
    MissingField,
    DuplicateField,
    TooLarge,
    BadType,
    BadDirection,
    BadVersion,
    BadId,
    BadTs,
    BadData,
    BadPayload,
    BadSubject,
    BadTags,
    MaxDeliveries,
    Auth,
    Schema,
    Rejected,
}

impl Reason {
    pub const ALL: [Reason; 17] = [
        Reason::BadEncoding,
        Reason::MissingField,
        Reason::DuplicateField,
        Reason::TooLarge,
        Reason::BadType,
        Reason::BadDirection,
        Reason::BadVersion,
        Reason::BadId,
        Reason::BadTs,
        Reason::BadData,
        Reason::BadPayload,
        Reason::BadSubject,
        Reason::BadTags,
        Reason::MaxDeliveries,
        Reason::Auth,
        Reason::Schema,
        Reason::Rejected,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Reason::BadEncoding => "bad_encoding",
            Reason::MissingField => "missing_field",
            Reason::DuplicateField => "duplicate_field",
            Reason::TooLarge => "too_large",
            Reason::BadType => "bad_type",
            Reason::BadDirection => "bad_direction",
            Reason::BadVersion => "bad_version",
            Reason::BadId => "bad_id",
            Reason::BadTs => "bad_ts",
            Reason::BadData => "bad_data",
            Reason::BadPayload => "bad_payload",
            Reason::BadSubject => "bad_subject",
            Reason::BadTags => "bad_tags",
            Reason::MaxDeliveries => "max_deliveries",
            Reason::Auth => "auth",
            Reason::Schema => "schema",
            Reason::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The codes in the "Reason codes" table of docs/protocol.md.
    fn documented_codes() -> BTreeSet<String> {
        let doc = include_str!("../../../docs/protocol.md");
        let table = doc
            .split_once("Reason codes")
            .expect("docs/protocol.md has a \"Reason codes\" table")
            .1;
        table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cell = l.split('|').nth(1)?.trim();
                Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_string())
            })
            .collect()
    }

    #[test]
    fn docs_list_exactly_the_reason_codes_of_the_code() {
        let code: BTreeSet<String> = Reason::ALL.iter().map(|r| r.code().to_string()).collect();
        assert_eq!(code.len(), Reason::ALL.len(), "a code is used twice");
        assert_eq!(documented_codes(), code);
    }
}

impl From<crate::entry::FlawReason> for Reason {
    fn from(reason: crate::entry::FlawReason) -> Reason {
        match reason {
            crate::entry::FlawReason::TooLarge => Reason::TooLarge,
            crate::entry::FlawReason::BadEncoding => Reason::BadEncoding,
        }
    }
}

impl From<&crate::entry::FlawWhy> for Rejection {
    /// The dead letter of an entry read only as a summary.
    fn from(why: &crate::entry::FlawWhy) -> Rejection {
        Rejection::new(why.reason.into(), why.detail.clone())
    }
}

#[cfg(test)]
mod flaw_tests {
    use super::*;
    use crate::entry::{FlawReason, FlawWhy};

    #[test]
    fn a_flaw_becomes_the_dead_letter_of_the_same_code_and_detail() {
        let why = FlawWhy::new(FlawReason::TooLarge, "entry is 9 bytes, limit is 8");
        let r = Rejection::from(&why);
        assert_eq!(r.reason.code(), "too_large");
        assert_eq!(r.detail, "entry is 9 bytes, limit is 8");
        let r = Rejection::from(&FlawWhy::new(FlawReason::BadEncoding, "odd"));
        assert_eq!(r.reason.code(), "bad_encoding");
    }
}
