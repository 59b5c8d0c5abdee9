//! The binary form of the match records written in one batch, stored
//! under one key.
//!
//! A busy provider writes a record per hit. One value per record made
//! sled's memory grow with every key (`hashfed-bench records`: 3.7 KB of
//! resident memory per record at 2M records under random keys, 1.2 KB
//! under growing keys); the records of many calls under one growing key
//! cost about 70 bytes on disk and no memory that grows with them. The
//! strings records repeat (set, signal type, caller) are written once.
//!
//! Layout (integers big-endian):
//!
//! ```text
//! version u8 (1)
//! strings u16, then each: length u16, UTF-8 bytes
//! calls u32, then each: call key u64, records u16, then each record:
//!     tag (6), entry id (16), set u16, signal type u16, client u16
//!     (string numbers), distance u32, time ms u64
//! ```

use super::{MatchRecord, ReservedMatches, TAG_LEN};
use crate::model::{EntryId, SetId};
use crate::store::StoreError;

const VERSION: u8 = 1;

/// Records under one call key at most (places are u16).
pub(super) const MAX_RECORDS: usize = u16::MAX as usize;

/// Size of one record after the string table.
const RECORD_LEN: usize = TAG_LEN + 16 + 2 * 3 + 4 + 8;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("match records: {what}"))
}

/// Encodes reserved calls (each part of a call of more than
/// [`MAX_RECORDS`] records under its own call key).
pub(super) fn encode(calls: &[ReservedMatches]) -> Result<Vec<u8>, StoreError> {
    let mut strings: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut parts = 0u32;
    for call in calls {
        for (part, records) in call.records.chunks(MAX_RECORDS).enumerate() {
            parts = parts
                .checked_add(1)
                .ok_or_else(|| corrupt("too many calls for one value"))?;
            body.extend_from_slice(&call.first.saturating_add(part as u64).to_be_bytes());
            body.extend_from_slice(&(records.len() as u16).to_be_bytes());
            for (tag, r) in records {
                body.extend_from_slice(tag);
                body.extend_from_slice(&r.entry.0);
                for s in [r.set.as_str(), &r.signal_type, &r.client] {
                    let n = match strings.iter().position(|&known| known == s) {
                        Some(n) => n,
                        None if s.len() > usize::from(u16::MAX) => {
                            return Err(corrupt("a string longer than 65535 bytes"))
                        }
                        None => {
                            strings.push(s);
                            strings.len() - 1
                        }
                    };
                    let n = u16::try_from(n).map_err(|_| corrupt("too many strings"))?;
                    body.extend_from_slice(&n.to_be_bytes());
                }
                body.extend_from_slice(&r.distance.to_be_bytes());
                body.extend_from_slice(&r.time_ms.to_be_bytes());
            }
        }
    }
    let table: usize = strings.iter().map(|s| 2 + s.len()).sum();
    let mut out = Vec::with_capacity(7 + table + body.len());
    out.push(VERSION);
    out.extend_from_slice(&(strings.len() as u16).to_be_bytes());
    for s in &strings {
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    out.extend_from_slice(&parts.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a value written by [`encode`], checking every length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.0.len() < n {
            return Err(corrupt("value cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
}

/// One decoded value: its strings, and its calls as (call key, the bytes
/// of its records).
pub(super) struct Value<'a> {
    strings: Vec<&'a str>,
    calls: Vec<(u64, &'a [u8])>,
}

impl<'a> Value<'a> {
    /// Reads the strings and the calls' headers (not the records).
    pub(super) fn read(bytes: &'a [u8]) -> Result<Self, StoreError> {
        let mut r = Reader(bytes);
        if r.array::<1>()? != [VERSION] {
            return Err(corrupt("unknown version"));
        }
        let n = r.u16()?;
        let mut strings = Vec::with_capacity(usize::from(n));
        for _ in 0..n {
            let len = r.u16()?;
            let s = std::str::from_utf8(r.take(usize::from(len))?)
                .map_err(|_| corrupt("a string is not UTF-8"))?;
            strings.push(s);
        }
        let n = u32::from_be_bytes(r.array()?);
        let mut calls = Vec::new();
        for _ in 0..n {
            let key = u64::from_be_bytes(r.array()?);
            let records = usize::from(r.u16()?);
            calls.push((key, r.take(records * RECORD_LEN)?));
        }
        if !r.0.is_empty() {
            return Err(corrupt("bytes after the last call"));
        }
        Ok(Value { strings, calls })
    }

    /// How many records.
    pub(super) fn len(&self) -> usize {
        self.calls.iter().map(|(_, r)| r.len() / RECORD_LEN).sum()
    }

    /// The greatest call key, if any.
    pub(super) fn last_key(&self) -> Option<u64> {
        self.calls.iter().map(|&(key, _)| key).max()
    }

    /// Record `index` of call `key`, with its tag; `None` if the value
    /// holds no such record.
    pub(super) fn get(
        &self,
        key: u64,
        index: usize,
    ) -> Result<Option<([u8; TAG_LEN], MatchRecord)>, StoreError> {
        let Some(&(_, records)) = self.calls.iter().find(|(k, _)| *k == key) else {
            return Ok(None);
        };
        let Some(bytes) = records.get(index * RECORD_LEN..(index + 1) * RECORD_LEN) else {
            return Ok(None);
        };
        let mut r = Reader(bytes);
        let tag = r.array()?;
        let entry = EntryId(r.array()?);
        let string = |r: &mut Reader<'_>| -> Result<&str, StoreError> {
            let n = usize::from(r.u16()?);
            self.strings
                .get(n)
                .copied()
                .ok_or_else(|| corrupt("string number out of range"))
        };
        let set: SetId = string(&mut r)?
            .parse()
            .map_err(|e| corrupt(&format!("set: {e}")))?;
        let signal_type = string(&mut r)?.to_owned();
        let client = string(&mut r)?.to_owned();
        let distance = u32::from_be_bytes(r.array()?);
        let time_ms = u64::from_be_bytes(r.array()?);
        Ok(Some((
            tag,
            MatchRecord {
                entry,
                set,
                signal_type,
                distance,
                time_ms,
                client,
                feedback: None,
            },
        )))
    }
}
