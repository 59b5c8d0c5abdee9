//! Disputes at the origin: feedback from peers aggregated per entry, and
//! when each entry was last reviewed (`z` + entry id → ms), so reports
//! that came before a review stop counting.

use std::collections::BTreeMap;

use super::keys;
use super::write::{check_vetted, Applied, Pending};
use super::{ReceivedFeedback, Store, StoreError};
use crate::model::audit::Note;
use crate::model::{DisputePolicy, EntryData, EntryId, SetId, Verdict};

/// One entry's feedback since its last review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispute {
    /// The entry.
    pub entry: EntryId,
    /// Its set.
    pub set: SetId,
    /// Distinct nodes whose latest verdict is a false positive.
    pub false_positives: u32,
    /// Distinct nodes whose latest verdict is a confirmed match.
    pub confirmed: u32,
    /// The nodes that reported a false positive.
    pub reporters: Vec<String>,
    /// The latest report, ms since the epoch.
    pub last_ms: u64,
    /// The last review, ms since the epoch (0: never).
    pub reviewed_ms: u64,
}

/// One disputed entry as operators see it.
#[derive(Clone, Debug)]
pub struct DisputeView {
    /// The feedback since the entry's last review.
    pub dispute: Dispute,
    /// The set's threshold of distinct false-positive reports (0: off).
    pub threshold: u32,
    /// Whether the entry reached it.
    pub raised: bool,
    /// Whether the entry is withdrawn (suspended, or retracted).
    pub retracted: bool,
}

impl Store {
    /// Sets what this node does when peers dispute entries of one of its
    /// sets (signed anew: peers see the policy).
    pub(crate) fn set_disputes(
        &self,
        set: &SetId,
        policy: DisputePolicy,
        audit: impl FnOnce(&super::SetState) -> Vec<Note>,
    ) -> Result<super::SetState, StoreError> {
        self.change_info(set, |info, _| info.disputes = policy, audit)
    }

    /// When an entry's disputes were last reviewed (0: never).
    pub(crate) fn reviewed_ms(&self, entry: &EntryId) -> Result<u64, StoreError> {
        Ok(match self.tree.get(keys::reviewed(&entry.0))? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("review time is not 8 bytes".into()))?,
            ),
            None => 0,
        })
    }

    /// Marks an entry's disputes as reviewed at `now_ms` and, with
    /// `restore`, adds the entry back with that content (an add record:
    /// peers follow), with the audit records `audit` makes, in one batch.
    pub(crate) fn review(
        &self,
        entry: &EntryId,
        restore: Option<&EntryData>,
        now_ms: u64,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state = self
            .entry_state(entry)?
            .ok_or(StoreError::UnknownEntry(*entry))?;
        let set_id = self.set_id_of(state.set_no)?;
        let set = self
            .set(&set_id)
            .ok_or_else(|| StoreError::UnknownSet(set_id.clone()))?;
        if let Some(data) = restore {
            set.writable()?;
            check_vetted(&set, std::iter::once(data))?;
        }
        let mut p = Pending::new(self, set, now_ms)?;
        if let Some(data) = restore {
            p.add_entry(data)?;
        }
        p.put_key(&keys::reviewed(&entry.0), &now_ms.to_be_bytes());
        p.commit(audit)
    }

    /// Feedback since each entry's last review, aggregated per entry (of
    /// one set, or all), most false positives first.
    pub fn disputes(&self, set: Option<&SetId>) -> Result<Vec<Dispute>, StoreError> {
        let mut by_entry: BTreeMap<EntryId, Vec<ReceivedFeedback>> = BTreeMap::new();
        for item in self.received_feedback()? {
            if set.is_none_or(|s| *s == item.note.set) {
                by_entry.entry(item.note.entry).or_default().push(item);
            }
        }
        let mut out = Vec::new();
        for (entry, items) in by_entry {
            let reviewed_ms = self.reviewed_ms(&entry)?;
            out.extend(dispute_of(entry, &items, reviewed_ms));
        }
        out.sort_by(|a, b| {
            b.false_positives
                .cmp(&a.false_positives)
                .then(b.last_ms.cmp(&a.last_ms))
        });
        Ok(out)
    }

    /// One entry's dispute from what its inbox holds, and, with `with`,
    /// as it stands once that report is in (it replaces its reporter's
    /// earlier one). The caller holds the writer lock.
    pub(super) fn entry_dispute(
        &self,
        entry: &EntryId,
        with: Option<&ReceivedFeedback>,
    ) -> Result<Option<Dispute>, StoreError> {
        let mut prefix = vec![keys::INBOX];
        prefix.extend_from_slice(&entry.0);
        let mut items = Vec::new();
        for kv in self.tree.scan_prefix(&prefix) {
            let (_, v) = kv?;
            let item: ReceivedFeedback = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("received feedback: {e}")))?;
            if with.is_none_or(|w| w.note.reporter != item.note.reporter) {
                items.push(item);
            }
        }
        items.extend(with.cloned());
        Ok(dispute_of(*entry, &items, self.reviewed_ms(entry)?))
    }
}

/// The dispute `items` (one entry's reports) make since `reviewed_ms`.
fn dispute_of(entry: EntryId, items: &[ReceivedFeedback], reviewed_ms: u64) -> Option<Dispute> {
    let fresh: Vec<_> = items
        .iter()
        .filter(|i| i.received_ms > reviewed_ms)
        .collect();
    let first = fresh.first()?;
    let reporters: Vec<String> = fresh
        .iter()
        .filter(|i| i.note.verdict == Verdict::FalsePositive)
        .map(|i| i.note.reporter.clone())
        .collect();
    Some(Dispute {
        entry,
        set: first.note.set.clone(),
        false_positives: reporters.len() as u32,
        confirmed: fresh
            .iter()
            .filter(|i| i.note.verdict == Verdict::Confirmed)
            .count() as u32,
        reporters,
        last_ms: fresh.iter().map(|i| i.received_ms).max().unwrap_or(0),
        reviewed_ms,
    })
}
