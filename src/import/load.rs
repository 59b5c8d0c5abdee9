//! Loading an import stream into a set: validating each record, batching
//! them into atomic writes, and counting what happened.
//!
//! Each batch is one atomic store write, so an import killed halfway leaves
//! whole batches behind and nothing half-written; because entry ids derive
//! from set and value, running the same import again skips what is there
//! and completes the rest.

use super::{ImportError, ImportItem, ImportOp, RawSignal};
use crate::model::{normalize_labels, EntryData, SetInfo, Signal};
use crate::store::{Applied, Change, Outcome, StoreError};

/// Records per atomic write: large enough to amortise sled's per-batch
/// cost, small enough that a crash loses little work.
pub const BATCH: usize = 2_000;

/// Longest external id kept.
pub const MAX_EXTERNAL_ID: usize = 256;

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// Records read (good and bad).
    pub records: u64,
    /// New entries.
    pub added: u64,
    /// Entries whose labels changed or that came back after a retraction.
    pub updated: u64,
    /// Records that changed nothing (already there, as they are).
    pub unchanged: u64,
    /// Entries withdrawn.
    pub retracted: u64,
    /// Withdrawals that found nothing to withdraw.
    pub not_found: u64,
    /// Records refused (reported one by one).
    pub malformed: u64,
}

impl LoadSummary {
    fn count(&mut self, applied: &Applied) {
        for outcome in &applied.outcomes {
            match outcome {
                Outcome::Added(_) => self.added += 1,
                Outcome::Updated(_) => self.updated += 1,
                Outcome::Unchanged(_) => self.unchanged += 1,
                Outcome::Retracted(ids) => self.retracted += ids.len() as u64,
                Outcome::NotFound => self.not_found += 1,
            }
        }
    }
}

/// Why a load stopped before the end of its input.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The input could not be read on (I/O, or broken beyond recovery).
    #[error("{0}")]
    Input(ImportError),
    /// The store refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn signal(raw: &RawSignal) -> Result<Signal, String> {
    Signal::parse(&raw.type_name, &raw.value).map_err(|e| e.to_string())
}

/// Validates one record against the set and turns it into a store change.
pub fn to_change(set: &SetInfo, op: ImportOp, reason: &str) -> Result<Change, String> {
    Ok(match op {
        ImportOp::Add {
            signal: raw,
            labels,
            external_id,
        } => {
            let labels = normalize_labels(labels).map_err(|e| e.to_string())?;
            set.check_labels(&labels).map_err(|e| e.to_string())?;
            let external_id = match external_id.map(|e| e.trim().to_owned()) {
                Some(e) if e.len() > MAX_EXTERNAL_ID || e.chars().any(char::is_control) => {
                    return Err(format!(
                        "external id must be at most {MAX_EXTERNAL_ID} bytes without control characters"
                    ))
                }
                Some(e) if e.is_empty() => None,
                other => other,
            };
            Change::Add(EntryData {
                signal: signal(&raw)?,
                labels,
                external_id,
                vetting: Vec::new(),
            })
        }
        ImportOp::RetractValue { signal: raw } => Change::RetractValue {
            signal: signal(&raw)?,
            reason: reason.to_owned(),
        },
        ImportOp::RetractExternal { external_id } => Change::RetractExternal {
            external_id: external_id.trim().to_owned(),
            reason: reason.to_owned(),
        },
    })
}

/// Reads `items` to the end, applying them to `set` in batches of
/// [`BATCH`] through `apply` (one atomic write each). Each refused record
/// goes to `reject` with its position, and the load goes on; only an input
/// that cannot be read further or a store failure stops it.
pub fn load(
    set: &SetInfo,
    items: impl Iterator<Item = Result<ImportItem, ImportError>>,
    reason: &str,
    mut apply: impl FnMut(&[Change]) -> Result<Applied, StoreError>,
    mut reject: impl FnMut(&ImportError),
) -> Result<LoadSummary, LoadError> {
    let mut summary = LoadSummary::default();
    let mut batch = Vec::with_capacity(BATCH);
    for item in items {
        summary.records += 1;
        match item {
            Ok(item) => match to_change(set, item.op, reason) {
                Ok(change) => batch.push(change),
                Err(message) => {
                    summary.malformed += 1;
                    reject(&ImportError::new(item.position, message));
                }
            },
            Err(e) if e.fatal => {
                summary.records -= 1;
                if !batch.is_empty() {
                    summary.count(&apply(&batch)?);
                }
                return Err(LoadError::Input(e));
            }
            Err(e) => {
                summary.malformed += 1;
                reject(&e);
            }
        }
        if batch.len() >= BATCH {
            summary.count(&apply(&batch)?);
            batch.clear();
        }
    }
    if !batch.is_empty() {
        summary.count(&apply(&batch)?);
    }
    Ok(summary)
}
