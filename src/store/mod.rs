//! Everything sled: the node's hash database on disk.
//!
//! No other module touches sled. The store keeps hash sets, each set's
//! append-only log (contiguous sequence numbers, chained by BLAKE3 digests),
//! the current state of every entry (packed by entry number, found by id
//! through an in-memory map: see `entries.rs`), and the slots that address
//! PDQ codes in the in-memory index. The key layout is in [`keys`].
//!
//! **Why chunks.** sled's cost is per key, and a random key costs about
//! three times a sequential one and grows with the tree. Every bulk write
//! (an import, a sync) therefore touches a few sequential keys per
//! thousand entries: log records 64 per key, entry states 64 per key, PDQ
//! slots 256 per key. Measured on 1M entries: a sync went from 28k to
//! 150k entries/s when entry states moved from one random key per entry
//! id into chunks.
//!
//! **Atomicity.** Every change that touches several keys is one sled batch
//! on one tree, so after a crash an entry is either wholly present (log
//! record, state, slot) or wholly absent. Writes are
//! serialised by a mutex (one writer, as sled batches are not
//! read-modify-write transactions); reads never wait for it.
//!
//! **Index deltas.** The store does not own the match index; each write
//! returns the [`IndexDelta`]s that bring an index built from the old state
//! to the new one, and [`Store::matchable`] feeds a rebuild at start.

// The store is the one module that touches sled.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod audit;
mod backup;
mod disputes;
mod entries;
mod federation;
pub mod keys;
pub mod matches;
mod migrate;
pub mod raw;
mod slots;
mod snapshot;
mod state;
pub mod usage;
mod verify;
mod vetting;
mod write;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

pub use audit::Journal;
pub use backup::BackupSummary;
pub use disputes::{Dispute, DisputeView};
pub use federation::ReceivedFeedback;
pub use snapshot::SnapshotLoad;
pub use state::{SetState, StoredEntry};
pub use verify::VerifyReport;
pub use vetting::{Confirmed, PendingEntry, VettingRefusal};
pub use write::{Applied, Change, IndexDelta, Outcome};

use crate::model::audit::Note;
use crate::model::record::CodecError;
use crate::model::signed::Signer;
use crate::model::{EntryId, NameError, SetId, SetInfo, Signal, SignalType};
use state::{EntryState, NO_SLOT};

/// Milliseconds since the Unix epoch, for audit records of writes whose
/// own time is not the wall clock's (records applied with their origin's
/// times).
fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error("the store at {0} is in use by another process")]
    Locked(PathBuf),
    /// sled reported an error (I/O, corruption it detected).
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Bytes on disk that do not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The set does not exist.
    #[error("no set {0}")]
    UnknownSet(SetId),
    /// A set with this id exists with a different configuration.
    #[error("set {0} already exists with a different configuration")]
    SetExists(SetId),
    /// A received set's new configuration turns a block list into an
    /// allowlist or back: refused, because the change would silently turn
    /// other sets' hits off (or an allowlist's entries into hits) here.
    #[error("set {set} is a {was} list here; its origin's new configuration makes it an {now} list, which this node does not take (remove the set to receive it anew)")]
    KindChanged {
        /// The set.
        set: SetId,
        /// Its kind here.
        was: crate::model::SetKind,
        /// The kind the new configuration says.
        now: crate::model::SetKind,
    },
    /// The entry does not exist.
    #[error("no entry {0}")]
    UnknownEntry(EntryId),
    /// More than 2^32 - 2 PDQ entries or sets.
    #[error("the store is full ({0})")]
    Full(&'static str),
    /// A name or label was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A received set is changed only by records from its origin.
    #[error("set {set} is received from peer {peer}; only its origin can change it")]
    Received {
        /// The set.
        set: SetId,
        /// Where it comes from.
        peer: String,
    },
    /// A vetting step that the rules refuse.
    #[error(transparent)]
    Vetting(#[from] VettingRefusal),
    /// Records from a peer that do not continue the log as the origin
    /// signed it; nothing was written.
    #[error("records refused: {0}")]
    Rejected(String),
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The name of the store's one sled tree.
const TREE: &str = "hashfed";

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Bytes sled may use for its page cache. The match index holds what
    /// queries need in memory, so the cache only has to serve writes and the
    /// few reads per match.
    pub cache_bytes: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_bytes: 64 << 20,
        }
    }
}

