//! The audit log's vocabulary: what an operator or a peer did, and the
//! hash chain that makes a changed record show.
//!
//! Every operator action and federation event is appended as one
//! [`AuditEvent`], numbered from 1. Each record's stored digest is
//! `chain(previous digest, record bytes)`, so recomputing the chain from
//! the start finds the first record whose bytes no longer give its digest:
//! that is the record that was changed (or the first of several). The node
//! signs the head (seq, digest) with its signing key at every append, so
//! rewriting the whole chain after a change needs the key too.
//!
//! Events hold names and counts, never hash values: the log is shown to
//! auditors, and hash values of this material stay in the sets.

use serde::{Deserialize, Serialize};

use super::record::chain_digest;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A set was created on this node.
    SetCreated,
    /// A batch of a list was imported into a set (counts in the detail;
    /// one record per atomic batch, written with it).
    Imported,
    /// Records of an import were refused, or its input stopped early
    /// (counts and the reason in the detail).
    ImportRefused,
    /// An entry was submitted for vetting.
    EntrySubmitted,
    /// A reviewer confirmed a pending entry.
    EntryConfirmed,
    /// An entry reached its set's confirmations and entered the log.
    EntryVetted,
    /// A pending entry was withdrawn before it entered the log.
    EntryRejected,
    /// A set's vetting rule changed.
    VettingSet,
    /// An entry matched so often that the node switched it off (flood
    /// quarantine); an operator lifts it with `hashfed entry enable`.
    Quarantined,
    /// Enough nodes called an entry a false positive: it tops the review
    /// queue.
    DisputeRaised,
    /// A disputed entry was suspended network-wide (a retraction record)
    /// until reviewed.
    DisputeSuspended,
    /// An operator reviewed a disputed entry (restored it, or not).
    DisputeReviewed,
    /// A set's dispute policy changed.
    DisputePolicySet,
    /// Review of a peer's entries was switched on or off.
    PeerReview,
    /// Entries held for review were released.
    EntriesReleased,
    /// A backup of the database was taken.
    BackupTaken,
    /// A set was switched off on this node.
    SetSuppressed,
    /// A suppressed set was switched back on.
    SetUnsuppressed,
    /// An operator retracted an entry.
    EntryRetracted,
    /// An operator switched an entry off on this node.
    EntryDisabled,
    /// An operator switched an entry back on.
    EntryEnabled,
    /// A peer was added, or its grants changed.
    PeerAdded,
    /// A peer's grants changed.
    PeerGranted,
    /// A peer was suspended.
    PeerSuspended,
    /// A suspended peer was resumed.
    PeerResumed,
    /// A peer was revoked (for good).
    PeerRevoked,
    /// A set's policy was signed (who may receive it, re-sharing).
    PolicySigned,
    /// A set was first received from a peer.
    SetReceived,
    /// Feedback about one of this node's entries arrived from a peer.
    FeedbackReceived,
    /// This node rotated its signing key or renewed its certificates.
    KeysRotated,
    /// A peer's key rotation was learnt (from it or a relay).
    PeerKeyRotated,
    /// A page of a live exchange was applied to its set (counts in the
    /// detail; one record per page, written with it and its cursor).
    ExchangeFetched,
    /// An operator reset an exchange's cursor: its next fetch starts over.
    ExchangeReset,
    /// A provider's verdict went back to an exchange's service (or the
    /// service refused it for good: the detail says).
    ExchangeFeedbackSent,
}

/// What an operation says in the audit log, before the log numbers and
/// times it. Writes carry their notes into the store, which appends them in
/// the same atomic batch as the change they describe: a crash leaves both
/// or neither.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// Who (see [`AuditEvent::actor`]).
    pub actor: String,
    /// What.
    pub action: Action,
    /// What it was done to.
    pub subject: String,
    /// Anything else worth keeping, in words.
    pub detail: String,
}

impl Note {
    /// A note by `actor`.
    pub fn new(
        actor: impl Into<String>,
        action: Action,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Note {
            actor: actor.into(),
            action,
            subject: subject.into(),
            detail: detail.into(),
        }
    }
}

/// For writes that no operator or peer asked for (tests, benchmarks, the
/// bulk loaders of a fresh store): they leave no audit record.
pub fn unaudited<T: ?Sized>(_: &T) -> Vec<Note> {
    Vec::new()
}

