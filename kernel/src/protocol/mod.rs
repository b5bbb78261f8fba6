//! Protocol v1: one Redis stream entry per message. See docs/protocol.md.
//!
//! `envelope` reads the two fields auth decides on (`type`, `token`); `parse` turns the raw fields of an entry into a [`Message`] or a [`Rejection`] whose reason
//! code goes to the dead-letter stream. Parsing is pure: no I/O, the clock is an argument.

mod depth;
mod envelope;
mod escapes;
mod event;
mod parse;
mod rejection;
mod tags;
mod token;

pub use crate::entry::{Clipped, EntriesByRef, Entry, EntryRef, Flaw, FlawReason, FlawWhy};
pub use depth::{deeper_than, too_deep_under};
pub use envelope::{envelope, Envelope};
pub use escapes::unstorable_escape;
pub use event::Event;
pub use parse::{parse, Limits};
pub use rejection::{Reason, Rejection};
pub use tags::Tags;
pub use token::Token;

/// The protocol major version this kernel accepts.
pub const SUPPORTED_MAJOR: u64 = 1;

/// A valid message, with the producer's token (checked by the auth layer when it is on).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub message: Message,
    pub token: Option<Token>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// An event to store.
    Data(Event),
    /// Liveness of a producer: updates its last-seen time, stores no event.
    Heartbeat,
    /// Logged and acknowledged.
    Control { data: String },
}
