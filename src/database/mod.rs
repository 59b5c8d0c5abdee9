//! The node's hash database as the rest of the node uses it: the persistent
//! [`Store`] plus the in-memory match indexes, kept in step.
//!
//! The store is the truth; the indexes are derived from it, rebuilt when
//! the database opens and then updated with the [`IndexDelta`]s each write
//! returns, so a change matches (or stops matching) as soon as the write
//! that made it has landed.

mod disputes;
pub mod flood;
mod matching;
mod records;

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use matching::{Answer, ImageMatches, Match, MatchError, PdqQuery, MAX_RADIUS, MAX_VARIANTS};

use crate::index::exact::ExactIndex;
use crate::index::pdq::PdqIndex;
use crate::model::audit::{Action, Note};
use crate::model::signed::{Checkpoint, FeedbackNote, SignedInfo, Signer};
use crate::model::{DisputePolicy, EntryData, EntryId, SetId, SetInfo, SetPolicy};
use crate::store::matches::{Feedback, FeedbackError, MatchCounts, MatchId, MatchRecord};
use crate::store::{
    Applied, Change, Confirmed, IndexDelta, Matchable, PendingEntry, ReceivedFeedback, SetState,
    SnapshotLoad, Store, StoreError, StoreOptions,
};
pub use disputes::{DisputeOutcome, SUSPENDED};
pub use flood::FloodLimits;

use crate::report::Report;

/// The in-memory indexes.
pub struct Indexes {
    /// PDQ codes by slot.
    pub pdq: PdqIndex,
    /// Exact values.
    pub exact: ExactIndex,
}

impl Indexes {
    fn add(&mut self, item: Matchable) {
        match item {
            Matchable::Pdq { slot, code } => self.pdq.insert(slot, code),
            Matchable::Exact { key, entry } => self.exact.insert(&key, entry),
        }
    }

    fn apply(&mut self, deltas: &[IndexDelta]) {
        for delta in deltas {
            match delta {
                IndexDelta::InsertPdq { slot, code } => self.pdq.insert(*slot, *code),
                IndexDelta::RemovePdq { slot } => {
                    self.pdq.remove(*slot);
                }
                IndexDelta::InsertExact { key, entry } => self.exact.insert(key, *entry),
                IndexDelta::RemoveExact { key, entry } => {
                    self.exact.remove(key, *entry);
                }
            }
        }
    }
}

/// Store and indexes together.
pub struct Database {
    store: Arc<Store>,
    /// Writes match records off the query path.
    records: records::RecordWriter,
    indexes: RwLock<Indexes>,
    /// Held across a store write and its index update, so that deltas reach
    /// the index in the order the store applied them (a slot freed by one
    /// write may be reused by the next).
    writer: Mutex<()>,
    /// Where the indexes came from at open.
    source: IndexSource,
    /// The store generation at open.
    opened_at: u64,
    /// Bumped after every write that changed a set (records, policy, a
    /// new set): the federation's subscriptions wait on it to push new
    /// heads at once.
    changes: tokio::sync::watch::Sender<u64>,
    /// Flood quarantine (see [`flood`]).
    flood: flood::FloodGuard,
}

