//! Match records: what the node keeps when it answers a local service with
//! a hit, and the feedback given on it.
//!
//! **Data minimisation.** A record holds what reporting and feedback need
//! (which entry matched, when, how close, which caller) and never the
//! query's hash or anything else the caller sent: the matched entry's own
//! hash is in the set already. Queries that match nothing leave no trace.
//!
//! Records live under their own key prefixes and do not touch the store's
//! generation: they are not part of any set's log and do not change what
//! matches, so writing one leaves the index snapshot valid.
//!
//! **Layout.** Each call gets a call key that only grows: the time it was
//! answered, shifted left 16 bits, made unique by counting up. A match id
//! is the call key, the record's place in the call and a random tag:
//! unguessable, yet found with one range read. The records of all calls
//! written in one batch are packed into one value (see `packed.rs`) under
//! the first call's key; calls are written in the order their keys were
//! handed out, so a call lives under the greatest key not above its own.
//! Feedback, given later, lives under its match id in a key of its own, so
//! records are written once and never rewritten (they are evidence), and
//! retention deletes key ranges instead of reading every record.
//!
//! Stores written before this layout keep their records as one JSON value
//! per random id under `r` (feedback inside the record); those are still
//! read, counted, given feedback and expired.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

mod packed;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::usage::{self, Counter, Increments};
use super::{keys, Store, StoreError};
use crate::model::audit::Note;
use crate::model::{EntryId, SetId};

/// Length of a match id.
pub const MATCH_ID_LEN: usize = 16;

/// Length of the random part of a match id.
const TAG_LEN: usize = 6;

/// Identifies a match record: the key of its call's records (8 bytes,
/// time-ordered), its place among them (2) and a random tag (6). The tag
/// is checked on every lookup, so knowing one's own ids does not give
/// away another caller's (2^48 guesses per record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatchId(pub [u8; MATCH_ID_LEN]);

impl MatchId {
    fn new(key: u64, index: u16, tag: [u8; TAG_LEN]) -> Self {
        let mut id = [0; MATCH_ID_LEN];
        id[..8].copy_from_slice(&key.to_be_bytes());
        id[8..10].copy_from_slice(&index.to_be_bytes());
        id[10..].copy_from_slice(&tag);
        MatchId(id)
    }

    fn key(&self) -> u64 {
        let mut k = [0; 8];
        k.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(k)
    }

    fn index(&self) -> usize {
        usize::from(u16::from_be_bytes([self.0[8], self.0[9]]))
    }

    fn tag(&self) -> &[u8] {
        &self.0[10..]
    }
}

impl std::fmt::Display for MatchId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::signal::exact::to_hex(&self.0))
    }
}

impl std::str::FromStr for MatchId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::model::signal::decode_hex(s)
            .and_then(|bytes| <[u8; MATCH_ID_LEN]>::try_from(bytes).ok())
            .map(MatchId)
            .ok_or_else(|| format!("a match id is {} hex digits", MATCH_ID_LEN * 2))
    }
}

// The verdict is feedback vocabulary (`model::feedback`); match records use
// it, and it stays reachable here for callers of `store::matches::Verdict`.
pub use crate::model::Verdict;

/// Feedback on one match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feedback {
    /// The verdict.
    pub verdict: Verdict,
    /// A reason code (see `FeedbackReason` in the match service's proto).
    pub reason: String,
    /// When it was given, ms since the epoch.
    pub time_ms: u64,
}

/// One answered match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchRecord {
    /// The entry that matched.
    pub entry: EntryId,
    /// Its set.
    pub set: SetId,
    /// The signal type's name (`pdq`, `md5`, ...).
    pub signal_type: String,
    /// Hamming distance for PDQ, 0 for exact types.
    pub distance: u32,
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// The caller: its certificate's fingerprint, or `local-socket`.
    pub client: String,
    /// Feedback, once given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Feedback>,
}

