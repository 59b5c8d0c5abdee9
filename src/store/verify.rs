//! A full consistency check of the store, for crash tests and operators.
//!
//! It re-derives everything that is stored twice (chain digests, entry
//! numbers, slots, counters) and says where the copies disagree. A store that
//! passes is one a crash left whole.

use std::collections::{HashMap, HashSet};

use super::entries;
use super::keys;
use super::slots;
use super::state::{EntryState, NO_SLOT};
use super::{Store, StoreError};
use crate::model::record::{chain_digest, genesis_digest};
use crate::model::{EntryId, Record, RecordBody, SignalType};
use crate::signal::exact::to_hex;

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Sets checked.
    pub sets: u64,
    /// Log records checked.
    pub records: u64,
    /// Entries checked.
    pub entries: u64,
    /// Matchable entries.
    pub matchable: u64,
    /// Each inconsistency, in words (capped at 100).
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing was wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, text: String) {
        if self.problems.len() < 100 {
            self.problems.push(text);
        }
    }
}

impl Store {
    /// Checks every set's log (contiguous from 1, chain digest equal to the
    /// head), every entry against its last record, its number and its PDQ
    /// slot, and the slot and counter bookkeeping. Reads the whole store.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = VerifyReport::default();
        let mut last_records: HashMap<(u32, u64), Record> = HashMap::new();
        let mut wanted: HashSet<(u32, u64)> = HashSet::new();
        // First pass over entries: which log records we want to look at.
        for (_, s) in self.entry_states().flatten() {
            wanted.insert((s.set_no, s.last_seq));
        }
        for set in self.sets() {
            report.sets += 1;
            let mut digest = genesis_digest(set.id());
            let mut expected = 1;
            for item in self.log(set.id(), 0)? {
                let (seq, bytes) = item?;
                if seq != expected {
                    report.problem(format!(
                        "set {}: log jumps from {} to {seq}",
                        set.id(),
                        expected - 1
                    ));
                    expected = seq;
                }
                match Record::decode(&bytes) {
                    Ok(rec) if rec.seq == seq => {
                        if wanted.contains(&(set.no, seq)) {
                            last_records.insert((set.no, seq), rec);
                        }
                    }
                    Ok(rec) => report.problem(format!(
                        "set {}: record at {seq} says seq {}",
                        set.id(),
                        rec.seq
                    )),
                    Err(e) => report.problem(format!("set {}: record {seq}: {e}", set.id())),
                }
                digest = chain_digest(&digest, &bytes);
                expected += 1;
                report.records += 1;
            }
            if expected - 1 != set.head_seq {
                report.problem(format!(
                    "set {}: head is {} but the log ends at {}",
                    set.id(),
                    set.head_seq,
                    expected - 1
                ));
            }
            if to_hex(&digest) != set.head_digest {
                report.problem(format!(
                    "set {}: chain digest differs from the head",
                    set.id()
                ));
            }
        }

