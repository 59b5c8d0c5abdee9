//! The write path: turning changes to a set into one atomic sled batch.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

use std::collections::HashMap;
use std::sync::Arc;

use super::entries;
use super::federation::encode_checkpoint;
use super::keys;
use super::slots::{self, Chunk};
use super::state::{EntryState, SetState, NO_SLOT};
use super::usage::{self, Counter, Increments};
use super::{set_bytes, valid_slot, Store, StoreError};
use crate::model::audit::Note;
use crate::model::record::chain_digest;
use crate::model::signed::{Checkpoint, Signer, CHECKPOINT_EVERY};
use crate::model::{EntryData, EntryId, Record, RecordBody, SetId, Signal, SignalType};
use crate::signal::exact::to_hex;

/// One change to a set, as an origin makes it (an import, an operator).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Add an entry, or update its labels, or bring back a retracted one.
    Add(EntryData),
    /// Withdraw one entry.
    RetractEntry {
        /// The entry.
        entry: EntryId,
        /// Why.
        reason: String,
    },
    /// Withdraw the entry with this value.
    RetractValue {
        /// The value.
        signal: Signal,
        /// Why.
        reason: String,
    },
    /// Withdraw every entry that came from this source record.
    RetractExternal {
        /// The source record's id.
        external_id: String,
        /// Why.
        reason: String,
    },
    /// Withdraw the entries that came from this source record other than
    /// `keep`: what a service that sends its records whole does when a
    /// record's hashes change (an NCMEC entry with new fingerprints).
    RetractExternalExcept {
        /// The source record's id.
        external_id: String,
        /// Its entries now.
        keep: Vec<EntryId>,
        /// Why.
        reason: String,
    },
}

/// What one [`Change`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new entry.
    Added(EntryId),
    /// An existing entry's content changed, or a retracted one came back.
    Updated(EntryId),
    /// Nothing to do: the entry was already like that.
    Unchanged(EntryId),
    /// These entries were withdrawn.
    Retracted(Vec<EntryId>),
    /// Nothing to withdraw: no such entry in the set, or already withdrawn.
    NotFound,
}

/// How the in-memory index must change after a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexDelta {
    /// A PDQ code now matches, at this slot.
    InsertPdq {
        /// The slot.
        slot: u32,
        /// The code.
        code: [u64; 4],
    },
    /// The PDQ code at this slot no longer matches.
    RemovePdq {
        /// The slot.
        slot: u32,
    },
    /// An exact value now matches for this entry.
    InsertExact {
        /// The signal key.
        key: Vec<u8>,
        /// The entry.
        entry: EntryId,
    },
    /// An exact value no longer matches for this entry.
    RemoveExact {
        /// The signal key.
        key: Vec<u8>,
        /// The entry.
        entry: EntryId,
    },
}

/// The result of one atomic write.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    /// One per change, in order.
    pub outcomes: Vec<Outcome>,
    /// Apply these to the match index, in order.
    pub deltas: Vec<IndexDelta>,
    /// Records appended to the set's log.
    pub appended: u64,
}

/// A write under construction: the batch plus what it has changed so far,
/// so later changes in the same batch see earlier ones.
pub(super) struct Pending<'a> {
    store: &'a Store,
    batch: sled::Batch,
    set: SetState,
    digest: [u8; 32],
    entries: HashMap<EntryId, EntryState>,
    /// The entries under each external id this batch read or changed,
    /// and whether it changed them: written back once, at commit. (An
    /// exchange page looks up every record it brings.)
    externals: HashMap<String, (Vec<EntryId>, bool)>,
    /// Entry numbers of the entries read or changed by this batch.
    numbers: HashMap<EntryId, u32>,
    /// Entries first numbered by this batch, for the id map once it lands.
    numbered: Vec<(EntryId, u32)>,
    next_entry: u64,
    next_slot: u64,
    next_slot_dirty: bool,
    /// The free-slot scan, until it runs dry (`None` after that).
    free_slots: Option<Option<sled::Iter>>,
    /// Slot table chunks changed by this batch.
    chunks: HashMap<u32, Chunk>,
    applied: Applied,
    now_ms: u64,
    /// Signs checkpoints when this node is the set's origin.
    signer: Option<Arc<Signer>>,
    /// Seq of the last checkpoint (the head when the write began: every
    /// head has one).
    last_checkpoint: u64,
    /// The log chunk being filled, and its bytes so far.
    log_tail: Option<(u64, Vec<u8>)>,
    /// Entries added and withdrawn by signal type, for the day's counts
    /// (a short list: a batch sees few types; no allocation per record).
    usage: Vec<(Counter, SignalType, u64)>,
    /// New entries are held for review (records from a peer under review).
    pub(super) hold: bool,
}