/// Sets by id and by number, kept in memory (a node has few sets).
#[derive(Default)]
struct SetCache {
    by_id: HashMap<SetId, SetState>,
    by_no: HashMap<u32, SetId>,
}

/// The node's hash database.
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    /// Serialises writers; see the module docs.
    writer: Mutex<()>,
    sets: RwLock<SetCache>,
    /// Bumped by every write batch (persisted in the same batch); an index
    /// snapshot is valid only for the generation it was taken at.
    generation: AtomicU64,
    /// Signs this node's own sets (see [`federation`]).
    signer: RwLock<Option<Arc<Signer>>>,
    /// Entry numbers by id (see `entries.rs`); changed by writers after
    /// their batch has landed.
    ids: RwLock<entries::IdMap>,
    /// Whether the id map came from a current snapshot at open.
    ids_from_snapshot: bool,
    /// The last match call key handed out (see [`matches`]).
    match_keys: AtomicU64,
    /// The last match call key written.
    match_written: AtomicU64,
    /// Counts over the match records, once counted (see
    /// [`Store::match_counts`]); kept up to date by every write while the
    /// store's writer lock is held.
    match_totals: Mutex<Option<matches::MatchCounts>>,
}

/// Counts of what the store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Sets.
    pub sets: u64,
    /// Entries in any state.
    pub entries: u64,
    /// Entries that match (neither retracted nor disabled).
    pub matchable: u64,
    /// Log records over all sets.
    pub records: u64,
    /// Bytes on disk.
    pub disk_bytes: u64,
}

