//! Operations on entries: retract, switch off, vetting (submit, confirm,
//! reject), entries held from peers under review, and disputes.

use super::{check_reason, page, Actor, Ops, OpsError};
use crate::model::audit::Action;
use crate::model::{EntryData, EntryId, SetId};
use crate::store::{
    Change, Confirmed, DisputeView, Outcome, PendingEntry, StoreError, StoredEntry,
};

/// What a confirmation did.
#[derive(Clone, Debug)]
pub enum ConfirmOutcome {
    /// Recorded; the entry still waits for more confirmations.
    Waiting(PendingEntry),
    /// The entry had enough and is now in its set's log (and matches).
    Vetted(PendingEntry, StoredEntry),
}

/// Which held entries to release.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// One entry.
    Entry(EntryId),
    /// Every held entry of one set.
    Set(SetId),
}

impl Ops {
    /// One entry.
    pub fn entry(&self, id: &EntryId) -> Result<StoredEntry, OpsError> {
        self.db
            .store()
            .entry(id)?
            .ok_or(OpsError::Store(StoreError::UnknownEntry(*id)))
    }

    /// Withdraws one entry of one of this node's sets (a retraction record
    /// that peers follow). Returns the entry and whether it changed.
    pub fn retract(
        &self,
        actor: &Actor,
        id: &EntryId,
        reason: &str,
    ) -> Result<(StoredEntry, bool), OpsError> {
        check_reason(reason)?;
        let reason = match reason {
            "" => "retracted by operator",
            r => r,
        };
        let set = self.entry(id)?.set;
        let note = actor.note(Action::EntryRetracted, id.to_string(), reason);
        let applied = self.db.apply(
            &set,
            &[Change::RetractEntry {
                entry: *id,
                reason: reason.to_owned(),
            }],
            |a| match a.outcomes.first() {
                Some(Outcome::Retracted(_)) => vec![note],
                _ => Vec::new(),
            },
        )?;
        let changed = matches!(applied.outcomes.first(), Some(Outcome::Retracted(_)));
        if changed {
            tracing::info!(entry = %id, set = %set, "entry retracted by operator");
        }
        Ok((self.entry(id)?, changed))
    }

    /// Switches an entry off (or back on) on this node only. Returns the
    /// entry and whether it changed.
    pub fn set_disabled(
        &self,
        actor: &Actor,
        id: &EntryId,
        disabled: bool,
    ) -> Result<(StoredEntry, bool), OpsError> {
        let action = if disabled {
            Action::EntryDisabled
        } else {
            Action::EntryEnabled
        };
        let note = actor.note(action, id.to_string(), "");
        let applied = self
            .db
            .set_disabled(id, disabled, |a| match a.outcomes.first() {
                Some(Outcome::Updated(_)) => vec![note],
                _ => Vec::new(),
            })?;
        let changed = matches!(applied.outcomes.first(), Some(Outcome::Updated(_)));
        tracing::info!(entry = %id, disabled, "entry switched by operator");
        Ok((self.entry(id)?, changed))
    }

    /// Puts an entry up for vetting in a set that asks for it.
    pub fn submit(
        &self,
        actor: &Actor,
        set: &SetId,
        data: EntryData,
    ) -> Result<PendingEntry, OpsError> {
        let describe = |p: &PendingEntry| {
            vec![actor.note(Action::EntrySubmitted, p.id.to_string(), set.as_str())]
        };
        Ok(self.db.submit(set, data, actor.as_str(), describe)?)
    }

    /// Records `actor`'s confirmation of a pending entry; the last one
    /// needed puts it in its set's log, where it matches at once.
    pub fn confirm(&self, actor: &Actor, id: &EntryId) -> Result<ConfirmOutcome, OpsError> {
        let subject = id.to_string();
        let describe = |p: &PendingEntry, head: Option<u64>| {
            let mut notes = vec![actor.note(
                Action::EntryConfirmed,
                &subject,
                format!("{} of {}", p.data.vetting.len(), p.needed),
            )];
            if let Some(head) = head {
                let reviewers: Vec<&str> =
                    p.data.vetting.iter().map(|a| a.reviewer.as_str()).collect();
                notes.push(Actor::node().note(
                    Action::EntryVetted,
                    &subject,
                    format!(
                        "{} at seq {head}; submitted by {}, confirmed by {}",
                        p.set,
                        p.submitter,
                        reviewers.join(", ")
                    ),
                ));
            }
            notes
        };
        Ok(match self.db.confirm(id, actor.as_str(), describe)? {
            Confirmed::Waiting(p) => ConfirmOutcome::Waiting(p),
            Confirmed::Vetted(p, applied) => {
                tracing::info!(entry = %id, set = %p.set, appended = applied.appended, "entry vetted");
                ConfirmOutcome::Vetted(p, self.entry(id)?)
            }
        })
    }

    /// Withdraws a pending entry before it enters the log.
    pub fn reject(
        &self,
        actor: &Actor,
        id: &EntryId,
        reason: &str,
    ) -> Result<PendingEntry, OpsError> {
        check_reason(reason)?;
        let note = actor.note(Action::EntryRejected, id.to_string(), reason);
        Ok(self.db.reject(id, |_| vec![note])?)
    }

    /// Entries waiting for confirmations (of one set, or all), oldest
    /// first.
    pub fn pending(&self, set: Option<&SetId>) -> Result<Vec<PendingEntry>, OpsError> {
        Ok(self.db.store().pending(set)?)
    }

    /// Entries held from peers under review (of one set, or all), at most
    /// `limit` (0: a full page).
    pub fn held(&self, set: Option<&SetId>, limit: usize) -> Result<Vec<StoredEntry>, OpsError> {
        let limit = page(limit);
        let mut out = Vec::new();
        for e in self.db.store().entries(set)? {
            let e = e?;
            if e.held {
                out.push(e);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Releases held entries: they match at once. Returns how many.
    pub fn release(&self, actor: &Actor, which: &Release) -> Result<u64, OpsError> {
        let (set, entry) = match which {
            Release::Entry(id) => (None, Some(id)),
            Release::Set(set) => (Some(set), None),
        };
        let subject = match which {
            Release::Entry(id) => id.to_string(),
            Release::Set(set) => set.to_string(),
        };
        Ok(self.db.release(set, entry, |_, applied| {
            let n = applied.outcomes.len();
            match n {
                0 => Vec::new(),
                n => vec![actor.note(
                    Action::EntriesReleased,
                    &subject,
                    format!("{n} entries released"),
                )],
            }
        })?)
    }

    /// Entries disputed by peers' feedback (of one set, or all), most
    /// false positives first.
    pub fn disputes(&self, set: Option<&SetId>) -> Result<Vec<DisputeView>, OpsError> {
        let store = self.db.store();
        let mut out = Vec::new();
        for dispute in store.disputes(set)? {
            let threshold = store
                .set(&dispute.set)
                .map_or(0, |s| s.info.disputes.threshold);
            let retracted = store.entry(&dispute.entry)?.is_some_and(|e| e.retracted);
            out.push(DisputeView {
                raised: threshold > 0 && dispute.false_positives >= threshold,
                dispute,
                threshold,
                retracted,
            });
        }
        Ok(out)
    }

    /// An operator's review of a disputed entry: reports so far stop
    /// counting; with `restore` a withdrawn entry comes back.
    pub fn review_dispute(
        &self,
        actor: &Actor,
        id: &EntryId,
        restore: bool,
        reason: &str,
    ) -> Result<StoredEntry, OpsError> {
        check_reason(reason)?;
        Ok(self
            .db
            .review_dispute(id, restore, actor.as_str(), reason)?)
    }
}