/// Who acts, as the audit log names them: `operator:<certificate
/// fingerprint>` on the operator listener, `local-socket` on the admin
/// socket, `local-cli` for a command run on a stopped node, `node` for
/// what the node does by itself, `peer:<name>` for a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// An actor by its audit name.
    pub fn new(name: impl Into<String>) -> Self {
        Actor(name.into())
    }

    /// The node itself (quarantine, disputes, vetting completed).
    pub fn node() -> Self {
        Actor("node".into())
    }

    /// The name the audit log keeps.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A note by this actor.
    pub fn note(
        &self,
        action: Action,
        subject: impl Into<String>,
        detail: impl Into<String>,
    ) -> Note {
        Note::new(self.0.clone(), action, subject, detail)
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the audit log, from 1, contiguous.
    pub seq: u64,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
    /// Who: an operator certificate (`operator:<name>:<fingerprint>`), the
    /// local admin socket, a peer (`peer:<name>`), or the node itself.
    pub actor: String,
    /// What.
    pub action: Action,
    /// What it was done to: a set, an entry id, a peer name.
    pub subject: String,
    /// Anything else worth keeping, in words (counts, reasons, grants).
    pub detail: String,
}

impl AuditEvent {
    /// The record's bytes as stored and chained (serde_json writes fields
    /// in declaration order, so equal events give equal bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads stored bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// The digest before the first record.
pub fn genesis() -> [u8; 32] {
    *blake3::hash(b"hashfed audit log v1\0").as_bytes()
}

/// The digest after appending `record` (its stored bytes) to a log whose
/// digest was `prev`.
pub fn link(prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
    chain_digest(prev, record)
}

/// The statement the node signs over the audit log's head.
pub fn head_statement(seq: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(b"hashfed audit head v1\0");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// What a check of the audit log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditCheck {
    /// Records read.
    pub records: u64,
    /// The first record whose bytes do not give its stored digest, or that
    /// is missing or out of place; `None` if the chain is whole.
    pub first_bad: Option<(u64, String)>,
    /// Whether the head's signature was checked and holds (`None`: no
    /// signing key here to check it with, or no head).
    pub head_signed: Option<bool>,
}

impl AuditCheck {
    /// Whether the log is intact.
    pub fn is_ok(&self) -> bool {
        self.first_bad.is_none() && self.head_signed != Some(false)
    }
}

/// Checks records given in order as (seq, stored digest, bytes) against the
/// chain, and the chain's end against `head` (seq, digest).
pub fn check(
    records: impl IntoIterator<Item = (u64, [u8; 32], Vec<u8>)>,
    head: (u64, [u8; 32]),
) -> AuditCheck {
    let mut out = AuditCheck::default();
    let mut digest = genesis();
    let mut expected = 1;
    for (seq, stored, bytes) in records {
        out.records += 1;
        if out.first_bad.is_some() {
            continue;
        }
        if seq != expected {
            out.first_bad = Some((expected, format!("record {expected} is missing")));
            continue;
        }
        digest = link(&digest, &bytes);
        if digest != stored {
            out.first_bad = Some((seq, format!("record {seq} was changed")));
            continue;
        }
        match AuditEvent::from_bytes(&bytes) {
            Ok(event) if event.seq == seq => {}
            _ => out.first_bad = Some((seq, format!("record {seq} does not read back"))),
        }
        expected += 1;
    }
    if out.first_bad.is_none() && (expected - 1, digest) != head {
        let last = expected - 1;
        out.first_bad = Some((
            last + 1,
            format!(
                "the log ends at record {last} but its signed head is at {}",
                head.0
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<(u64, [u8; 32], Vec<u8>)> {
        let mut digest = genesis();
        (1..=n)
            .map(|seq| {
                let bytes = AuditEvent {
                    seq,
                    time_ms: seq * 10,
                    actor: "local-socket".into(),
                    action: Action::PeerAdded,
                    subject: format!("peer-{seq}"),
                    detail: String::new(),
                }
                .to_bytes();
                digest = link(&digest, &bytes);
                (seq, digest, bytes)
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_checks_and_a_changed_record_is_named() {
        let records = chain(5);
        let head = (5, records[4].1);
        assert!(check(records.clone(), head).is_ok());
        // One byte of record 3 changed.
        let mut changed = records.clone();
        let at = changed[2].2.len() - 3;
        changed[2].2[at] ^= 1;
        let c = check(changed, head);
        assert_eq!(c.first_bad.unwrap().0, 3);
        // Record 4 dropped.
        let mut dropped = records.clone();
        dropped.remove(3);
        assert_eq!(check(dropped, head).first_bad.unwrap().0, 4);
        // The last record dropped: the head says more.
        assert_eq!(check(records[..4].to_vec(), head).first_bad.unwrap().0, 5);
        // Rewritten from record 2 on with fresh digests: the head differs.
        let mut rewritten = records.clone();
        rewritten[1].2 = b"{}".to_vec();
        let mut d = rewritten[0].1;
        for r in rewritten.iter_mut().skip(1) {
            d = link(&d, &r.2);
            r.1 = d;
        }
        assert!(!check(rewritten, head).is_ok());
        assert!(check(Vec::new(), (0, genesis())).is_ok());
    }
}