/// An exchange's name and what makes its state of a write's outcomes.
/// (The state is read under the writer lock and handed to it with the
/// outcomes: nothing else writes it in between.)
type ExchangeWrite<'a> = (
    &'a str,
    &'a mut dyn FnMut(Option<&[u8]>, &Applied) -> Vec<u8>,
);

impl Store {
    /// Applies `changes` to `set` as one atomic batch: log records appended
    /// with contiguous sequence numbers, entry states, PDQ
    /// slots, the set's head and the audit records `audit` makes of what
    /// was done, all together, or none of it. (The node writes through
    /// [`crate::database::Database`], which keeps the indexes in step;
    /// this is public for the store's own benchmark.)
    pub fn append(
        &self,
        set: &SetId,
        changes: &[Change],
        now_ms: u64,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        self.append_with(set, changes, now_ms, None, audit)
    }

    /// As [`Store::append`], and, in the same batch, exchange `name`'s new
    /// state (what `state` makes of what the changes did: its cursor past
    /// them, its counts): a crash leaves the page's records and the cursor
    /// that covers them, or neither.
    pub(crate) fn append_exchange_page(
        &self,
        set: &SetId,
        changes: &[Change],
        now_ms: u64,
        name: &str,
        mut state: impl FnMut(Option<&[u8]>, &Applied) -> Vec<u8>,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        self.append_with(set, changes, now_ms, Some((name, &mut state)), audit)
    }

    fn append_with(
        &self,
        set: &SetId,
        changes: &[Change],
        now_ms: u64,
        exchange: Option<ExchangeWrite<'_>>,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        state.writable()?;
        check_vetted(
            &state,
            changes.iter().filter_map(|c| match c {
                Change::Add(data) => Some(data),
                _ => None,
            }),
        )?;
        let mut p = Pending::new(self, state, now_ms)?;
        for change in changes {
            let outcome = match change {
                Change::Add(data) => p.add(data)?,
                Change::RetractEntry { entry, reason } => p.retract(&[*entry], reason)?,
                Change::RetractValue { signal, reason } => {
                    p.retract(&[EntryId::derive(set, signal)], reason)?
                }
                Change::RetractExternal {
                    external_id,
                    reason,
                } => {
                    let ids = p.external_ids(external_id)?;
                    p.retract(&ids, reason)?
                }
                Change::RetractExternalExcept {
                    external_id,
                    keep,
                    reason,
                } => {
                    let mut ids = p.external_ids(external_id)?;
                    ids.retain(|id| !keep.contains(id));
                    p.retract(&ids, reason)?
                }
            };
            p.applied.outcomes.push(outcome);
        }
        if let Some((name, state)) = exchange {
            let key = keys::exchange(name);
            let current = self.tree.get(&key)?;
            let bytes = state(current.as_deref(), &p.applied);
            p.put_key(&key, &bytes);
        }
        p.commit(audit)
    }