/// Where [`Database::open`] built the indexes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// The snapshot of the last clean close.
    Snapshot,
    /// The store (no snapshot, or writes since, or a damaged one).
    Store,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Database {
    /// Opens the store in `dir` and builds the indexes: from the snapshot
    /// the last clean [`Database::close`] wrote, if nothing was written
    /// since, else from the store itself.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let started = Instant::now();
        let (store, (indexes, source)) = Store::open_with(dir, options, |store| {
            let expected: u64 = store.sets().iter().map(|s| s.matchable).sum();
            let fresh = || Indexes {
                pdq: PdqIndex::with_expected_len(expected as usize),
                exact: ExactIndex::new(),
            };
            let mut indexes = fresh();
            let source = match store.load_index_snapshot(|m| indexes.add(m))? {
                SnapshotLoad::Loaded => IndexSource::Snapshot,
                SnapshotLoad::Unusable(why) => {
                    tracing::info!(reason = %why, "index snapshot not used; rebuilding from the store");
                    indexes = fresh();
                    for item in store.matchable() {
                        indexes.add(item?);
                    }
                    IndexSource::Store
                }
            };
            Ok((indexes, source))
        })?;
        tracing::info!(
            pdq = indexes.pdq.len(),
            exact = indexes.exact.len(),
            ?source,
            seconds = started.elapsed().as_secs_f64(),
            "database opened, indexes built"
        );
        let store = Arc::new(store);
        Ok(Database {
            indexes: RwLock::new(indexes),
            writer: Mutex::new(()),
            source,
            opened_at: store.generation(),
            records: records::RecordWriter::start(store.clone())?,
            store,
            changes: tokio::sync::watch::Sender::new(0),
            flood: flood::FloodGuard::default(),
        })
    }

    /// Where the indexes were built from when the database opened.
    pub fn index_source(&self) -> IndexSource {
        self.source
    }

    /// Closes the database cleanly: flushes the store and writes the index
    /// snapshot that makes the next open fast (unless the one it opened
    /// from is still current).
    pub fn close(self) -> Result<(), StoreError> {
        self.records.close();
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.store.flush()?;
        if self.source == IndexSource::Snapshot
            && self.store.ids_from_snapshot()
            && self.store.generation() == self.opened_at
        {
            return Ok(());
        }
        let indexes = self.indexes();
        let bound = self.store.slot_bound()?;
        let pdq: Vec<(u32, [u8; 32])> = (0..bound)
            .filter_map(|slot| {
                let code = indexes.pdq.get(slot)?;
                Some((
                    slot,
                    crate::signal::pdq::PdqHash::from_words(code).to_bytes(),
                ))
            })
            .collect();
        self.store.write_index_snapshot(&pdq, indexes.exact.iter())
    }

    /// The store underneath (reads; writes go through the database so the
    /// indexes follow).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reads the store as of the last write that has fully landed: its
    /// batch, the id map and the indexes. A plain [`Database::store`] read
    /// can see a write's batch a moment before its entries match (the
    /// indexes follow the batch); a caller that takes what it reads as a
    /// promise that the entries match (an exchange's "caught up", a set's
    /// head) reads through this, which waits out a write in progress.
    pub fn settled<T>(&self, read: impl FnOnce(&Store) -> T) -> T {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        read(&self.store)
    }

    /// Read access to the indexes (benchmarks, statistics).
    pub fn indexes(&self) -> RwLockReadGuard<'_, Indexes> {
        self.indexes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Matchable entries per signal type code ([`SignalType::code`]), from
    /// the indexes (walks the exact index: for metrics, not hot paths).
    ///
    /// [`SignalType::code`]: crate::model::SignalType::code
    pub fn matchable_by_type(&self) -> [u64; 8] {
        let indexes = self.indexes();
        let mut counts = [0; 8];
        counts[usize::from(crate::model::SignalType::Pdq.code())] = indexes.pdq.len() as u64;
        for (key, _) in indexes.exact.iter() {
            if let Some(slot) = key.first().and_then(|&c| counts.get_mut(usize::from(c))) {
                *slot += 1;
            }
        }
        counts
    }

    /// Records answered matches (see [`crate::store::matches`]); the ids
    /// are final at once, the records reach the store within milliseconds.
    pub fn record_matches(&self, records: Vec<MatchRecord>) -> Result<Vec<MatchId>, StoreError> {
        self.records.record(records)
    }

    /// Attaches feedback to a recorded match (once).
    pub fn give_feedback(
        &self,
        id: &MatchId,
        feedback: Feedback,
    ) -> Result<MatchRecord, FeedbackError> {
        self.records.flush();
        let record = self.store.give_feedback(id, feedback)?;
        // Wakes the federation's outbox, which may have a note to send.
        self.changed();
        Ok(record)
    }

    /// The record of a match, including one answered a moment ago.
    pub fn match_record(&self, id: &MatchId) -> Result<Option<MatchRecord>, StoreError> {
        self.records.flush();
        self.store.match_record(id)
    }

    /// Counts of matches and feedback, including every match answered.
    pub fn match_counts(&self) -> Result<MatchCounts, StoreError> {
        self.records.flush();
        self.store.match_counts()
    }

    /// Creates a set (idempotent for an identical configuration), with the
    /// audit records `audit` makes of a new one in the same batch.
    pub fn create_set(
        &self,
        info: SetInfo,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let state = self.store.create_set(info, now_ms(), audit)?;
        self.changed();
        Ok(state)
    }

    /// Applies `changes` to `set` atomically, with the audit records
    /// `audit` makes of what they did in the same batch, and updates the
    /// indexes.
    pub fn apply(
        &self,
        set: &SetId,
        changes: &[Change],
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.store.append(set, changes, now_ms(), audit)?;
        self.update(&applied.deltas);
        if applied.appended > 0 {
            self.changed();
        }
        Ok(applied)
    }

    /// As [`Database::apply`], with exchange `name`'s new state in the same
    /// batch (see `Store::append_exchange_page`).
    pub fn apply_exchange_page(
        &self,
        set: &SetId,
        changes: &[Change],
        name: &str,
        state: impl FnMut(Option<&[u8]>, &Applied) -> Vec<u8>,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied =
            self.store
                .append_exchange_page(set, changes, now_ms(), name, state, audit)?;
        self.update(&applied.deltas);
        if applied.appended > 0 {
            self.changed();
        }
        Ok(applied)
    }

    /// Removes a verdict its service took, with exchange `name`'s state
    /// and `notes` (see `Store::exchange_feedback_sent`).
    pub fn exchange_feedback_sent(
        &self,
        key: &[u8],
        name: &str,
        update: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        self.store.exchange_feedback_sent(key, name, update, notes)
    }

    /// Changes exchange `name`'s state alone, with `notes` (see
    /// `Store::put_exchange_state`).
    pub fn put_exchange_state(
        &self,
        name: &str,
        update: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        self.store.put_exchange_state(name, update, notes)
    }

    /// Applies records of a received set up to verified checkpoints (see
    /// `Store::apply_remote`) and updates the indexes: the entries match
    /// (or stop matching) as soon as this returns.
    pub fn apply_remote(
        &self,
        set: &SetId,
        records: &[Vec<u8>],
        checkpoints: &[Checkpoint],
        peer: &str,
        hold: bool,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self
            .store
            .apply_remote(set, records, checkpoints, peer, hold)?;
        self.update(&applied.deltas);
        self.changed();
        Ok(applied)
    }

    /// Rotates the node's keys (see `Store::rotate_signer`: `rotate` gets
    /// what the current key signed, set by set, and a journal for its
    /// audit notes, all under the writer lock), then signs what the sets
    /// lack.
    pub fn rotate_signer<E: From<StoreError>>(
        &self,
        rotate: impl FnOnce(
            Vec<crate::model::keychain::KeyBound>,
            &mut dyn FnMut(Vec<Note>) -> Result<(), StoreError>,
        ) -> Result<Option<Arc<Signer>>, E>,
    ) -> Result<(), E> {
        self.store.rotate_signer(rotate)?;
        if !self.store.sign_missing()?.is_empty() {
            self.changed();
        }
        Ok(())
    }

    /// Makes this node the signer of its own sets and signs what they lack
    /// (see `Store::sign_missing`).
    pub fn set_signer(&self, signer: Arc<Signer>) -> Result<Vec<SetId>, StoreError> {
        self.store.set_signer(signer);
        let changed = self.store.sign_missing()?;
        if !changed.is_empty() {
            self.changed();
        }
        Ok(changed)
    }

    /// Changes who may receive one of this node's sets (signed anew).
    pub fn set_policy(
        &self,
        set: &SetId,
        policy: SetPolicy,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let state = self.store.set_policy(set, policy, audit)?;
        self.changed();
        Ok(state)
    }

    /// Sets how many reviewers must confirm each new entry of one of this
    /// node's sets (see `Store::set_vetting`).
    pub fn set_vetting(
        &self,
        set: &SetId,
        reviewers: u32,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let state = self.store.set_vetting(set, reviewers, audit)?;
        self.changed();
        Ok(state)
    }

    /// Sets what this node does when peers dispute entries of one of its
    /// sets (see `Store::set_disputes`).
    pub fn set_disputes(
        &self,
        set: &SetId,
        policy: DisputePolicy,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let state = self.store.set_disputes(set, policy, audit)?;
        self.changed();
        Ok(state)
    }

    /// Switches a set off (or back on) on this node (see
    /// `Store::set_suppressed`).
    pub fn set_suppressed(
        &self,
        set: &SetId,
        suppressed: bool,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        self.store.set_suppressed(set, suppressed, audit)
    }

    /// Puts an entry up for vetting (see `Store::submit`).
    pub fn submit(
        &self,
        set: &SetId,
        data: EntryData,
        submitter: &str,
        audit: impl FnOnce(&PendingEntry) -> Vec<Note>,
    ) -> Result<PendingEntry, StoreError> {
        self.store.submit(set, data, submitter, now_ms(), audit)
    }

    /// Withdraws a pending entry (see `Store::reject`).
    pub fn reject(
        &self,
        id: &EntryId,
        audit: impl FnOnce(&PendingEntry) -> Vec<Note>,
    ) -> Result<PendingEntry, StoreError> {
        self.store.reject(id, audit)
    }

    /// Keeps feedback a peer sent about one of this node's entries, with
    /// its audit record `note` and, if this report brings the entry to its
    /// set's dispute threshold, the record that raises it, in one batch
    /// (see `Store::receive_feedback`; what follows a raise is
    /// [`Database::weigh_dispute`]).
    pub fn receive_feedback(
        &self,
        received: &ReceivedFeedback,
        note: Note,
    ) -> Result<(), StoreError> {
        let policy = self
            .store
            .set(&received.note.set)
            .map(|s| s.info.disputes)
            .unwrap_or_default();
        self.store.receive_feedback(received, |before, after| {
            let count = |d: Option<&crate::store::Dispute>| d.map_or(0, |d| d.false_positives);
            let mut notes = vec![note];
            if !policy.is_off()
                && count(before) < policy.threshold
                && count(after) >= policy.threshold
            {
                notes.extend(after.map(|d| disputes::raised(d, policy.threshold)));
            }
            notes
        })
    }

    /// Records a set offered by a peer (see `Store::receive_set`).
    pub fn receive_set(
        &self,
        info: SetInfo,
        signed: SignedInfo,
        peer: &str,
    ) -> Result<SetState, StoreError> {
        let state = self.store.receive_set(info, signed, peer, now_ms())?;
        self.changed();
        Ok(state)
    }

    /// Records a reviewer's confirmation of a pending entry (see
    /// `Store::confirm`); the entry matches as soon as this returns if it
    /// completed the vetting. `audit` is as for `Store::confirm`.
    pub fn confirm(
        &self,
        id: &EntryId,
        reviewer: &str,
        audit: impl FnOnce(&PendingEntry, Option<u64>) -> Vec<Note>,
    ) -> Result<Confirmed, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let confirmed = self.store.confirm(id, reviewer, now_ms(), audit)?;
        if let Confirmed::Vetted(_, applied) = &confirmed {
            self.update(&applied.deltas);
            self.changed();
        }
        Ok(confirmed)
    }

    /// Appends an event that is its own effect to the node's audit log
    /// (see [`Store::audit`]); changes carry their notes in their write.
    pub fn audit(&self, note: Note) -> Result<(), StoreError> {
        self.store.audit(now_ms(), note).map(|_| ())
    }

    /// Records that a peer registry change (written beside the registry
    /// with this digest) happened, with its audit records, in one batch
    /// (see `Store::journal_peers`).
    pub fn journal_peers(&self, digest: [u8; 32], notes: Vec<Note>) -> Result<(), StoreError> {
        self.store.journal_peers(digest, notes)
    }

    /// Queues feedback from a downstream peer to go on toward the origin
    /// (see `Store::queue_feedback`), and wakes the outbox.
    pub fn queue_feedback(&self, note: &FeedbackNote) -> Result<(), StoreError> {
        self.store.queue_feedback(note)?;
        self.changed();
        Ok(())
    }

    /// A receiver that sees a new value after every write that changed a
    /// set.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// The transparency report for days `from` to `to` (both included,
    /// days since the Unix epoch), after every match and query answered so
    /// far is counted.
    pub fn report(&self, node: &str, from: u32, to: u32) -> Result<Report, StoreError> {
        self.records.flush();
        Ok(Report::build(node, from, to, &self.store.usage(from, to)?))
    }

    /// Keeps match records `days` days (0: for ever): they hold only what
    /// feedback and reporting need, and the report's daily counts outlive
    /// them.
    pub fn set_match_retention(&self, days: u32) {
        self.records.set_retention(days);
    }

    /// Releases entries held for review (one entry, or every held entry of
    /// a set): they match as soon as this returns. Returns how many.
    /// `audit` describes each set's releases, in that set's batch.
    pub fn release(
        &self,
        set: Option<&SetId>,
        entry: Option<&EntryId>,
        audit: impl FnMut(&SetId, &Applied) -> Vec<Note>,
    ) -> Result<u64, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.store.release(set, entry, now_ms(), audit)?;
        self.update(&applied.deltas);
        Ok(applied.outcomes.len() as u64)
    }

    /// Sets when an entry counts as flooding (see [`flood`]).
    pub fn set_flood_limits(&self, limits: FloodLimits) {
        self.flood.set_limits(limits);
    }

    /// Switches off an entry that floods, and says so to operators.
    fn quarantine(&self, entry: &EntryId, reason: &str) -> Result<(), StoreError> {
        tracing::warn!(entry = %entry, reason, "entry quarantined: it stopped matching on this node");
        let note = Note::new("node", Action::Quarantined, entry.to_string(), reason);
        self.set_disabled(entry, true, |_| vec![note])?;
        Ok(())
    }

    /// Stops (or resumes) matching an entry on this node only, with the
    /// audit records `audit` makes in the same batch.
    pub fn set_disabled(
        &self,
        entry: &EntryId,
        disabled: bool,
        audit: impl FnOnce(&Applied) -> Vec<Note>,
    ) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.store.set_disabled(entry, disabled, now_ms(), audit)?;
        self.update(&applied.deltas);
        Ok(applied)
    }

    fn update(&self, deltas: &[IndexDelta]) {
        if deltas.is_empty() {
            return;
        }
        self.indexes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(deltas);
    }
}