/// Counts over the match records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchCounts {
    /// Records.
    pub matches: u64,
    /// Feedback: confirmed.
    pub confirmed: u64,
    /// Feedback: false positive.
    pub false_positive: u64,
}

impl MatchCounts {
    fn add_verdict(&mut self, verdict: Option<Verdict>) {
        match verdict {
            Some(Verdict::Confirmed) => self.confirmed += 1,
            Some(Verdict::FalsePositive) => self.false_positive += 1,
            None => {}
        }
    }
}

/// One call's records with their ids reserved (see
/// `Store::reserve_matches`): the ids are final before the records are
/// written.
#[derive(Debug)]
pub struct ReservedMatches {
    /// The key of the first [`packed::MAX_RECORDS`] records; the next
    /// ones (a call with more hits) take the keys after it.
    first: u64,
    records: Vec<([u8; TAG_LEN], MatchRecord)>,
}

impl ReservedMatches {
    /// The last call key it takes.
    fn last(&self) -> u64 {
        let parts = self.records.len().div_ceil(packed::MAX_RECORDS).max(1);
        self.first.saturating_add(parts as u64 - 1)
    }

    /// The records' ids, in order.
    pub fn ids(&self) -> Vec<MatchId> {
        self.records
            .iter()
            .enumerate()
            .map(|(i, (tag, _))| {
                let (part, index) = (i / packed::MAX_RECORDS, i % packed::MAX_RECORDS);
                MatchId::new(self.first + part as u64, index as u16, *tag)
            })
            .collect()
    }

    /// How many records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// `R` + the first call key of a batch.
fn packed_key(key: u64) -> [u8; 9] {
    let mut k = [keys::MATCHES; 9];
    k[1..].copy_from_slice(&key.to_be_bytes());
    k
}

/// `g` + match id.
fn feedback_key(id: &MatchId) -> [u8; 1 + MATCH_ID_LEN] {
    let mut k = [keys::MATCH_FEEDBACK; 1 + MATCH_ID_LEN];
    k[1..].copy_from_slice(&id.0);
    k
}

/// `r` + match id: a record of the layout before [`packed`].
fn legacy_key(id: &MatchId) -> [u8; 1 + MATCH_ID_LEN] {
    let mut k = [keys::MATCH; 1 + MATCH_ID_LEN];
    k[1..].copy_from_slice(&id.0);
    k
}

/// A key and its value, to write.
type KeyValue = (Vec<u8>, Vec<u8>);

fn encode_json<T: Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn decode_json<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Where a record was found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    Packed,
    Legacy,
}

/// The record `id` names, from the value of its call's batch and (for old
/// stores) its legacy key; `None` if neither holds it with its tag.
fn resolve(
    id: &MatchId,
    packed_value: Option<&[u8]>,
    legacy_value: Option<&[u8]>,
) -> Result<Option<(MatchRecord, Layout)>, StoreError> {
    if let Some(bytes) = packed_value {
        if let Some((tag, record)) = packed::Value::read(bytes)?.get(id.key(), id.index())? {
            if tag[..] == *id.tag() {
                return Ok(Some((record, Layout::Packed)));
            }
        }
    }
    legacy_value
        .map(|bytes| Ok((decode_json("match record", bytes)?, Layout::Legacy)))
        .transpose()
}

/// Records packed into one value, unless one call has more: about 5 KB.
/// Measured with `hashfed-bench records --n 10000000`: resident memory
/// stays flat at 64 or 128 (155 MiB at 10M records), and grows with
/// every record at 512 (+47 B) and at 4096 (+48 B; sled keeps large
/// values' pages in memory).
const VALUE_RECORDS: usize = 128;

/// The call key in an `R` key.
fn key_of(k: &[u8]) -> Result<u64, StoreError> {
    k.get(1..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt("a match records key of the wrong length".into()))
}