/// What the index needs to know about one matchable entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matchable {
    /// A PDQ code at a slot.
    Pdq {
        /// The slot.
        slot: u32,
        /// The code, as the index stores it.
        code: [u64; 4],
    },
    /// An exact value.
    Exact {
        /// The signal key ([`Signal::key`]).
        key: Vec<u8>,
        /// The entry.
        entry: EntryId,
    },
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// sled keeps its files in `dir/sled`; the index snapshot lives beside
    /// them.
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<Self, StoreError> {
        Ok(Self::open_with(dir, options, |_| Ok(()))?.0)
    }

    /// Opens the store like [`Store::open`], and runs `meanwhile` on it
    /// while the entry id map loads on another thread: the database builds
    /// its match index then (at 10M entries each takes seconds). Until
    /// `meanwhile` returns the store finds no entry by id.
    pub(crate) fn open_with<T: Send>(
        dir: &Path,
        options: &StoreOptions,
        meanwhile: impl FnOnce(&Store) -> Result<T, StoreError> + Send,
    ) -> Result<(Self, T), StoreError> {
        let started = std::time::Instant::now();
        let db = open_sled(dir, options)?;
        let tree = db.open_tree(TREE)?;
        let mut store = Store {
            db,
            tree,
            path: dir.to_owned(),
            writer: Mutex::new(()),
            sets: RwLock::new(SetCache::default()),
            generation: AtomicU64::new(0),
            signer: RwLock::new(None),
            ids: RwLock::new(entries::IdMap::default()),
            ids_from_snapshot: false,
            match_keys: AtomicU64::new(0),
            match_written: AtomicU64::new(0),
            match_totals: Mutex::new(None),
        };
        store.check_format()?;
        let last_match = store.last_match_key()?;
        store.match_keys.store(last_match, Ordering::SeqCst);
        store.match_written.store(last_match, Ordering::SeqCst);
        store
            .generation
            .store(store.counter(keys::GENERATION)?, Ordering::SeqCst);
        store.load_sets()?;
        let sled_s = started.elapsed().as_secs_f64();
        let (loaded, result) = std::thread::scope(|scope| {
            let loader = scope.spawn(|| store.load_ids());
            let result = meanwhile(&store);
            let loaded = loader.join().unwrap_or_else(|_| {
                Err(StoreError::Corrupt(
                    "loading the entry id map panicked".into(),
                ))
            });
            (loaded, result)
        });
        let (ids, from_snapshot) = loaded?;
        let result = result?;
        store.ids = RwLock::new(ids);
        store.ids_from_snapshot = from_snapshot;
        tracing::debug!(
            path = %dir.display(),
            sled_s,
            rest_s = started.elapsed().as_secs_f64() - sled_s,
            "store opened"
        );
        Ok((store, result))
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Marks a new store with the current layout; refuses a store written
    /// in another one rather than misreading it.
    fn check_format(&self) -> Result<(), StoreError> {
        match self.counter(keys::FORMAT)? {
            keys::CURRENT_FORMAT => Ok(()),
            2 => migrate::external_index(&self.tree),
            0 if self.tree.is_empty() => {
                self.tree
                    .insert(keys::FORMAT, &keys::CURRENT_FORMAT.to_be_bytes())?;
                Ok(())
            }
            found => Err(StoreError::Corrupt(format!(
                "the store at {} has layout {} (this hashfed reads layout {}): export its sets \
                 with the hashfed that wrote it and import them into a new store",
                self.path.display(),
                found.max(1),
                keys::CURRENT_FORMAT
            ))),
        }
    }

    /// Loads the id → entry number map: from the snapshot the last clean
    /// close wrote if nothing was written since, else from the entry chunks
    /// (seconds per million entries: sled reads every state).
    /// Also says whether the snapshot served.
    fn load_ids(&self) -> Result<(entries::IdMap, bool), StoreError> {
        if let Some(ids) = self.load_ids_snapshot()? {
            return Ok((ids, true));
        }
        let bound = self.counter(keys::NEXT_ENTRY)?;
        let mut ids = entries::IdMap::with_capacity(bound.min(1 << 30) as usize);
        for chunk in self.entry_chunks() {
            let (no, bytes) = chunk?;
            for (i, id, _) in entries::occupied(&bytes).map_err(|()| malformed_chunk(no))? {
                ids.insert(id, no * entries::PER_CHUNK + i as u32);
            }
        }
        Ok((ids, false))
    }

    /// Every entry chunk, in number order, with its number.
    fn entry_chunks(&self) -> impl Iterator<Item = Result<(u32, sled::IVec), StoreError>> + '_ {
        self.tree.scan_prefix([keys::ENTRY_CHUNK]).map(|kv| {
            let (k, v) = kv?;
            let no = keys::slot_of(&k)
                .filter(|_| k.len() == 5)
                .ok_or_else(|| StoreError::Corrupt("malformed entry chunk key".into()))?;
            Ok((no, v))
        })
    }

    fn load_sets(&self) -> Result<(), StoreError> {
        let mut cache = SetCache::default();
        for kv in self.tree.scan_prefix([keys::SET]) {
            let (_, value) = kv?;
            let state: SetState = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt(format!("set state: {e}")))?;
            cache.by_no.insert(state.no, state.info.id.clone());
            cache.by_id.insert(state.info.id.clone(), state);
        }
        *self.sets.write().unwrap_or_else(|p| p.into_inner()) = cache;
        Ok(())
    }

    /// Creates a set, or does nothing if it exists with the same
    /// configuration; a new set's audit records (`audit`) land with it.
    /// (Public for the store's own benchmark; the node creates sets
    /// through the database.)
    pub fn create_set(
        &self,
        info: SetInfo,
        now_ms: u64,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = self.set(&info.id) {
            return if existing.info == info {
                Ok(existing)
            } else {
                Err(StoreError::SetExists(info.id))
            };
        }
        let no = self.counter(keys::NEXT_SET)?;
        if no >= u64::from(u32::MAX) {
            return Err(StoreError::Full("sets"));
        }
        let state = SetState {
            head_digest: crate::signal::exact::to_hex(&crate::model::record::genesis_digest(
                &info.id,
            )),
            info,
            no: no as u32,
            head_seq: 0,
            matchable: 0,
            created_ms: now_ms,
            signed_info: None,
            upstream: None,
            suppressed: false,
        };
        let mut state = state;
        if let Some(signer) = self.signer_for(&state) {
            self.sign_info(&signer, &mut state)?;
        }
        let mut batch = sled::Batch::default();
        batch.insert(keys::NEXT_SET, &(no + 1).to_be_bytes());
        self.audit_into(&mut batch, now_ms, audit(&state))?;
        self.write_set(batch, &state)?;
        tracing::info!(set = %state.id(), "set created");
        Ok(state)
    }

    /// Applies `batch` with `state` as the set's new state and the
    /// generation bump, then makes the state current in memory.
    fn write_set(&self, mut batch: sled::Batch, state: &SetState) -> Result<(), StoreError> {
        batch.insert(keys::set(state.id().as_str()), set_bytes(state)?);
        let generation = self.next_generation(&mut batch);
        self.tree.apply_batch(batch)?;
        self.generation.store(generation, Ordering::SeqCst);
        self.cache_set(state.clone());
        Ok(())
    }

    fn cache_set(&self, state: SetState) {
        let mut cache = self.sets.write().unwrap_or_else(|p| p.into_inner());
        cache.by_no.insert(state.no, state.info.id.clone());
        cache.by_id.insert(state.info.id.clone(), state);
    }

    /// One set's state.
    pub fn set(&self, id: &SetId) -> Option<SetState> {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        cache.by_id.get(id).cloned()
    }

    /// Every set, by id.
    pub fn sets(&self) -> Vec<SetState> {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = cache.by_id.values().cloned().collect();
        all.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        all
    }

    /// A set's kind (block list or allowlist); cheap, for the match path.
    pub(crate) fn set_kind(&self, id: &SetId) -> Option<crate::model::SetKind> {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        cache.by_id.get(id).map(|s| s.info.kind)
    }

    /// Whether a set is switched off on this node (see
    /// [`SetState::suppressed`]); cheap, for the match path.
    pub(crate) fn is_suppressed(&self, id: &SetId) -> bool {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        cache.by_id.get(id).is_some_and(|s| s.suppressed)
    }

    /// Switches a set off (or back on) on this node: its entries stop (or
    /// resume) matching at once, its log keeps syncing, and nothing is sent
    /// to its origin. `audit` describes it, in the same batch.
    pub(crate) fn set_suppressed(
        &self,
        id: &SetId,
        suppressed: bool,
        audit: impl FnOnce(&SetState) -> Vec<Note>,
    ) -> Result<SetState, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut state = self
            .set(id)
            .ok_or_else(|| StoreError::UnknownSet(id.clone()))?;
        state.suppressed = suppressed;
        let mut batch = sled::Batch::default();
        self.audit_into(&mut batch, wall_ms(), audit(&state))?;
        self.write_set(batch, &state)?;
        Ok(state)
    }

    /// The largest PDQ threshold of any set (the default when there are
    /// none): the radius a query must search to serve every set.
    pub(crate) fn max_pdq_threshold(&self) -> u32 {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        cache
            .by_id
            .values()
            .map(|s| s.info.pdq_threshold())
            .max()
            .unwrap_or(crate::signal::pdq::DEFAULT_MATCH_THRESHOLD)
    }

    fn set_id_of(&self, no: u32) -> Result<SetId, StoreError> {
        let cache = self.sets.read().unwrap_or_else(|p| p.into_inner());
        cache
            .by_no
            .get(&no)
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("entry refers to unknown set number {no}")))
    }

    /// Adds the generation bump to a write batch; returns the new
    /// generation, to be published once the batch has landed.
    fn next_generation(&self, batch: &mut sled::Batch) -> u64 {
        let next = self.generation.load(Ordering::SeqCst) + 1;
        batch.insert(keys::GENERATION, &next.to_be_bytes());
        next
    }

    /// Whether the entry id map was read from a current snapshot at open
    /// (else a clean close should write one).
    pub fn ids_from_snapshot(&self) -> bool {
        self.ids_from_snapshot
    }

    /// Write batches applied so far (see the index snapshot).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// One past the highest PDQ slot ever handed out.
    pub(crate) fn slot_bound(&self) -> Result<u32, StoreError> {
        Ok(self.counter(keys::NEXT_SLOT)?.min(u64::from(u32::MAX)) as u32)
    }

    /// Reads a counter (0 if never written).
    fn counter(&self, key: &[u8]) -> Result<u64, StoreError> {
        Ok(match self.tree.get(key)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("counter is not 8 bytes".into()))?,
            ),
            None => 0,
        })
    }

    /// An entry's number and state.
    fn locate_entry(&self, id: &EntryId) -> Result<Option<(u32, EntryState)>, StoreError> {
        let Some(n) = self.ids.read().unwrap_or_else(|p| p.into_inner()).get(id) else {
            return Ok(None);
        };
        let (chunk, i) = entries::locate(n);
        let Some(bytes) = self.tree.get(keys::entry_chunk(chunk))? else {
            return Ok(None);
        };
        match entries::get(&bytes, i) {
            Some((held, state)) if held == *id => Ok(Some((n, EntryState::decode(state)?))),
            _ => Ok(None),
        }
    }

    fn entry_state(&self, id: &EntryId) -> Result<Option<EntryState>, StoreError> {
        Ok(self.locate_entry(id)?.map(|(_, state)| state))
    }

    /// One entry, in any state.
    pub fn entry(&self, id: &EntryId) -> Result<Option<StoredEntry>, StoreError> {
        match self.entry_state(id)? {
            Some(state) => Ok(Some(self.stored(*id, state)?)),
            None => Ok(None),
        }
    }

    fn stored(&self, id: EntryId, s: EntryState) -> Result<StoredEntry, StoreError> {
        Ok(StoredEntry {
            id,
            set: self.set_id_of(s.set_no)?,
            retracted: s.retracted,
            disabled: s.disabled,
            held: s.held,
            added_seq: s.added_seq,
            last_seq: s.last_seq,
            time_ms: s.time_ms,
            data: s.data,
        })
    }

    /// The entry whose PDQ code is at `slot`, if any.
    pub(crate) fn entry_at_slot(&self, slot: u32) -> Result<Option<EntryId>, StoreError> {
        let (chunk, i) = slots::locate(slot);
        Ok(self
            .tree
            .get(keys::slot_chunk(chunk))?
            .and_then(|bytes| slots::get(&bytes, i))
            .map(|(id, _)| id))
    }

    /// Matchable entries with exactly this value, in any set. Entry ids
    /// derive from set and value, so this is one read per set.
    pub fn entries_with_value(&self, signal: &Signal) -> Result<Vec<EntryId>, StoreError> {
        let mut out = Vec::new();
        for set in self.sets() {
            let id = EntryId::derive(set.id(), signal);
            if self.entry_state(&id)?.is_some_and(|s| s.matchable()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Every entry (of one set, or of all), in the order they were first
    /// added to this store.
    pub fn entries(
        &self,
        set: Option<&SetId>,
    ) -> Result<impl Iterator<Item = Result<StoredEntry, StoreError>> + '_, StoreError> {
        let set_no = match set {
            Some(id) => Some(
                self.set(id)
                    .ok_or_else(|| StoreError::UnknownSet(id.clone()))?
                    .no,
            ),
            None => None,
        };
        Ok(self.entry_states().filter_map(move |item| {
            let result = item.and_then(|(id, state)| {
                if set_no.is_some_and(|no| no != state.set_no) {
                    return Ok(None);
                }
                self.stored(id, state).map(Some)
            });
            result.transpose()
        }))
    }

    /// Every entry's id and state, in entry number order.
    fn entry_states(&self) -> impl Iterator<Item = Result<(EntryId, EntryState), StoreError>> + '_ {
        self.entry_chunks().flat_map(|chunk| -> EntryStates {
            let decoded = chunk.and_then(|(no, bytes)| {
                entries::occupied(&bytes)
                    .map_err(|()| malformed_chunk(no))?
                    .into_iter()
                    .map(|(_, id, state)| Ok((id, EntryState::decode(state)?)))
                    .collect::<Result<Vec<_>, StoreError>>()
            });
            match decoded {
                Ok(states) => Box::new(states.into_iter().map(Ok)),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        })
    }

    /// A set's log records after `after_seq`, in order, as canonical bytes.
    pub fn log(
        &self,
        set: &SetId,
        after_seq: u64,
    ) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), StoreError>> + '_, StoreError> {
        let state = self
            .set(set)
            .ok_or_else(|| StoreError::UnknownSet(set.clone()))?;
        let (first_chunk, _) = keys::log_chunk_of(after_seq.saturating_add(1));
        let start = keys::log_chunk(state.no, first_chunk);
        let end = keys::prefix_end(&keys::log_prefix(state.no)).unwrap_or_default();
        Ok(self
            .tree
            .range(start.to_vec()..end)
            .flat_map(move |kv| -> LogRecords {
                let unpacked = kv.map_err(StoreError::from).and_then(|(k, v)| {
                    let chunk = keys::seq_of(&k)
                        .ok_or_else(|| StoreError::Corrupt("short log key".into()))?;
                    unpack_log_chunk(chunk, &v)
                });
                match unpacked {
                    Ok(records) => Box::new(
                        records
                            .into_iter()
                            .filter(move |(seq, _)| *seq > after_seq)
                            .map(Ok),
                    ),
                    Err(e) => Box::new(std::iter::once(Err(e))),
                }
            }))
    }

    /// Everything the match index holds, for a rebuild at start: PDQ slots
    /// (read a chunk at a time) then exact values (from the entry states).
    pub fn matchable(&self) -> impl Iterator<Item = Result<Matchable, StoreError>> + '_ {
        let pdq = self.tree.scan_prefix([keys::SLOT_CHUNK]).flat_map(
            |kv| -> Box<dyn Iterator<Item = Result<Matchable, StoreError>>> {
                let chunk = kv.map_err(StoreError::from).and_then(|(k, v)| {
                    let no = keys::slot_of(&k)
                        .filter(|_| v.len() == slots::CHUNK_BYTES)
                        .ok_or_else(|| StoreError::Corrupt("malformed slot chunk".into()))?;
                    Ok((no, v))
                });
                match chunk {
                    Err(e) => Box::new(std::iter::once(Err(e))),
                    Ok((no, bytes)) => {
                        let found: Vec<_> = slots::occupied(&bytes)
                            .map(|(i, _, code)| {
                                Ok(Matchable::Pdq {
                                    slot: no * slots::PER_CHUNK + i as u32,
                                    code: crate::signal::pdq::PdqHash::from_bytes(code).to_words(),
                                })
                            })
                            .collect();
                        Box::new(found.into_iter())
                    }
                }
            },
        );
        let exact = self.entry_states().filter_map(|item| match item {
            Ok((id, s)) if s.matchable() && s.data.signal.kind() != &SignalType::Pdq => {
                Some(Ok(Matchable::Exact {
                    key: s.data.signal.key(),
                    entry: id,
                }))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        });
        pdq.chain(exact)
    }

    /// Counts of what the store holds.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let sets = self.sets();
        let entries = self.ids.read().unwrap_or_else(|p| p.into_inner()).len() as u64;
        Ok(StoreStats {
            sets: sets.len() as u64,
            entries,
            matchable: sets.iter().map(|s| s.matchable).sum(),
            records: sets.iter().map(|s| s.head_seq).sum(),
            disk_bytes: self.db.size_on_disk()?,
        })
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// Some of a log's records, or the error that stopped reading them.
type LogRecords = Box<dyn Iterator<Item = Result<(u64, Vec<u8>), StoreError>>>;

