//! Two-person vetting: entries of a set that asks for it wait here,
//! outside the set's log, until enough reviewers other than their
//! submitter confirm them; then they are appended with the reviewers in
//! the record, in the same batch that removes them from here.
//!
//! A pending entry is never in the log, so it never reaches a peer and
//! never matches. `q` + entry id → [`PendingEntry`] (JSON, with the entry's
//! content in its canonical bytes, its `vetting` holding the
//! confirmations so far).

use serde::{Deserialize, Serialize};

use super::keys;
use super::write::{Applied, Pending};
use super::{Store, StoreError};
use crate::model::audit::Note;
use crate::model::record::{decode_entry, encode_entry, Reader};
use crate::model::{Attestation, EntryData, EntryId, SetId};
use crate::signal::exact::to_hex;

/// Why a vetting step was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VettingRefusal {
    /// The submitter tried to confirm their own entry.
    #[error("the submitter of {0} cannot confirm it: another reviewer must")]
    OwnEntry(EntryId),
    /// This reviewer already confirmed it.
    #[error("{reviewer} already confirmed {entry}")]
    AlreadyConfirmed {
        /// The entry.
        entry: EntryId,
        /// The reviewer.
        reviewer: String,
    },
    /// No pending entry with this id.
    #[error("no pending entry {0}")]
    NotPending(EntryId),
    /// The entry is already pending.
    #[error("{0} is already waiting for confirmations")]
    AlreadyPending(EntryId),
    /// The entry is already in the set and matching.
    #[error("{0} is already in the set")]
    Exists(EntryId),
    /// The set takes entries without vetting.
    #[error("set {0} does not ask for vetting (see `hashfed set vetting`)")]
    NotRequired(SetId),
    /// Entries of this set enter only through vetting.
    #[error(
        "set {set} needs {needed} reviewers' confirmations per entry: submit entries for \
         vetting (`hashfed entry submit`) instead of adding them directly"
    )]
    Unvetted {
        /// The set.
        set: SetId,
        /// Confirmations it needs.
        needed: u32,
    },
    /// Fewer than two reviewers is not vetting.
    #[error("vetting needs at least 2 reviewers (or 0 to switch it off), not {0}")]
    TooFew(u32),
}

/// An entry waiting for confirmations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// Its id (derived from set and value, as in the log).
    pub id: EntryId,
    /// Its set.
    pub set: SetId,
    /// Content; `vetting` holds the confirmations so far.
    pub data: EntryData,
    /// Who submitted it.
    pub submitter: String,
    /// When, ms since the epoch.
    pub submitted_ms: u64,
    /// Confirmations it needs (the set's requirement when submitted).
    pub needed: u32,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    set: SetId,
    submitter: String,
    submitted_ms: u64,
    needed: u32,
    /// `encode_entry` bytes, hex.
    entry: String,
}

impl PendingEntry {
    fn to_bytes(&self) -> Result<Vec<u8>, StoreError> {
        let mut entry = Vec::new();
        encode_entry(&mut entry, &self.data);
        serde_json::to_vec(&Stored {
            set: self.set.clone(),
            submitter: self.submitter.clone(),
            submitted_ms: self.submitted_ms,
            needed: self.needed,
            entry: to_hex(&entry),
        })
        .map_err(|e| StoreError::Corrupt(format!("pending entry: {e}")))
    }

    fn from_bytes(id: EntryId, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("pending entry {id}: {why}"));
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        let raw = crate::model::signal::decode_hex(&stored.entry)
            .ok_or_else(|| corrupt("entry bytes are not hex".into()))?;
        let mut r = Reader(&raw);
        let data = decode_entry(&mut r).map_err(|e| corrupt(e.to_string()))?;
        r.end().map_err(|e| corrupt(e.to_string()))?;
        Ok(PendingEntry {
            id,
            set: stored.set,
            data,
            submitter: stored.submitter,
            submitted_ms: stored.submitted_ms,
            needed: stored.needed,
        })
    }
}

