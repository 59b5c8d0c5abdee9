//! Match records: what the node keeps when it answers a local service with
//! a hit, and the feedback given on it.
//!
//! **Data minimisation.** A record holds what reporting and feedback need
//! (which entry matched, when, how close, which caller) and never the
//! query's hash or anything else the caller sent: the matched entry's own
//! hash is in the set already. Queries that match nothing leave no trace.
//!
//! Records live under their own key prefix and do not touch the store's
//! generation: they are not part of any set's log and do not change what
//! matches, so writing one leaves the index snapshot valid.

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::usage::{self, Counter, Increments};
use super::{keys, Store, StoreError};
use crate::model::{EntryId, SetId};

/// Length of a match id.
pub const MATCH_ID_LEN: usize = 16;

/// Identifies a match record: random, so it reveals nothing and cannot be
/// guessed by another caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatchId(pub [u8; MATCH_ID_LEN]);

impl MatchId {
    /// A fresh random id.
    pub fn random() -> Self {
        use rand_core::{OsRng, RngCore};
        let mut id = [0; MATCH_ID_LEN];
        OsRng.fill_bytes(&mut id);
        MatchId(id)
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

/// Whether a match was right.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The content is what the entry says.
    Confirmed,
    /// It is not.
    FalsePositive,
}

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

fn key(id: &MatchId) -> [u8; 1 + MATCH_ID_LEN] {
    let mut k = [keys::MATCH; 1 + MATCH_ID_LEN];
    k[1..].copy_from_slice(&id.0);
    k
}

fn encode(record: &MatchRecord) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(format!("match record: {e}")))
}

fn decode(bytes: &[u8]) -> Result<MatchRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("match record: {e}")))
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
    /// Records matches under their ids (one batch).
    /// Records matches under their ids, and adds them to the day's
    /// counts (one batch).
    pub fn record_matches(&self, records: &[(MatchId, MatchRecord)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut by_day: BTreeMap<u32, Increments> = BTreeMap::new();
        for (id, record) in records {
            batch.insert(&key(id)[..], encode(record)?);
            let counts = by_day.entry(usage::day_of(record.time_ms)).or_default();
            let k = (
                Counter::Matches,
                Some(record.set.clone()),
                record.signal_type.clone(),
            );
            *counts.entry(k).or_default() += 1;
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for (day, counts) in &by_day {
            self.usage_into(&mut batch, *day, counts)?;
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The record of a match.
    pub fn match_record(&self, id: &MatchId) -> Result<Option<MatchRecord>, StoreError> {
        self.tree
            .get(key(id))?
            .map(|bytes| decode(&bytes))
            .transpose()
    }

    /// Attaches feedback to a match; refused if some was given already.
    ///
    /// If the entry's set was received from a peer, the feedback is also
    /// queued (signed by this node) to travel back toward the set's origin,
    /// in the same transaction: it is either given and queued, or neither.
    pub fn give_feedback(
        &self,
        id: &MatchId,
        feedback: Feedback,
    ) -> Result<MatchRecord, FeedbackError> {
        use sled::transaction::{ConflictableTransactionError as Tx, TransactionError};
        let k = key(id);
        let result = self.tree.transaction(|tx| {
            let old = tx
                .get(k)?
                .ok_or(Tx::Abort(FeedbackError::UnknownMatch(*id)))?;
            let mut record = decode(&old).map_err(|e| Tx::Abort(e.into()))?;
            if record.feedback.is_some() {
                return Err(Tx::Abort(FeedbackError::AlreadyGiven(*id)));
            }
            record.feedback = Some(feedback.clone());
            tx.insert(&k[..], encode(&record).map_err(|e| Tx::Abort(e.into()))?)?;
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
            if let Some(note) = self.note_for_origin(&record) {
                let (key, value) = super::federation::outbox_item(&note, &id.0)
                    .map_err(|e| Tx::Abort(e.into()))?;
                tx.insert(key, value)?;
            }
            Ok(record)
        });
        match result {
            Ok(record) => Ok(record),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(StoreError::from(e).into()),
        }
    }

    /// Deletes the match records of matches answered before `before_ms`
    /// (retention); the day's counts keep their figures. Returns how many.
    pub fn expire_matches(&self, before_ms: u64) -> Result<u64, StoreError> {
        let mut old = Vec::new();
        for kv in self.tree.scan_prefix([keys::MATCH]) {
            let (k, v) = kv?;
            if decode(&v)?.time_ms < before_ms {
                old.push(k);
            }
        }
        for chunk in old.chunks(4096) {
            let mut batch = sled::Batch::default();
            for k in chunk {
                batch.remove(k.clone());
            }
            self.tree.apply_batch(batch)?;
        }
        Ok(old.len() as u64)
    }

    /// Counts matches and feedback (walks the records).
    pub fn match_counts(&self) -> Result<MatchCounts, StoreError> {
        let mut counts = MatchCounts::default();
        for kv in self.tree.scan_prefix([keys::MATCH]) {
            let (_, value) = kv?;
            let record = decode(&value)?;
            counts.matches += 1;
            match record.feedback.map(|f| f.verdict) {
                Some(Verdict::Confirmed) => counts.confirmed += 1,
                Some(Verdict::FalsePositive) => counts.false_positive += 1,
                None => {}
            }
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

    #[test]
    fn feedback_once_per_match() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let record = MatchRecord {
            entry: "00112233445566778899aabbccddeeff".parse().unwrap(),
            set: SetId::new("hotline-a", "csam").unwrap(),
            signal_type: "pdq".into(),
            distance: 4,
            time_ms: 1,
            client: "local-socket".into(),
            feedback: None,
        };
        let ids = [MatchId::random()];
        store.record_matches(&[(ids[0], record.clone())]).unwrap();
        assert_eq!(store.match_record(&ids[0]).unwrap(), Some(record));
        let fb = Feedback {
            verdict: Verdict::FalsePositive,
            reason: "benign_collision".into(),
            time_ms: 2,
        };
        store.give_feedback(&ids[0], fb.clone()).unwrap();
        assert!(matches!(
            store.give_feedback(&ids[0], fb),
            Err(FeedbackError::AlreadyGiven(_))
        ));
        let unknown = MatchId([7; MATCH_ID_LEN]);
        assert!(matches!(
            store.give_feedback(
                &unknown,
                Feedback {
                    verdict: Verdict::Confirmed,
                    reason: "reviewed".into(),
                    time_ms: 3
                }
            ),
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
        assert_eq!(ids[0].to_string().parse::<MatchId>().unwrap(), ids[0]);
        assert!("xyz".parse::<MatchId>().is_err());
    }
}
