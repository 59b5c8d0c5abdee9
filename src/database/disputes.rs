//! What an origin does when peers dispute its entries: past the set's
//! threshold of distinct false-positive reports, the entry is raised for
//! review (audited, top of `hashfed set disputes`) and, if the set's
//! policy says so, suspended network-wide with a retraction record until
//! an operator reviews it. A review restores it (an add record) or leaves
//! it withdrawn; reports from before the review stop counting.

use super::{now_ms, Database};
use crate::model::audit::{Action, Note};
use crate::model::EntryId;
use crate::store::{Change, StoreError, StoredEntry};

/// Retraction reasons of suspended entries start with this.
pub const SUSPENDED: &str = "suspended pending review";

/// What [`Database::weigh_dispute`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisputeOutcome {
    /// Under the threshold, or no policy.
    Nothing,
    /// The entry reached the threshold and is raised for review.
    Raised(u32),
    /// Raised, and suspended network-wide.
    Suspended(u32),
}

/// The audit record of an entry raised for review: written with the
/// report that brought it to the threshold (`Database::receive_feedback`).
pub(super) fn raised(d: &crate::store::Dispute, threshold: u32) -> Note {
    tracing::warn!(entry = %d.entry, reports = d.false_positives, "entry disputed: raised for review");
    let detail = format!(
        "{} nodes reported a false positive (threshold {threshold}): {}",
        d.false_positives,
        d.reporters.join(", ")
    );
    Note::new("node", Action::DisputeRaised, d.entry.to_string(), detail)
}

impl Database {
    /// Weighs the feedback about `entry` (one of this node's own) after a
    /// report arrived and was kept (with the record that raised it, if it
    /// did): suspends it if its set's policy says so.
    pub fn weigh_dispute(&self, entry: &EntryId) -> Result<DisputeOutcome, StoreError> {
        let Some(e) = self.store.entry(entry)? else {
            return Ok(DisputeOutcome::Nothing);
        };
        let Some(set) = self.store.set(&e.set) else {
            return Ok(DisputeOutcome::Nothing);
        };
        let policy = set.info.disputes;
        if policy.is_off() {
            return Ok(DisputeOutcome::Nothing);
        }
        let Some(d) = self
            .store
            .disputes(Some(&e.set))?
            .into_iter()
            .find(|d| d.entry == *entry)
        else {
            return Ok(DisputeOutcome::Nothing);
        };
        let k = d.false_positives;
        if k < policy.threshold {
            return Ok(DisputeOutcome::Nothing);
        }
        let subject = entry.to_string();
        if !policy.suspend || e.retracted {
            return Ok(DisputeOutcome::Raised(k));
        }
        let reason = format!("{SUSPENDED}: {k} nodes reported a false positive");
        let note = Note::new("node", Action::DisputeSuspended, subject, &reason);
        self.apply(
            &e.set,
            &[Change::RetractEntry {
                entry: *entry,
                reason,
            }],
            |_| vec![note],
        )?;
        Ok(DisputeOutcome::Suspended(k))
    }

    /// An operator's review of a disputed entry: reports so far stop
    /// counting, and with `restore` a withdrawn entry is added back (an add
    /// record with its content, vetting included: peers follow).
    pub fn review_dispute(
        &self,
        entry: &EntryId,
        restore: bool,
        actor: &str,
        reason: &str,
    ) -> Result<StoredEntry, StoreError> {
        let e = self
            .store
            .entry(entry)?
            .ok_or(StoreError::UnknownEntry(*entry))?;
        let restored = restore && e.retracted;
        let detail = format!(
            "{}{}",
            if restored {
                "restored"
            } else {
                "left as it is"
            },
            if reason.is_empty() {
                String::new()
            } else {
                format!(": {reason}")
            }
        );
        let note = Note::new(actor, Action::DisputeReviewed, entry.to_string(), detail);
        {
            let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let restore = restored.then_some(&e.data);
            let applied = self
                .store
                .review(entry, restore, now_ms(), |_| vec![note])?;
            self.update(&applied.deltas);
            if applied.appended > 0 {
                self.changed();
            }
        }
        self.store
            .entry(entry)?
            .ok_or(StoreError::UnknownEntry(*entry))
    }
}
