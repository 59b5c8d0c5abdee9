//! Daily counts for the transparency report: queries per signal type;
//! matches, feedback, entries added and retracted, and queries an
//! allowlist answered, per set and signal type.
//! Counts only, never values: the report is published.
//!
//! `d` + day (u32, days since the Unix epoch, UTC) + counter (one byte) +
//! set id + `\0` + signal type name → u64. Match records expire (see
//! [`Store::expire_matches`]); these counts stay, so a report over an old
//! period still adds up. Every increment is a read-modify-write made under
//! the store's writer lock, or inside a sled transaction for feedback.

// Part of the store, the one module that touches sled.
#![allow(clippy::disallowed_types)]

use std::collections::BTreeMap;

use super::keys;
use super::{Store, StoreError};
use crate::model::SetId;

/// What is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Counter {
    /// Queries answered (per signal type; no set).
    Queries,
    /// Matches answered to local services.
    Matches,
    /// Feedback: the match was right.
    Confirmed,
    /// Feedback: the match was a false positive.
    FalsePositive,
    /// Entries that became matchable in a set (new, or brought back).
    Added,
    /// Entries withdrawn from a set.
    Retracted,
    /// Queries an allowlist answered: they matched one of its entries, so
    /// the block lists' hits were withheld (per allowlist and signal type).
    Allowlisted,
}

impl Counter {
    fn code(self) -> u8 {
        match self {
            Counter::Queries => b'q',
            Counter::Matches => b'm',
            Counter::Confirmed => b'c',
            Counter::FalsePositive => b'f',
            Counter::Added => b'a',
            Counter::Retracted => b'r',
            Counter::Allowlisted => b'l',
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            b'q' => Counter::Queries,
            b'm' => Counter::Matches,
            b'c' => Counter::Confirmed,
            b'f' => Counter::FalsePositive,
            b'a' => Counter::Added,
            b'r' => Counter::Retracted,
            b'l' => Counter::Allowlisted,
            _ => return None,
        })
    }
}

/// Today (days since the Unix epoch, UTC) by the system clock.
pub fn today() -> u32 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    day_of(ms)
}

/// The day (since the Unix epoch, UTC) of `ms`.
pub fn day_of(ms: u64) -> u32 {
    (ms / 86_400_000) as u32
}

/// The key of one count.
pub(super) fn key(day: u32, counter: Counter, set: Option<&SetId>, kind: &str) -> Vec<u8> {
    let set = set.map_or("", SetId::as_str);
    let mut k = Vec::with_capacity(7 + set.len() + kind.len());
    k.push(keys::USAGE);
    k.extend_from_slice(&day.to_be_bytes());
    k.push(counter.code());
    k.extend_from_slice(set.as_bytes());
    k.push(0);
    k.extend_from_slice(kind.as_bytes());
    k
}

/// A stored count's value plus `n`.
pub(super) fn plus(old: Option<&[u8]>, n: u64) -> [u8; 8] {
    let old = old
        .and_then(|v| <[u8; 8]>::try_from(v).ok())
        .map_or(0, u64::from_be_bytes);
    old.saturating_add(n).to_be_bytes()
}

/// Counts to add, by what they count.
pub type Increments = BTreeMap<(Counter, Option<SetId>, String), u64>;

/// One stored count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageCount {
    /// Days since the Unix epoch (UTC).
    pub day: u32,
    /// What.
    pub counter: Counter,
    /// The set (none for queries).
    pub set: Option<SetId>,
    /// The signal type's name.
    pub kind: String,
    /// How many.
    pub count: u64,
}

impl Store {
    /// Adds `increments` to day `day`'s counts.
    pub(crate) fn add_usage(&self, day: u32, increments: &Increments) -> Result<(), StoreError> {
        if increments.is_empty() {
            return Ok(());
        }
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        self.usage_into(&mut batch, day, increments)?;
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Puts `increments` into `batch` (the caller holds the writer lock).
    pub(super) fn usage_into(
        &self,
        batch: &mut sled::Batch,
        day: u32,
        increments: &Increments,
    ) -> Result<(), StoreError> {
        for ((counter, set, kind), n) in increments {
            let k = key(day, *counter, set.as_ref(), kind);
            let old = self.tree.get(&k)?;
            batch.insert(k, &plus(old.as_deref(), *n)[..]);
        }
        Ok(())
    }

    /// Every count from day `from` to day `to`, both included.
    pub fn usage(&self, from: u32, to: u32) -> Result<Vec<UsageCount>, StoreError> {
        let mut start = vec![keys::USAGE];
        start.extend_from_slice(&from.to_be_bytes());
        let mut end = vec![keys::USAGE];
        end.extend_from_slice(&to.saturating_add(1).to_be_bytes());
        let mut out = Vec::new();
        for kv in self.tree.range(start..end) {
            let (k, v) = kv?;
            let corrupt = || StoreError::Corrupt("malformed usage count".into());
            let day = u32::from_be_bytes(
                k.get(1..5)
                    .ok_or_else(corrupt)?
                    .try_into()
                    .map_err(|_| corrupt())?,
            );
            let counter = k
                .get(5)
                .copied()
                .and_then(Counter::from_code)
                .ok_or_else(corrupt)?;
            let rest = k.get(6..).ok_or_else(corrupt)?;
            let split = rest.iter().position(|&b| b == 0).ok_or_else(corrupt)?;
            let set = std::str::from_utf8(&rest[..split]).map_err(|_| corrupt())?;
            let kind = std::str::from_utf8(&rest[split + 1..]).map_err(|_| corrupt())?;
            let count = u64::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt())?);
            out.push(UsageCount {
                day,
                counter,
                set: if set.is_empty() {
                    None
                } else {
                    Some(set.parse().map_err(|_| corrupt())?)
                },
                kind: kind.to_owned(),
                count,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    #[test]
    fn counts_add_up_per_day_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), &StoreOptions::default()).unwrap();
        let set: SetId = "a/list".parse().unwrap();
        let mut inc = Increments::new();
        inc.insert((Counter::Queries, None, "pdq".into()), 5);
        inc.insert((Counter::Matches, Some(set.clone()), "pdq".into()), 2);
        store.add_usage(100, &inc).unwrap();
        store.add_usage(100, &inc).unwrap();
        store.add_usage(102, &inc).unwrap();
        let all = store.usage(100, 101).unwrap();
        assert_eq!(all.len(), 2);
        let queries = all.iter().find(|c| c.counter == Counter::Queries).unwrap();
        assert_eq!(
            (queries.day, queries.count, queries.set.clone()),
            (100, 10, None)
        );
        let matches = all.iter().find(|c| c.counter == Counter::Matches).unwrap();
        assert_eq!((matches.count, matches.set.clone()), (4, Some(set)));
        assert_eq!(store.usage(101, 102).unwrap().len(), 2);
        assert_eq!(day_of(86_400_000 * 3 + 5), 3);
    }
}