    /// Exchange `name`'s state as last written (see
    /// `Store::append_exchange_page`).
    pub fn exchange_state(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(keys::exchange(name))?.map(|v| v.to_vec()))
    }

    /// Changes exchange `name`'s state alone (an error, a reset): `update`
    /// makes the new state of the current one, under the writer lock; with
    /// the audit records `notes`, in one batch.
    pub(crate) fn put_exchange_state(
        &self,
        name: &str,
        update: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let key = keys::exchange(name);
        let state = update(self.tree.get(&key)?.as_deref());
        let mut batch = sled::Batch::default();
        batch.insert(key, state);
        self.audit_into(&mut batch, super::wall_ms(), notes)?;
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Switches an entry off (or back on) on this node only: it stops (or
    /// resumes) matching but stays in the set and keeps syncing. Not a log
    /// record; the origin is not told. `audit` describes it, in the same
    /// batch.
    pub(crate) fn set_disabled(
        &self,
        id: &EntryId,
        disabled: bool,
        now_ms: u64,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.entry_state(id)?.ok_or(StoreError::UnknownEntry(*id))?;
        let set_id = self.set_id_of(state.set_no)?;
        let set = self
            .set(&set_id)
            .ok_or_else(|| StoreError::UnknownSet(set_id.clone()))?;
        let mut p = Pending::new(self, set, now_ms)?;
        if state.disabled == disabled {
            p.applied.outcomes.push(Outcome::Unchanged(*id));
        } else {
            let mut next = state.clone();
            next.disabled = disabled;
            p.transition(*id, &state, next)?;
            p.applied.outcomes.push(Outcome::Updated(*id));
        }
        p.commit(audit)
    }
}

/// Refuses entries added to a set that asks for vetting unless each carries
/// that many reviewers' attestations (the set's rule,
/// [`crate::model::SetInfo::check_vetted`], at the next seq).
pub(super) fn check_vetted<'d>(
    state: &SetState,
    mut added: impl Iterator<Item = &'d EntryData>,
) -> Result<(), StoreError> {
    let seq = state.head_seq + 1;
    match added.find_map(|data| state.info.check_vetted(seq, data).err()) {
        Some(e) => Err(super::VettingRefusal::Unvetted {
            set: state.id().clone(),
            needed: e.needed,
        }
        .into()),
        None => Ok(()),
    }
}

impl<'a> Pending<'a> {
    /// An empty write to `set` (the caller holds the writer lock).
    pub(super) fn new(store: &'a Store, set: SetState, now_ms: u64) -> Result<Self, StoreError> {
        let signer = store.signer_for(&set);
        let last_checkpoint = set.head_seq;
        Ok(Pending {
            store,
            batch: sled::Batch::default(),
            digest: set.digest(),
            set,
            entries: HashMap::new(),
            externals: HashMap::new(),
            numbers: HashMap::new(),
            numbered: Vec::new(),
            next_entry: store.counter(keys::NEXT_ENTRY)?,
            next_slot: store.counter(keys::NEXT_SLOT)?,
            next_slot_dirty: false,
            free_slots: None,
            chunks: HashMap::new(),
            applied: Applied::default(),
            now_ms,
            signer,
            last_checkpoint,
            log_tail: None,
            usage: Vec::new(),
            hold: false,
        })
    }

    /// Applies one record exactly as its origin wrote it (a received set):
    /// the bytes are appended verbatim, so the chain digest here equals the
    /// origin's, and the entry changes as the record says.
    pub(super) fn apply_verbatim(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let record = Record::decode(bytes).map_err(|e| StoreError::Rejected(e.to_string()))?;
        let seq = self.set.head_seq + 1;
        if record.seq != seq {
            return Err(StoreError::Rejected(format!(
                "record {} where {seq} was next (a gap or a reordering)",
                record.seq
            )));
        }
        self.digest = chain_digest(&self.digest, bytes);
        self.push_log(seq, bytes)?;
        self.set.head_seq = seq;
        self.applied.appended += 1;
        self.now_ms = record.time_ms;
        let outcome = match record.body {
            RecordBody::Add(data) => {
                // The origin signed it, but its vetting rule binds it too.
                self.set
                    .info
                    .check_vetted(seq, &data)
                    .map_err(|e| StoreError::Rejected(e.to_string()))?;
                let id = EntryId::derive(self.set.id(), &data.signal);
                let existing = self.get(&id)?;
                self.add_effect(id, existing, data, seq)?
            }
            RecordBody::Retract { entry, .. } => match self.get(&entry)? {
                Some(old) if old.set_no == self.set.no && !old.retracted => {
                    self.retract_effect(entry, old, seq)?;
                    Outcome::Retracted(vec![entry])
                }
                // A retraction of something this log never added, or
                // twice: the origin wrote it, so it stays in the log, and
                // changes nothing.
                _ => Outcome::NotFound,
            },
        };
        self.applied.outcomes.push(outcome);
        Ok(())
    }