/// What a confirmation did.
#[derive(Clone, Debug)]
pub enum Confirmed {
    /// Recorded; the entry still waits for more.
    Waiting(PendingEntry),
    /// The entry had enough confirmations and is now in its set's log.
    Vetted(PendingEntry, Applied),
}

impl Store {
    /// Sets how many reviewers must confirm each new entry of one of this
    /// node's own sets (0: none, entries are added directly; else at least
    /// 2). The configuration is signed again, so peers see the rule.
    pub(crate) fn set_vetting(
        &self,
        set: &SetId,
        reviewers: u32,
        audit: impl FnOnce(&super::SetState) -> Vec<Note>,
    ) -> Result<super::SetState, StoreError> {
        if reviewers == 1 {
            return Err(VettingRefusal::TooFew(reviewers).into());
        }
        self.change_info(
            set,
            |info, head| {
                if info.vetting != reviewers {
                    // Entries before this point were added under the old
                    // rule; receivers check those after it.
                    info.vetting = reviewers;
                    info.vetting_since = head;
                }
            },
            audit,
        )
    }

    /// Puts an entry up for vetting in `set`, which must ask for it; its
    /// audit records (`audit`) land with it.
    pub(crate) fn submit(
        &self,
        set: &SetId,
        data: EntryData,
        submitter: &str,
        now_ms: u64,
        audit: impl FnOnce(&PendingEntry) -> Vec<Note>,
    ) -> Result<PendingEntry, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        state.writable()?;
        if state.info.vetting < 2 {
            return Err(VettingRefusal::NotRequired(set.clone()).into());
        }
        state.info.check_labels(&data.labels)?;
        let id = EntryId::derive(set, &data.signal);
        if self.tree.contains_key(keys::pending(&id.0))? {
            return Err(VettingRefusal::AlreadyPending(id).into());
        }
        if self.entry_state(&id)?.is_some_and(|s| s.matchable()) {
            return Err(VettingRefusal::Exists(id).into());
        }
        let pending = PendingEntry {
            id,
            set: set.clone(),
            data: EntryData {
                vetting: Vec::new(),
                ..data
            },
            submitter: submitter.to_owned(),
            submitted_ms: now_ms,
            needed: state.info.vetting,
        };
        let mut batch = sled::Batch::default();
        batch.insert(&keys::pending(&id.0)[..], pending.to_bytes()?);
        self.audit_into(&mut batch, now_ms, audit(&pending))?;
        self.tree.apply_batch(batch)?;
        Ok(pending)
    }

    /// Records `reviewer`'s confirmation of a pending entry; with enough of
    /// them the entry is appended to its set's log (the reviewers in the
    /// record) and leaves the pending list, in one batch. `audit` says what
    /// the confirmation did (given the entry as it now stands and, if it
    /// entered the log, the seq it ends at), in the same batch.
    pub(crate) fn confirm(
        &self,
        id: &EntryId,
        reviewer: &str,
        now_ms: u64,
        audit: impl FnOnce(&PendingEntry, Option<u64>) -> Vec<Note>,
    ) -> Result<Confirmed, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys::pending(&id.0);
        let bytes = self.tree.get(key)?.ok_or(VettingRefusal::NotPending(*id))?;
        let mut pending = PendingEntry::from_bytes(*id, &bytes)?;
        if pending.submitter == reviewer {
            return Err(VettingRefusal::OwnEntry(*id).into());
        }
        if pending.data.vetting.iter().any(|a| a.reviewer == reviewer) {
            return Err(VettingRefusal::AlreadyConfirmed {
                entry: *id,
                reviewer: reviewer.to_owned(),
            }
            .into());
        }
        pending.data.vetting.push(Attestation {
            reviewer: reviewer.to_owned(),
            time_ms: now_ms,
        });
        if (pending.data.vetting.len() as u32) < pending.needed {
            let mut batch = sled::Batch::default();
            batch.insert(&key[..], pending.to_bytes()?);
            self.audit_into(&mut batch, now_ms, audit(&pending, None))?;
            self.tree.apply_batch(batch)?;
            return Ok(Confirmed::Waiting(pending));
        }
        let state = self
            .set(&pending.set)
            .ok_or_else(|| StoreError::UnknownSet(pending.set.clone()))?;
        state.writable()?;
        let mut p = Pending::new(self, state, now_ms)?;
        p.add_vetted(&pending.data)?;
        p.remove_key(&key);
        let head = p.head_seq();
        let applied = p.commit(|_| audit(&pending, Some(head)))?;
        Ok(Confirmed::Vetted(pending, applied))
    }

    /// Withdraws a pending entry (a reviewer found it wrong); it never
    /// enters the log. `audit` describes it, in the same batch.
    pub(crate) fn reject(
        &self,
        id: &EntryId,
        audit: impl FnOnce(&PendingEntry) -> Vec<Note>,
    ) -> Result<PendingEntry, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys::pending(&id.0);
        let bytes = self.tree.get(key)?.ok_or(VettingRefusal::NotPending(*id))?;
        let pending = PendingEntry::from_bytes(*id, &bytes)?;
        let mut batch = sled::Batch::default();
        batch.remove(&key[..]);
        self.audit_into(&mut batch, super::wall_ms(), audit(&pending))?;
        self.tree.apply_batch(batch)?;
        Ok(pending)
    }

    /// Entries waiting for confirmations (of one set, or all), oldest
    /// first.
    pub fn pending(&self, set: Option<&SetId>) -> Result<Vec<PendingEntry>, StoreError> {
        let mut out = Vec::new();
        for kv in self.tree.scan_prefix([keys::PENDING]) {
            let (k, v) = kv?;
            let id = keys::trailing_id(&k)
                .filter(|_| k.len() == 17)
                .ok_or_else(|| StoreError::Corrupt("malformed pending key".into()))?;
            let p = PendingEntry::from_bytes(EntryId(id), &v)?;
            if set.is_none_or(|s| *s == p.set) {
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.submitted_ms);
        Ok(out)
    }
}