        let sets: HashMap<u32, _> = self.sets().into_iter().map(|s| (s.no, s)).collect();
        let mut matchable_per_set: HashMap<u32, u64> = HashMap::new();
        let mut slots: HashMap<u32, EntryId> = HashMap::new();
        let ids = self.ids.read().unwrap_or_else(|p| p.into_inner());
        let next_entry = self.counter(keys::NEXT_ENTRY)?;
        let mut seen: HashSet<EntryId> = HashSet::new();
        for chunk in self.entry_chunks() {
            let (no, bytes) = chunk?;
            let Ok(items) = entries::occupied(&bytes) else {
                report.problem(format!("entry chunk {no} is malformed"));
                continue;
            };
            for (i, id, state) in items {
                let n = no * entries::PER_CHUNK + i as u32;
                report.entries += 1;
                if !seen.insert(id) {
                    report.problem(format!("entry {id} is stored twice"));
                }
                if ids.get(&id) != Some(n) || u64::from(n) >= next_entry {
                    report.problem(format!(
                        "entry {id}: stored as number {n}, which the id map or counter does not \
                         give it"
                    ));
                }
                let s = match EntryState::decode(state) {
                    Ok(s) => s,
                    Err(e) => {
                        report.problem(format!("entry {id}: {e}"));
                        continue;
                    }
                };
                let Some(set) = sets.get(&s.set_no) else {
                    report.problem(format!("entry {id}: unknown set number {}", s.set_no));
                    continue;
                };
                if EntryId::derive(set.id(), &s.data.signal) != id {
                    report.problem(format!(
                        "entry {id}: id does not derive from its set and value"
                    ));
                }
                match last_records.get(&(s.set_no, s.last_seq)) {
                    Some(Record {
                        body: RecordBody::Add(data),
                        ..
                    }) if !s.retracted && *data == s.data => {}
                    Some(Record {
                        body: RecordBody::Retract { entry, .. },
                        ..
                    }) if s.retracted && *entry == id => {}
                    _ => report.problem(format!(
                        "entry {id}: its last record ({}) does not describe it",
                        s.last_seq
                    )),
                }
                let is_pdq = s.data.signal.kind() == &SignalType::Pdq;
                if s.matchable() {
                    report.matchable += 1;
                    *matchable_per_set.entry(s.set_no).or_default() += 1;
                }
                if s.matchable() && is_pdq {
                    let (chunk, i) = slots::locate(s.slot);
                    let held = self
                        .tree
                        .get(keys::slot_chunk(chunk))?
                        .and_then(|b| slots::get(&b, i));
                    match held {
                        Some((holder, code))
                            if holder == id && code[..] == *s.data.signal.value() => {}
                        _ => {
                            report.problem(format!("entry {id}: slot {} does not hold it", s.slot))
                        }
                    }
                    if let Some(other) = slots.insert(s.slot, id) {
                        report.problem(format!("slot {} held by {other} and {id}", s.slot));
                    }
                } else if s.slot != NO_SLOT {
                    report.problem(format!(
                        "entry {id}: holds slot {} while not a matchable PDQ entry",
                        s.slot
                    ));
                }
            }
        }
        if seen.len() != ids.len() {
            report.problem(format!(
                "{} entries stored, {} in the id map",
                seen.len(),
                ids.len()
            ));
        }
        drop(ids);
        for (no, set) in &sets {
            let counted = matchable_per_set.get(no).copied().unwrap_or(0);
            if counted != set.matchable {
                report.problem(format!(
                    "set {}: counts {} matchable, found {counted}",
                    set.id(),
                    set.matchable
                ));
            }
        }
        let next_slot = self.counter(keys::NEXT_SLOT)?;
        let mut occupied = 0;
        for kv in self.tree.scan_prefix([keys::SLOT_CHUNK]) {
            let (k, v) = kv?;
            let Some(chunk) = keys::slot_of(&k) else {
                report.problem("short slot chunk key".into());
                continue;
            };
            for (i, holder, _) in slots::occupied(&v) {
                let slot = chunk * slots::PER_CHUNK + i as u32;
                occupied += 1;
                if slots.get(&slot) != Some(&holder) || u64::from(slot) >= next_slot {
                    report.problem(format!(
                        "slot {slot} is held for an entry that does not hold it"
                    ));
                }
            }
        }
        if occupied != slots.len() {
            report.problem(format!(
                "{occupied} occupied slots for {} matchable PDQ entries",
                slots.len()
            ));
        }
        for kv in self.tree.scan_prefix([keys::FREE_SLOT]) {
            let (k, _) = kv?;
            match keys::slot_of(&k) {
                Some(slot) if !slots.contains_key(&slot) && u64::from(slot) < next_slot => {}
                other => report.problem(format!(
                    "free slot {other:?} is in use or beyond the counter"
                )),
            }
        }
        Ok(report)
    }
}