/// The call key after `last` for a call answered at `time_ms`.
fn next_key(last: u64, time_ms: u64) -> u64 {
    (time_ms << 16).max(last.saturating_add(1))
}

/// Why feedback was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// No such match.
    #[error("no match {0}")]
    UnknownMatch(MatchId),
    /// Feedback was given already (records are evidence: never rewritten).
    #[error("feedback on match {0} was already given")]
    AlreadyGiven(MatchId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The last call key written, read at open so that keys keep growing
    /// across restarts even if the clock went back.
    pub(super) fn last_match_key(&self) -> Result<u64, StoreError> {
        match self.tree.scan_prefix([keys::MATCHES]).next_back() {
            Some(kv) => {
                let (k, v) = kv?;
                let first = key_of(&k)?;
                Ok(packed::Value::read(&v)?
                    .last_key()
                    .unwrap_or(first)
                    .max(first))
            }
            None => Ok(0),
        }
    }

    /// The key of the batch that holds call `key`, if any: the greatest
    /// not above it.
    fn batch_of(&self, key: u64) -> Result<Option<[u8; 9]>, StoreError> {
        match self.tree.range(packed_key(0)..=packed_key(key)).next_back() {
            Some(kv) => Ok(Some(packed_key(key_of(&kv?.0)?))),
            None => Ok(None),
        }
    }

    /// Gives one call's records their ids (no I/O): a fresh call key, each
    /// record's place under it and a random tag. Write them with
    /// `Store::record_matches`, in the order they were reserved.
    pub(crate) fn reserve_matches(&self, records: Vec<MatchRecord>) -> ReservedMatches {
        use rand_core::{OsRng, RngCore};
        let parts = records.len().div_ceil(packed::MAX_RECORDS).max(1) as u64;
        let now = records.iter().map(|r| r.time_ms).max().unwrap_or(0);
        let mut first = 0;
        // Never fails: the closure always returns Some.
        let _ = self
            .match_keys
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                first = next_key(last, now);
                Some(first.saturating_add(parts - 1))
            });
        let mut tags = vec![0u8; records.len() * TAG_LEN];
        OsRng.fill_bytes(&mut tags);
        let records = records
            .into_iter()
            .zip(tags.chunks_exact(TAG_LEN))
            .map(|(record, tag)| {
                let mut t = [0; TAG_LEN];
                t.copy_from_slice(tag);
                (t, record)
            })
            .collect();
        ReservedMatches { first, records }
    }

    /// Writes reserved calls' records as one value, and adds them to the
    /// day's counts (one batch).
    ///
    /// Calls must come in the order they were reserved, after every call
    /// written before: a call is found under the greatest batch key not
    /// above its own. Anything else is refused, and nothing is written.
    pub(crate) fn record_matches(&self, calls: &[ReservedMatches]) -> Result<(), StoreError> {
        if calls.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        let mut by_day: BTreeMap<u32, Increments> = BTreeMap::new();
        for call in calls {
            for (_, record) in &call.records {
                let counts = by_day.entry(usage::day_of(record.time_ms)).or_default();
                let k = (
                    Counter::Matches,
                    Some(record.set.clone()),
                    record.signal_type.clone(),
                );
                *counts.entry(k).or_default() += 1;
            }
        }
        let mut start = 0;
        while start < calls.len() {
            let mut end = start + 1;
            let mut records = calls[start].len();
            while end < calls.len() && records + calls[end].len() <= VALUE_RECORDS {
                records += calls[end].len();
                end += 1;
            }
            let group = &calls[start..end];
            batch.insert(&packed_key(group[0].first)[..], packed::encode(group)?);
            start = end;
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut last = self.match_written.load(Ordering::SeqCst);
        for call in calls {
            if call.first <= last {
                return Err(StoreError::Corrupt(
                    "match records written out of the order their ids were given".into(),
                ));
            }
            last = call.last();
        }
        for (day, counts) in &by_day {
            self.usage_into(&mut batch, *day, counts)?;
        }
        self.tree.apply_batch(batch)?;
        self.match_written.store(last, Ordering::SeqCst);
        if let Some(totals) = self.totals().as_mut() {
            totals.matches += calls.iter().map(|c| c.len() as u64).sum::<u64>();
        }
        Ok(())
    }

    /// The record of a match, with its feedback if given.
    pub fn match_record(&self, id: &MatchId) -> Result<Option<MatchRecord>, StoreError> {
        let packed_value = match self.batch_of(id.key())? {
            Some(k) => self.tree.get(k)?,
            None => None,
        };
        let legacy_value = self.tree.get(legacy_key(id))?;
        let Some((mut record, layout)) =
            resolve(id, packed_value.as_deref(), legacy_value.as_deref())?
        else {
            return Ok(None);
        };
        if layout == Layout::Legacy {
            return Ok(Some(record));
        }
        if let Some(bytes) = self.tree.get(feedback_key(id))? {
            record.feedback = Some(decode_json("feedback", &bytes)?);
        }
        Ok(Some(record))
    }

    /// Attaches feedback to a match; refused if some was given already.
    ///
    /// If the entry's set was received from a peer, the feedback is also
    /// queued (signed by this node) to travel back toward the set's origin,
    /// in the same transaction: it is either given and queued, or neither.
    pub(crate) fn give_feedback(
        &self,
        id: &MatchId,
        feedback: Feedback,
    ) -> Result<MatchRecord, FeedbackError> {
        use sled::transaction::{ConflictableTransactionError as Tx, TransactionError};
        // Batches are never rewritten, so the one found here is the one to
        // read in the transaction (which sees it deleted, if it was).
        let packed_k = self.batch_of(id.key())?;
        let (legacy_k, feedback_k) = (legacy_key(id), feedback_key(id));
        // The writer lock keeps the day's counts (also written by batches
        // under it) and the totals exact.
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        // A verdict on an entry an exchange brought goes back to its
        // service: queued in the transaction that keeps it.
        let outgoing = self.exchange_feedback(id, &feedback)?;
        let result = self.tree.transaction(|tx| {
            let packed_value = match packed_k {
                Some(k) => tx.get(k)?,
                None => None,
            };
            let legacy_value = tx.get(legacy_k)?;
            let (mut record, layout) =
                resolve(id, packed_value.as_deref(), legacy_value.as_deref())
                    .map_err(|e| Tx::Abort(e.into()))?
                    .ok_or(Tx::Abort(FeedbackError::UnknownMatch(*id)))?;
            let given = match layout {
                Layout::Packed => tx.get(feedback_k)?.is_some(),
                Layout::Legacy => record.feedback.is_some(),
            };
            if given {
                return Err(Tx::Abort(FeedbackError::AlreadyGiven(*id)));
            }
            record.feedback = Some(feedback.clone());
            let (key, value) = match layout {
                Layout::Packed => (&feedback_k[..], encode_json("feedback", &feedback)),
                // Old layout: the feedback goes into the record, as before.
                Layout::Legacy => (&legacy_k[..], encode_json("match record", &record)),
            };
            tx.insert(key, value.map_err(|e| Tx::Abort(e.into()))?)?;
            let counter = match feedback.verdict {
                Verdict::Confirmed => Counter::Confirmed,
                Verdict::FalsePositive => Counter::FalsePositive,
            };
            let count = usage::key(
                usage::day_of(feedback.time_ms),
                counter,
                Some(&record.set),
                &record.signal_type,
            );
            let old = tx.get(&count)?;
            tx.insert(count, &usage::plus(old.as_deref(), 1)[..])?;
            if let Some((key, value)) = &outgoing {
                tx.insert(&key[..], &value[..])?;
            }
            if let Some(note) = self.note_for_origin(&record) {
                let (key, value) = super::federation::outbox_item(&note, &id.0)
                    .map_err(|e| Tx::Abort(e.into()))?;
                tx.insert(key, value)?;
            }
            Ok(record)
        });
        match result {
            Ok(record) => {
                if let Some(totals) = self.totals().as_mut() {
                    totals.add_verdict(Some(feedback.verdict));
                }
                Ok(record)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::from(e).into()),
        }
    }

    /// The outbox item for `feedback` on match `id`, if the match is of an
    /// entry of this node's own set that an exchange brought (its external
    /// id says which service: `model::exchange::EXTERNAL_PREFIXES`).
    fn exchange_feedback(
        &self,
        id: &MatchId,
        feedback: &Feedback,
    ) -> Result<Option<KeyValue>, StoreError> {
        let Some(record) = self.match_record(id)? else {
            return Ok(None);
        };
        if self.set(&record.set).is_none_or(|s| s.upstream.is_some()) {
            return Ok(None);
        }
        let Some(entry) = self.entry(&record.entry)? else {
            return Ok(None);
        };
        let Some(external_id) = entry.data.external_id.clone().filter(|ext| {
            crate::model::exchange::EXTERNAL_PREFIXES
                .iter()
                .any(|p| ext.starts_with(p))
        }) else {
            return Ok(None);
        };
        let out = crate::model::exchange::FeedbackOut {
            set: record.set.clone(),
            external_id,
            signal_type: entry.data.signal.kind().name().to_owned(),
            value: entry.data.signal.value_hex(),
            verdict: feedback.verdict,
            reason: feedback.reason.clone(),
            time_ms: feedback.time_ms,
        };
        let value = encode_json("exchange feedback", &out)?;
        Ok(Some((
            keys::exchange_outbox(record.set.as_str(), &id.0),
            value,
        )))
    }

    /// Verdicts waiting for `set`'s service, oldest match first, at most
    /// `limit`, with their keys (for `Store::exchange_feedback_sent`).
    pub fn exchange_outbox(
        &self,
        set: &SetId,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, crate::model::exchange::FeedbackOut)>, StoreError> {
        let mut out = Vec::new();
        for kv in self
            .tree
            .scan_prefix(keys::exchange_outbox_prefix(set.as_str()))
            .take(limit)
        {
            let (k, v) = kv?;
            out.push((k.to_vec(), decode_json("exchange feedback", &v)?));
        }
        Ok(out)
    }

    /// Removes a verdict its service took (or refused for good), changes
    /// exchange `name`'s state (`update`, under the writer lock), and
    /// writes `notes`, in one batch.
    pub(crate) fn exchange_feedback_sent(
        &self,
        key: &[u8],
        name: &str,
        update: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
        notes: Vec<Note>,
    ) -> Result<(), StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let state_key = keys::exchange(name);
        let state = update(self.tree.get(&state_key)?.as_deref());
        let mut batch = sled::Batch::default();
        batch.remove(key);
        batch.insert(state_key, state);
        self.audit_into(&mut batch, super::wall_ms(), notes)?;
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Deletes the records of calls answered before `before_ms`
    /// (retention), with their feedback; the day's counts keep their
    /// figures. Returns how many records.
    ///
    /// Batches are found by key range, reading only their headers; a batch
    /// goes once its last call is old enough. Records of the old layout
    /// are read one by one.
    pub fn expire_matches(&self, before_ms: u64) -> Result<u64, StoreError> {
        let bound = before_ms.saturating_mul(1 << 16);
        let mut old = Vec::new();
        let mut records = 0u64;
        // Call keys below `kept` are gone with their batches.
        let mut kept = bound;
        for kv in self.tree.range(packed_key(0)..packed_key(bound)) {
            let (k, v) = kv?;
            let value = packed::Value::read(&v)?;
            if value.last_key().unwrap_or(0) >= bound {
                kept = key_of(&k)?;
                break;
            }
            records += value.len() as u64;
            old.push(k);
        }
        let mut end = [keys::MATCH_FEEDBACK; 9];
        end[1..].copy_from_slice(&kept.to_be_bytes());
        for kv in self.tree.range(&[keys::MATCH_FEEDBACK][..]..&end[..]) {
            old.push(kv?.0);
        }
        for kv in self.tree.scan_prefix([keys::MATCH]) {
            let (k, v) = kv?;
            if decode_json::<MatchRecord>("match record", &v)?.time_ms < before_ms {
                records += 1;
                old.push(k);
            }
        }
        for chunk in old.chunks(4096) {
            let mut batch = sled::Batch::default();
            for k in chunk {
                batch.remove(k.clone());
            }
            let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.tree.apply_batch(batch)?;
            // Counted again when next asked.
            *self.totals() = None;
        }
        Ok(records)
    }

    /// Counts matches and feedback. The first call after open (or after
    /// an expiry) reads each batch's header and each feedback, with writers
    /// held off; later calls cost nothing.
    pub fn match_counts(&self) -> Result<MatchCounts, StoreError> {
        if let Some(totals) = self.totals().as_ref() {
            return Ok(totals.clone());
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let counts = self.count_matches()?;
        *self.totals() = Some(counts.clone());
        Ok(counts)
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Option<MatchCounts>> {
        self.match_totals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Walks the records and the feedback.
    fn count_matches(&self) -> Result<MatchCounts, StoreError> {
        let mut counts = MatchCounts::default();
        for kv in self.tree.scan_prefix([keys::MATCH_FEEDBACK]) {
            let (_, v) = kv?;
            counts.add_verdict(Some(decode_json::<Feedback>("feedback", &v)?.verdict));
        }
        for kv in self.tree.scan_prefix([keys::MATCH]) {
            let (_, v) = kv?;
            let record: MatchRecord = decode_json("match record", &v)?;
            counts.add_verdict(record.feedback.map(|f| f.verdict));
            counts.matches += 1;
        }
        for kv in self.tree.scan_prefix([keys::MATCHES]) {
            let (_, v) = kv?;
            counts.matches += packed::Value::read(&v)?.len() as u64;
        }
        Ok(counts)
    }

    /// Every key and value in the store, in key order. For audits: the
    /// data-minimisation test proves with it that queries leave no trace.
    pub fn raw_scan(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.tree.iter().map(|kv| {
            kv.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StoreError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn record(time_ms: u64, set: &str, client: &str) -> MatchRecord {
        MatchRecord {
            entry: "00112233445566778899aabbccddeeff".parse().unwrap(),
            set: set.parse().unwrap(),
            signal_type: "pdq".into(),
            distance: 4,
            time_ms,
            client: client.into(),
            feedback: None,
        }
    }

    fn write(store: &Store, records: Vec<MatchRecord>) -> Vec<MatchId> {
        let call = store.reserve_matches(records);
        let ids = call.ids();
        store.record_matches(&[call]).unwrap();
        ids
    }

    fn feedback(verdict: Verdict) -> Feedback {
        Feedback {
            verdict,
            reason: "reviewed".into(),
            time_ms: 5,
        }
    }

    fn r_again() -> MatchRecord {
        record(3, "hotline-a/csam", "local-socket")
    }

    #[test]
    fn feedback_once_per_match() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let r = record(1, "hotline-a/csam", "local-socket");
        let ids = write(&store, vec![r.clone()]);
        assert_eq!(store.match_record(&ids[0]).unwrap(), Some(r));
        let fb = Feedback {
            verdict: Verdict::FalsePositive,
            reason: "benign_collision".into(),
            time_ms: 2,
        };
        store.give_feedback(&ids[0], fb.clone()).unwrap();
        assert_eq!(
            store.match_record(&ids[0]).unwrap().unwrap().feedback,
            Some(fb.clone())
        );
        assert!(matches!(
            store.give_feedback(&ids[0], fb),
            Err(FeedbackError::AlreadyGiven(_))
        ));
        let unknown = MatchId([7; MATCH_ID_LEN]);
        assert!(matches!(
            store.give_feedback(&unknown, feedback(Verdict::Confirmed)),
            Err(FeedbackError::UnknownMatch(_))
        ));
        assert_eq!(
            store.match_counts().unwrap(),
            MatchCounts {
                matches: 1,
                confirmed: 0,
                false_positive: 1
            }
        );
        write(&store, vec![r_again(); 2]);
        store
            .give_feedback(
                &write(&store, vec![r_again()])[0],
                feedback(Verdict::Confirmed),
            )
            .unwrap();
        assert_eq!(
            store.match_counts().unwrap(),
            store.count_matches().unwrap()
        );
        assert_eq!(store.match_counts().unwrap().matches, 4);
        assert_eq!(ids[0].to_string().parse::<MatchId>().unwrap(), ids[0]);
        assert!("xyz".parse::<MatchId>().is_err());
    }

    #[test]
    fn calls_written_together_share_one_key_and_each_record_is_found_by_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let mut calls = Vec::new();
        let mut expected = Vec::new();
        for batch in 0..3u64 {
            let reserved: Vec<ReservedMatches> = (0..5u64)
                .map(|c| {
                    let n = (batch * 5 + c) as usize % 3 + 1;
                    store.reserve_matches(vec![record(100 + batch, "a/x", &format!("c{c}")); n])
                })
                .collect();
            for call in &reserved {
                for (id, (_, r)) in call.ids().into_iter().zip(&call.records) {
                    expected.push((id, r.clone()));
                }
            }
            store.record_matches(&reserved).unwrap();
            calls.extend(reserved.iter().map(|c| c.first));
        }
        assert_eq!(store.tree.scan_prefix([keys::MATCHES]).count(), 3);
        for (id, r) in &expected {
            assert_eq!(store.match_record(id).unwrap().as_ref(), Some(r));
        }
        assert_eq!(store.match_counts().unwrap().matches, expected.len() as u64);
        // Out of order: refused, nothing written.
        let late = store.reserve_matches(vec![record(200, "a/x", "c")]);
        let later = store.reserve_matches(vec![record(200, "a/x", "c")]);
        store.record_matches(&[later]).unwrap();
        assert!(store.record_matches(&[late]).is_err());
        assert_eq!(
            store.match_counts().unwrap().matches,
            expected.len() as u64 + 1
        );
    }

    #[test]
    fn a_call_is_one_key_and_every_record_is_found_by_its_own_id() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let records: Vec<MatchRecord> = (0..100)
            .map(|i| MatchRecord {
                distance: i,
                ..record(1_000 + u64::from(i), ["a/x", "b/y"][i as usize % 2], "c1")
            })
            .collect();
        let ids = write(&store, records.clone());
        assert_eq!(store.tree.scan_prefix([keys::MATCHES]).count(), 1);
        for (id, r) in ids.iter().zip(&records) {
            assert_eq!(store.match_record(id).unwrap().as_ref(), Some(r));
        }
        // The same key and place with another tag is no record.
        let mut guessed = ids[3];
        guessed.0[15] ^= 1;
        assert_eq!(store.match_record(&guessed).unwrap(), None);
        assert!(matches!(
            store.give_feedback(&guessed, feedback(Verdict::Confirmed)),
            Err(FeedbackError::UnknownMatch(_))
        ));
        // A place past the call's records is none either.
        let mut past = ids[99];
        past.0[8..10].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(store.match_record(&past).unwrap(), None);
        assert_eq!(store.match_counts().unwrap().matches, 100);
    }

    #[test]
    fn keys_grow_across_reopen_even_if_the_clock_goes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let first = {
            let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
            let a = write(&store, vec![record(5_000, "a/x", "c")]);
            let b = write(&store, vec![record(5_000, "a/x", "c")]);
            assert!(b[0].key() > a[0].key(), "same millisecond, next key");
            b[0]
        };
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let later = write(&store, vec![record(10, "a/x", "c")]);
        assert!(later[0].key() > first.key());
        assert_eq!(store.match_counts().unwrap().matches, 3);
    }

    #[test]
    fn retention_deletes_old_calls_and_their_feedback_by_range() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let old = write(&store, vec![record(1_000, "a/x", "c"); 3]);
        let new = write(&store, vec![record(9_000, "a/x", "c"); 2]);
        store
            .give_feedback(&old[0], feedback(Verdict::Confirmed))
            .unwrap();
        store
            .give_feedback(&new[1], feedback(Verdict::FalsePositive))
            .unwrap();
        assert_eq!(store.expire_matches(5_000).unwrap(), 3);
        assert_eq!(store.match_record(&old[0]).unwrap(), None);
        assert!(store.match_record(&new[0]).unwrap().is_some());
        assert_eq!(
            store.match_counts().unwrap(),
            MatchCounts {
                matches: 2,
                confirmed: 0,
                false_positive: 1
            }
        );
        assert_eq!(
            store.match_counts().unwrap(),
            store.count_matches().unwrap()
        );
        assert_eq!(store.expire_matches(u64::MAX / 2).unwrap(), 2);
        assert_eq!(
            store
                .raw_scan()
                .filter(|kv| {
                    let k = &kv.as_ref().unwrap().0;
                    [keys::MATCHES, keys::MATCH_FEEDBACK].contains(&k[0])
                })
                .count(),
            0
        );
    }

    #[test]
    fn records_of_the_old_layout_are_still_read_counted_given_feedback_and_expired() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let legacy = MatchId([0xee; MATCH_ID_LEN]);
        let r = record(2_000, "a/x", "c");
        store
            .tree
            .insert(
                legacy_key(&legacy),
                encode_json("match record", &r).unwrap(),
            )
            .unwrap();
        write(&store, vec![record(9_000, "a/x", "c")]);
        assert_eq!(store.match_record(&legacy).unwrap(), Some(r));
        store
            .give_feedback(&legacy, feedback(Verdict::Confirmed))
            .unwrap();
        assert!(matches!(
            store.give_feedback(&legacy, feedback(Verdict::Confirmed)),
            Err(FeedbackError::AlreadyGiven(_))
        ));
        assert_eq!(
            store.match_counts().unwrap(),
            MatchCounts {
                matches: 2,
                confirmed: 1,
                false_positive: 0
            }
        );
        assert_eq!(store.expire_matches(5_000).unwrap(), 1);
        assert_eq!(store.match_record(&legacy).unwrap(), None);
        assert_eq!(store.match_counts().unwrap().matches, 1);
    }

    #[test]
    fn damaged_values_are_errors_not_panics() {
        let r = record(1, "a/x", "c");
        let call = ReservedMatches {
            first: 77,
            records: vec![([1; TAG_LEN], r.clone())],
        };
        let value = packed::encode(&[call]).unwrap();
        let read = |bytes: &[u8]| packed::Value::read(bytes).and_then(|v| v.get(77, 0));
        assert_eq!(read(&value).unwrap(), Some(([1; TAG_LEN], r)));
        for cut in 0..value.len() {
            assert!(read(&value[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_string = value.clone();
        bad_string[5] = 0xff; // first byte of the string "a/x"
        assert!(read(&bad_string).is_err());
        let mut bad_number = value.clone();
        let at = value.len() - 4 - 8 - 2; // the client's string number
        bad_number[at] = 0x7f;
        assert!(read(&bad_number).is_err());
        let mut bad_version = value;
        bad_version[0] = 9;
        assert!(read(&bad_version).is_err());
    }
}