impl Store {
    /// Releases entries held for review: `entry` alone, or every held entry
    /// of `set`. One batch per set, each with the audit records `audit`
    /// makes of that set's releases; the outcomes list the released
    /// entries.
    pub(crate) fn release(
        &self,
        set: Option<&SetId>,
        entry: Option<&EntryId>,
        now_ms: u64,
        mut audit: impl FnMut(&SetId, &Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut held: std::collections::BTreeMap<u32, Vec<(EntryId, super::state::EntryState)>> =
            Default::default();
        match entry {
            Some(id) => {
                let state = self.entry_state(id)?.ok_or(StoreError::UnknownEntry(*id))?;
                if state.held {
                    held.entry(state.set_no).or_default().push((*id, state));
                }
            }
            None => {
                let set_no = match set {
                    Some(s) => Some(
                        self.set(s)
                            .ok_or_else(|| StoreError::UnknownSet(s.clone()))?
                            .no,
                    ),
                    None => None,
                };
                for item in self.entry_states() {
                    let (id, state) = item?;
                    if state.held && set_no.is_none_or(|n| n == state.set_no) {
                        held.entry(state.set_no).or_default().push((id, state));
                    }
                }
            }
        }
        let mut all = Applied::default();
        for (set_no, entries) in held {
            let set_id = self.set_id_of(set_no)?;
            let state = self
                .set(&set_id)
                .ok_or_else(|| StoreError::UnknownSet(set_id.clone()))?;
            let mut p = Pending::new(self, state, now_ms)?;
            for (id, old) in entries {
                p.release(id, &old)?;
            }
            let applied = p.commit(|a| audit(&set_id, a))?;
            all.outcomes.extend(applied.outcomes);
            all.deltas.extend(applied.deltas);
        }
        Ok(all)
    }
}