/// The entries of one chunk, or the error that stopped reading them.
type EntryStates = Box<dyn Iterator<Item = Result<(EntryId, EntryState), StoreError>>>;

fn malformed_chunk(no: u32) -> StoreError {
    StoreError::Corrupt(format!("entry chunk {no} is malformed"))
}

/// The records of log chunk `chunk`, with their sequence numbers.
fn unpack_log_chunk(chunk: u64, bytes: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let mut rest = bytes;
    let first = chunk * keys::LOG_CHUNK + 1;
    while !rest.is_empty() {
        let len = rest
            .get(..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| StoreError::Corrupt(format!("log chunk {chunk} is truncated")))?;
        let record = rest
            .get(4..4 + len)
            .ok_or_else(|| StoreError::Corrupt(format!("log chunk {chunk} is truncated")))?;
        if out.len() as u64 >= keys::LOG_CHUNK {
            return Err(StoreError::Corrupt(format!(
                "log chunk {chunk} holds more than {} records",
                keys::LOG_CHUNK
            )));
        }
        out.push((first + out.len() as u64, record.to_vec()));
        rest = &rest[4 + len..];
    }
    Ok(out)
}

/// How long [`open_sled`] waits for a lock that is about to be released.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens sled in `dir/sled`, waiting up to [`LOCK_GRACE`] for its file
/// lock. Why wait: sled releases the lock when its last background I/O
/// task ends, which can be a moment after the previous owner dropped it
/// (seen when a CLI command follows another at once); a store held by a
/// running node stays locked and is reported as such.
fn open_sled(dir: &Path, options: &StoreOptions) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open();
        let locked = match &opened {
            Err(sled::Error::Io(io)) => {
                io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock")
            }
            _ => false,
        };
        match opened {
            Ok(db) => return Ok(db),
            Err(_) if locked && started.elapsed() < LOCK_GRACE => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(_) if locked => return Err(StoreError::Locked(dir.to_owned())),
            Err(other) => return Err(StoreError::Sled(other)),
        }
    }
}

fn set_bytes(state: &SetState) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(state).map_err(|e| StoreError::Corrupt(format!("set state: {e}")))
}

/// Whether a slot number is usable.
fn valid_slot(slot: u32) -> bool {
    slot != NO_SLOT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_in_another_layout_is_refused_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        {
            // What hashfed before layout 2 left: keys, and no layout mark.
            let db = sled::open(dir.path().join("sled")).unwrap();
            let tree = db.open_tree("hashfed").unwrap();
            tree.insert(b"e0123456789abcdef", &b"old"[..]).unwrap();
            db.flush().unwrap();
        }
        let err = Store::open(dir.path(), &StoreOptions::default())
            .err()
            .expect("opened a layout-1 store");
        assert!(err.to_string().contains("has layout 1"), "{err}");
        // A new store is marked, and opens again.
        let fresh = tempfile::tempdir().unwrap();
        drop(Store::open(fresh.path(), &StoreOptions::default()).unwrap());
        let store = Store::open(fresh.path(), &StoreOptions::default()).unwrap();
        assert_eq!(store.counter(keys::FORMAT).unwrap(), keys::CURRENT_FORMAT);
    }
}
