//! The federation's vocabulary as types: signals, hash sets, entries and
//! the log records that carry them.
//!
//! Nothing here stores or sends anything; the store, the index and (later)
//! the federation all speak these types, so their rules (lengths, names,
//! canonical bytes) live in one place.
//!
//! * [`signal`]: signal types and validated values;
//! * [`set`]: set ids, policies, entry ids, labels;
//! * [`record`]: log records and their canonical bytes, chain digests;
//! * [`signed`]: what an origin signs (checkpoints over the chain, set
//!   configurations) and how receivers check it;
//! * [`audit`]: audit records and their hash chain;
//! * [`feedback`]: what a node says about a match (verdicts);
//! * [`keychain`]: a node's signing keys over time (rotation statements).

pub mod audit;
pub mod exchange;
pub mod feedback;
pub mod keychain;
pub mod record;
pub mod set;
pub mod signal;
pub mod signed;

pub use feedback::{UnknownVerdict, Verdict};
pub use record::{Attestation, EntryData, Record, RecordBody};
pub use set::{
    normalize_labels, DisputePolicy, EntryId, NameError, SetId, SetInfo, SetKind, SetPolicy,
    ShareRefusal,
};
pub use signal::{Signal, SignalError, SignalType};