    /// The entry's state as of this batch so far.
    fn get(&mut self, id: &EntryId) -> Result<Option<EntryState>, StoreError> {
        if let Some(s) = self.entries.get(id) {
            return Ok(Some(s.clone()));
        }
        Ok(self.store.locate_entry(id)?.map(|(n, state)| {
            self.numbers.insert(*id, n);
            state
        }))
    }

    /// The entry's number: its own if it has one, else the next one.
    fn number(&mut self, id: EntryId) -> Result<u32, StoreError> {
        if let Some(n) = self.numbers.get(&id) {
            return Ok(*n);
        }
        let known = self
            .store
            .ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id);
        if let Some(n) = known {
            self.numbers.insert(id, n);
            return Ok(n);
        }
        if self.next_entry >= u64::from(u32::MAX) {
            return Err(StoreError::Full("entries"));
        }
        let n = self.next_entry as u32;
        self.next_entry += 1;
        self.numbers.insert(id, n);
        self.numbered.push((id, n));
        Ok(n)
    }

    /// Counts an entry added to or withdrawn from the set, for the report.
    fn count(&mut self, counter: Counter, data: &EntryData) {
        let kind = data.signal.kind();
        match self
            .usage
            .iter_mut()
            .find(|(c, k, _)| *c == counter && k == kind)
        {
            Some(seen) => seen.2 += 1,
            None => self.usage.push((counter, kind.clone(), 1)),
        }
    }

    /// Adds an entry that its reviewers have vetted (`data.vetting`).
    pub(super) fn add_vetted(&mut self, data: &EntryData) -> Result<(), StoreError> {
        let outcome = self.add(data)?;
        self.applied.outcomes.push(outcome);
        Ok(())
    }

    /// Lets a held entry match (an operator reviewed it).
    pub(super) fn release(&mut self, id: EntryId, old: &EntryState) -> Result<(), StoreError> {
        let next = EntryState {
            held: false,
            ..old.clone()
        };
        self.transition(id, old, next)?;
        self.applied.outcomes.push(Outcome::Updated(id));
        Ok(())
    }

    /// Deletes `key` in the same batch.
    pub(super) fn remove_key(&mut self, key: &[u8]) {
        self.batch.remove(key);
    }

    /// Writes a key outside the set's log in the same batch.
    pub(super) fn put_key(&mut self, key: &[u8], value: &[u8]) {
        self.batch.insert(key, value);
    }

    /// Adds (or restores) an entry as an origin does.
    pub(super) fn add_entry(&mut self, data: &EntryData) -> Result<(), StoreError> {
        let outcome = self.add(data)?;
        self.applied.outcomes.push(outcome);
        Ok(())
    }

    fn add(&mut self, data: &EntryData) -> Result<Outcome, StoreError> {
        let id = EntryId::derive(self.set.id(), &data.signal);
        let existing = self.get(&id)?;
        if let Some(old) = &existing {
            if !old.retracted
                && old.data.labels == data.labels
                && old.data.external_id == data.external_id
            {
                return Ok(Outcome::Unchanged(id));
            }
        }
        let seq = self.append_record(RecordBody::Add(data.clone()))?;
        self.add_effect(id, existing, data.clone(), seq)
    }

    /// What an add record at `seq` does to entry `id`.
    fn add_effect(
        &mut self,
        id: EntryId,
        existing: Option<EntryState>,
        data: EntryData,
        seq: u64,
    ) -> Result<Outcome, StoreError> {
        if let Some(ext) = &data.external_id {
            let (ids, dirty) = self.external_list(ext)?;
            if !ids.contains(&id) {
                ids.push(id);
                *dirty = true;
            }
        }
        let next = EntryState {
            set_no: self.set.no,
            retracted: false,
            disabled: existing.as_ref().is_some_and(|o| o.disabled),
            // New (or returning) entries from a peer under review wait for
            // an operator; entries already released stay released.
            held: match &existing {
                Some(old) if !old.retracted => old.held,
                _ => self.hold,
            },
            slot: existing.as_ref().map_or(NO_SLOT, |o| o.slot),
            added_seq: existing.as_ref().map_or(seq, |o| o.added_seq),
            last_seq: seq,
            time_ms: self.now_ms,
            data,
        };
        if existing.as_ref().is_none_or(|old| old.retracted) {
            self.count(Counter::Added, &next.data);
        }
        match existing {
            Some(old) => {
                self.transition(id, &old, next)?;
                Ok(Outcome::Updated(id))
            }
            None => {
                let absent = EntryState {
                    retracted: true,
                    ..next.clone()
                };
                self.transition(id, &absent, next)?;
                Ok(Outcome::Added(id))
            }
        }
    }

    fn retract(&mut self, ids: &[EntryId], reason: &str) -> Result<Outcome, StoreError> {
        let mut done = Vec::new();
        for id in ids {
            let Some(old) = self.get(id)? else { continue };
            if old.retracted || old.set_no != self.set.no {
                continue;
            }
            let seq = self.append_record(RecordBody::Retract {
                entry: *id,
                reason: reason.to_owned(),
            })?;
            self.retract_effect(*id, old, seq)?;
            done.push(*id);
        }
        Ok(if done.is_empty() {
            Outcome::NotFound
        } else {
            Outcome::Retracted(done)
        })
    }

    /// What a retract record at `seq` does to entry `id`.
    fn retract_effect(&mut self, id: EntryId, old: EntryState, seq: u64) -> Result<(), StoreError> {
        self.count(Counter::Retracted, &old.data);
        let next = EntryState {
            retracted: true,
            last_seq: seq,
            time_ms: self.now_ms,
            ..old.clone()
        };
        self.transition(id, &old, next)
    }

    /// The entries listed under `external_id`, loaded on first use in
    /// this batch, and whether this batch changed the list.
    fn external_list(
        &mut self,
        external_id: &str,
    ) -> Result<(&mut Vec<EntryId>, &mut bool), StoreError> {
        if !self.externals.contains_key(external_id) {
            let key = keys::external(self.set.no, external_id);
            let ids = match self.store.tree.get(key)? {
                Some(bytes) => keys::external_ids(&bytes).ok_or_else(|| {
                    StoreError::Corrupt("an external id's entry list has a partial id".into())
                })?,
                None => Vec::new(),
            };
            self.externals.insert(external_id.to_owned(), (ids, false));
        }
        let (ids, dirty) = self
            .externals
            .get_mut(external_id)
            .ok_or_else(|| StoreError::Corrupt("an external id's list vanished".into()))?;
        Ok((ids, dirty))
    }

    /// The entries that hold `external_id` now (retracted or not).
    fn external_ids(&mut self, external_id: &str) -> Result<Vec<EntryId>, StoreError> {
        let listed = self.external_list(external_id)?.0.clone();
        // An entry re-added since under another source record is still
        // listed under the old id: only its current external id counts,
        // and the list forgets it when it is next written.
        let mut current = Vec::with_capacity(listed.len());
        for id in &listed {
            if self
                .get(id)?
                .is_some_and(|s| s.data.external_id.as_deref() == Some(external_id))
            {
                current.push(*id);
            }
        }
        if current.len() != listed.len() {
            let (ids, dirty) = self.external_list(external_id)?;
            ids.clone_from(&current);
            *dirty = true;
        }
        Ok(current)
    }

    /// Appends a record at the next sequence number and advances the chain.
    fn append_record(&mut self, body: RecordBody) -> Result<u64, StoreError> {
        let seq = self.set.head_seq + 1;
        let bytes = Record {
            seq,
            time_ms: self.now_ms,
            body,
        }
        .encode();
        self.digest = chain_digest(&self.digest, &bytes);
        self.push_log(seq, &bytes)?;
        self.set.head_seq = seq;
        self.applied.appended += 1;
        if seq - self.last_checkpoint >= CHECKPOINT_EVERY {
            self.sign_head();
        }
        Ok(seq)
    }

    /// Adds record `seq` to the set's log: to the last chunk, loaded on
    /// first use if it is partial, written at commit or when full.
    fn push_log(&mut self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (chunk, index) = keys::log_chunk_of(seq);
        if self.log_tail.as_ref().map(|(c, _)| *c) != Some(chunk) {
            self.flush_log_tail();
            let value = if index == 0 {
                Vec::new()
            } else {
                self.store
                    .tree
                    .get(keys::log_chunk(self.set.no, chunk))?
                    .map(|v| v.to_vec())
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!(
                            "set {}: log chunk {chunk} missing before seq {seq}",
                            self.set.id()
                        ))
                    })?
            };
            self.log_tail = Some((chunk, value));
        }
        if let Some((_, value)) = &mut self.log_tail {
            value.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            value.extend_from_slice(bytes);
        }
        if index as u64 == keys::LOG_CHUNK - 1 {
            self.flush_log_tail();
        }
        Ok(())
    }

    fn flush_log_tail(&mut self) {
        if let Some((chunk, value)) = self.log_tail.take() {
            self.batch
                .insert(&keys::log_chunk(self.set.no, chunk)[..], value);
        }
    }

    /// The set's head seq after the records so far.
    pub(super) fn head_seq(&self) -> u64 {
        self.set.head_seq
    }

    /// The chain digest after the records so far.
    pub(super) fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Signs a checkpoint at the current head, if this node is the origin.
    fn sign_head(&mut self) {
        if let Some(signer) = &self.signer {
            let cp = signer.checkpoint(self.set.id(), self.set.head_seq, self.digest);
            self.put_checkpoint(&cp);
        }
    }

    pub(super) fn put_checkpoint(&mut self, cp: &Checkpoint) {
        self.batch.insert(
            &keys::checkpoint(self.set.no, cp.seq)[..],
            encode_checkpoint(cp),
        );
        self.last_checkpoint = cp.seq;
    }

    /// Makes `next` the entry's state (written at commit) and moves its PDQ
    /// slot and index deltas from what `old` implied to what `next` implies.
    fn transition(
        &mut self,
        id: EntryId,
        old: &EntryState,
        mut next: EntryState,
    ) -> Result<(), StoreError> {
        let key = next.data.signal.key();
        let is_pdq = next.data.signal.kind() == &SignalType::Pdq;
        match (old.matchable(), next.matchable()) {
            (false, true) => {
                self.set.matchable += 1;
                if let Some(hash) = next.data.signal.as_pdq() {
                    let slot = self.alloc_slot()?;
                    next.slot = slot;
                    let (chunk, i) = slots::locate(slot);
                    self.chunk_mut(chunk)?.set(i, &id, hash.as_bytes());
                    self.applied.deltas.push(IndexDelta::InsertPdq {
                        slot,
                        code: hash.to_words(),
                    });
                } else {
                    self.applied
                        .deltas
                        .push(IndexDelta::InsertExact { key, entry: id });
                }
            }
            (true, false) => {
                self.set.matchable = self.set.matchable.saturating_sub(1);
                if is_pdq {
                    if valid_slot(old.slot) {
                        let (chunk, i) = slots::locate(old.slot);
                        self.chunk_mut(chunk)?.clear(i);
                        self.batch.insert(&keys::free_slot(old.slot)[..], &[][..]);
                        self.applied
                            .deltas
                            .push(IndexDelta::RemovePdq { slot: old.slot });
                    }
                } else {
                    self.applied
                        .deltas
                        .push(IndexDelta::RemoveExact { key, entry: id });
                }
                next.slot = NO_SLOT;
            }
            _ => {}
        }
        self.number(id)?;
        self.entries.insert(id, next);
        Ok(())
    }

    /// The slot table chunk `chunk`, loaded on first use in this batch.
    fn chunk_mut(&mut self, chunk: u32) -> Result<&mut Chunk, StoreError> {
        if !self.chunks.contains_key(&chunk) {
            let loaded = match self.store.tree.get(keys::slot_chunk(chunk))? {
                Some(bytes) => Chunk::from_bytes(&bytes).ok_or_else(|| {
                    StoreError::Corrupt(format!("slot chunk {chunk} has the wrong size"))
                })?,
                None => Chunk::default(),
            };
            self.chunks.insert(chunk, loaded);
        }
        self.chunks
            .get_mut(&chunk)
            .ok_or_else(|| StoreError::Corrupt("slot chunk vanished".into()))
    }

    /// A free PDQ slot: one released before this batch, else a new one.
    /// Slots released in this batch are not reused until it has landed, so
    /// an index delta never names a slot twice.
    fn alloc_slot(&mut self) -> Result<u32, StoreError> {
        let tree = &self.store.tree;
        let free = self
            .free_slots
            .get_or_insert_with(|| Some(tree.scan_prefix([keys::FREE_SLOT])));
        if let Some(iter) = free {
            match iter.next() {
                Some(kv) => {
                    let (k, _) = kv?;
                    let slot = keys::slot_of(&k)
                        .ok_or_else(|| StoreError::Corrupt("short free slot key".into()))?;
                    self.batch.remove(k);
                    return Ok(slot);
                }
                // Asking a finished sled scan again costs a tree descent
                // each time; remember that it is finished.
                None => *free = None,
            }
        }
        // The index reserves the top bit of a slot (see its MAX_SLOT).
        if self.next_slot > u64::from(crate::index::pdq::MAX_SLOT) {
            return Err(StoreError::Full("PDQ slots"));
        }
        let slot = self.next_slot as u32;
        self.next_slot += 1;
        self.next_slot_dirty = true;
        Ok(slot)
    }

    /// Lands the write as one batch, with the audit records `audit` makes
    /// of what it did (see [`Store::audit_into`]).
    pub(super) fn commit(
        mut self,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let notes = audit(&self.applied);
        self.store
            .audit_into(&mut self.batch, super::wall_ms(), notes)?;
        if self.set.head_seq != self.last_checkpoint {
            self.sign_head();
        }
        self.flush_log_tail();
        self.set.head_digest = to_hex(&self.digest);
        self.batch
            .insert(keys::set(self.set.id().as_str()), set_bytes(&self.set)?);
        for (no, chunk) in &self.chunks {
            if chunk.is_empty() {
                self.batch.remove(&keys::slot_chunk(*no)[..]);
            } else {
                self.batch
                    .insert(&keys::slot_chunk(*no)[..], chunk.as_bytes());
            }
        }
        self.write_entries()?;
        for (external_id, (ids, dirty)) in &self.externals {
            let key = keys::external(self.set.no, external_id);
            match (dirty, ids.is_empty()) {
                (false, _) => {}
                (true, true) => self.batch.remove(key),
                (true, false) => self.batch.insert(key, keys::external_value(ids)),
            }
        }
        let usage: Increments = self
            .usage
            .drain(..)
            .map(|(counter, kind, n)| {
                let key = (counter, Some(self.set.id().clone()), kind.name().to_owned());
                (key, n)
            })
            .collect();
        self.store
            .usage_into(&mut self.batch, usage::today(), &usage)?;
        if self.next_slot_dirty {
            self.batch
                .insert(keys::NEXT_SLOT, &self.next_slot.to_be_bytes());
        }
        let generation = self.store.next_generation(&mut self.batch);
        self.store.tree.apply_batch(self.batch)?;
        self.store
            .generation
            .store(generation, std::sync::atomic::Ordering::SeqCst);
        let mut ids = self.store.ids.write().unwrap_or_else(|p| p.into_inner());
        for (id, n) in self.numbered {
            ids.insert(id, n);
        }
        drop(ids);
        self.store.cache_set(self.set);
        Ok(self.applied)
    }

    /// Puts every entry state this batch changed into its chunk, each chunk
    /// read (if it exists) and written once, and the entry counter.
    fn write_entries(&mut self) -> Result<(), StoreError> {
        let mut by_chunk: HashMap<u32, Vec<(usize, EntryId)>> = HashMap::new();
        for id in self.entries.keys() {
            let n = *self
                .numbers
                .get(id)
                .ok_or_else(|| StoreError::Corrupt("a changed entry has no number".into()))?;
            let (chunk, i) = entries::locate(n);
            by_chunk.entry(chunk).or_default().push((i, *id));
        }
        for (no, positions) in by_chunk {
            let key = keys::entry_chunk(no);
            let mut chunk = match self.store.tree.get(key)? {
                Some(bytes) => {
                    entries::Chunk::from_bytes(&bytes).ok_or_else(|| super::malformed_chunk(no))?
                }
                None => entries::Chunk::default(),
            };
            for (i, id) in positions {
                if let Some(state) = self.entries.get(&id) {
                    chunk.set(i, id, state.encode());
                }
            }
            self.batch.insert(&key[..], chunk.to_bytes());
        }
        if !self.numbered.is_empty() {
            self.batch
                .insert(keys::NEXT_ENTRY, &self.next_entry.to_be_bytes());
        }
        Ok(())
    }
}
