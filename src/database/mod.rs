//! The node's hash database as the rest of the node uses it: the persistent
//! [`Store`] plus the in-memory match indexes, kept in step.
//!
//! The store is the truth; the indexes are derived from it, rebuilt when
//! the database opens and then updated with the [`IndexDelta`]s each write
//! returns, so a change matches (or stops matching) as soon as the write
//! that made it has landed.

mod matching;

use std::path::Path;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use matching::{Match, MatchError, PdqQuery};

use crate::index::exact::ExactIndex;
use crate::index::pdq::PdqIndex;
use crate::model::{EntryId, SetId, SetInfo};
use crate::store::{
    Applied, Change, IndexDelta, Matchable, SetState, Store, StoreError, StoreOptions,
};

/// The in-memory indexes.
pub struct Indexes {
    /// PDQ codes by slot.
    pub pdq: PdqIndex,
    /// Exact values.
    pub exact: ExactIndex,
}

impl Indexes {
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
    store: Store,
    indexes: RwLock<Indexes>,
    /// Held across a store write and its index update, so that deltas reach
    /// the index in the order the store applied them (a slot freed by one
    /// write may be reused by the next).
    writer: Mutex<()>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Database {
    /// Opens the store in `dir` and builds the indexes from it.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        let started = Instant::now();
        let store = Store::open(dir, options)?;
        let expected: u64 = store.sets().iter().map(|s| s.matchable).sum();
        let mut indexes = Indexes {
            pdq: PdqIndex::with_expected_len(expected as usize),
            exact: ExactIndex::new(),
        };
        for item in store.matchable() {
            match item? {
                Matchable::Pdq { slot, code } => indexes.pdq.insert(slot, code),
                Matchable::Exact { key, entry } => indexes.exact.insert(&key, entry),
            }
        }
        tracing::info!(
            pdq = indexes.pdq.len(),
            exact = indexes.exact.len(),
            seconds = started.elapsed().as_secs_f64(),
            "database opened, indexes built"
        );
        Ok(Database {
            store,
            indexes: RwLock::new(indexes),
            writer: Mutex::new(()),
        })
    }

    /// The store underneath (reads; writes go through the database so the
    /// indexes follow).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Read access to the indexes (benchmarks, statistics).
    pub fn indexes(&self) -> RwLockReadGuard<'_, Indexes> {
        self.indexes.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a set (idempotent for an identical configuration).
    pub fn create_set(&self, info: SetInfo) -> Result<SetState, StoreError> {
        self.store.create_set(info, now_ms())
    }

    /// Applies `changes` to `set` atomically and updates the indexes.
    pub fn apply(&self, set: &SetId, changes: &[Change]) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.store.append(set, changes, now_ms())?;
        self.update(&applied.deltas);
        Ok(applied)
    }

    /// Stops (or resumes) matching an entry on this node only.
    pub fn set_disabled(&self, entry: &EntryId, disabled: bool) -> Result<Applied, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let applied = self.store.set_disabled(entry, disabled, now_ms())?;
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
