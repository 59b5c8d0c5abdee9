//! What a node knows of each live exchange (see `crate::exchange`): where
//! its next fetch starts and what its fetches did. Stored with the records
//! of the page it moved past (one batch), shown by `hashfed exchange
//! status`.

use serde::{Deserialize, Serialize};

/// One exchange's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExchangeState {
    /// Where the next fetch starts (the client's own format; "" for the
    /// beginning).
    pub cursor: String,
    /// When a fetch last began, ms since the epoch.
    pub last_attempt_ms: u64,
    /// When a page was last applied, ms since the epoch.
    pub last_success_ms: u64,
    /// When the exchange was last caught up with its service.
    pub caught_up_ms: u64,
    /// The last error, in words ("" after a success).
    pub last_error: String,
    /// Failed fetches since the last success.
    pub failures: u64,
    /// Pages applied.
    pub pages: u64,
    /// Entries added.
    pub added: u64,
    /// Entries changed or brought back.
    pub updated: u64,
    /// Records that changed nothing (a page seen twice).
    pub unchanged: u64,
    /// Entries withdrawn.
    pub retracted: u64,
    /// Withdrawals that found nothing.
    pub not_found: u64,
    /// Records skipped (malformed, unknown type), counted by reason in
    /// the log.
    pub skipped: u64,
    /// Feedback sent back to the service.
    pub feedback_sent: u64,
}

impl ExchangeState {
    /// The stored bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes; `None` if they do not parse.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}

/// The prefixes of the external ids the exchanges write (`ncmec:...`):
/// a provider's verdict on an entry with one goes back to its service.
pub const EXTERNAL_PREFIXES: [&str; 4] = ["ncmec:", "stopncii:", "te:", "tcap:"];

/// A provider's verdict on a match of an entry that came from an
/// exchange, waiting to go back to the service (queued with the feedback
/// itself, sent once, removed when the service took it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackOut {
    /// The entry's set (the exchange's).
    pub set: super::SetId,
    /// The entry's external id.
    pub external_id: String,
    /// Its signal type's name.
    pub signal_type: String,
    /// Its value, hex.
    pub value: String,
    /// The verdict.
    pub verdict: super::Verdict,
    /// The reason code's name ("" for none).
    pub reason: String,
    /// When it was given, ms since the epoch.
    pub time_ms: u64,
}

impl FeedbackOut {
    /// The entry's signal, if its stored form reads back.
    pub fn signal(&self) -> Option<super::Signal> {
        let kind = super::SignalType::parse(&self.signal_type).ok()?;
        let value = super::signal::decode_hex(&self.value)?;
        super::Signal::from_bytes(kind, value).ok()
    }
}
