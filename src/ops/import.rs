//! The import operation: a hash list read into a set, in atomic batches,
//! each carrying its own audit record. One flow for every door: the admin
//! service (a running node) and `hashfed import` on a stopped node.

use std::io::BufRead;
use std::time::{Duration, Instant};

use super::{check_reason, Actor, Ops, OpsError};
use crate::import::load::{load, LoadError};
pub use crate::import::ImportSummary;
use crate::import::{detect, parse, Format};
use crate::model::audit::Action;
use crate::model::SetId;
use crate::store::{Applied, Outcome};

/// Problems an import reports back in full; the rest are only counted.
pub const MAX_PROBLEMS: usize = 100;

/// What to import, and how.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    /// The set, created if missing.
    pub set: SetId,
    /// The format; guessed from the content and `file_name` if `None`.
    pub format: Option<Format>,
    /// The input's file name (for guessing, and for the audit record).
    pub file_name: String,
    /// Recorded with the retractions the import makes ("" for the default).
    pub reason: String,
}

/// How often an import makes its progress durable: sled otherwise buffers
/// up to half a second of writes in memory, so a crash costs at most this
/// much re-reading.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The audit record of one batch: what it did, in counts (never values).
fn batch_note(
    actor: &Actor,
    set: &SetId,
    source: &str,
    applied: &Applied,
) -> crate::model::audit::Note {
    let (mut added, mut updated, mut unchanged, mut retracted, mut not_found) = (0, 0, 0, 0, 0);
    for outcome in &applied.outcomes {
        match outcome {
            Outcome::Added(_) => added += 1,
            Outcome::Updated(_) => updated += 1,
            Outcome::Unchanged(_) => unchanged += 1,
            Outcome::Retracted(ids) => retracted += ids.len(),
            Outcome::NotFound => not_found += 1,
        }
    }
    actor.note(
        Action::Imported,
        set.as_str(),
        format!(
            "{source}: {} records: {added} added, {updated} updated, {unchanged} unchanged, \
             {retracted} retracted, {not_found} retractions found nothing",
            applied.outcomes.len()
        ),
    )
}

impl Ops {
    /// Reads `input` into the request's set (created, and audited, if
    /// missing). Each batch of records is one atomic write with its audit
    /// record; a crash leaves whole batches, each audited. Bad records are
    /// counted and listed, the rest go on; input that breaks beyond
    /// recovery stops the import (`stopped`), keeping what came before.
    /// `progress` is told the records applied so far after each batch.
    pub fn import(
        &self,
        actor: &Actor,
        request: &ImportRequest,
        mut input: impl BufRead,
        mut progress: impl FnMut(u64),
    ) -> Result<ImportSummary, OpsError> {
        check_reason(&request.reason)?;
        let format = match request.format {
            Some(f) => f,
            None => {
                let head = input.fill_buf().map_err(|source| OpsError::Io {
                    what: "reading the import".into(),
                    source,
                })?;
                let name = (!request.file_name.is_empty()).then_some(request.file_name.as_str());
                detect(head, name)
                    .ok_or_else(|| OpsError::Invalid("cannot tell the format; name it".into()))?
            }
        };
        let set = self.ensure_set(actor, &request.set, "by an import")?.info;
        let reason = match request.reason.as_str() {
            "" => "withdrawn at source",
            r => r,
        };
        let source = match request.file_name.as_str() {
            "" => format!("{format} format"),
            name => format!(
                "{format} format, {}",
                name.chars().take(200).collect::<String>()
            ),
        };
        let mut summary = ImportSummary {
            format: format.name().to_owned(),
            ..Default::default()
        };
        let mut applied_records = 0u64;
        let mut last_flush = Instant::now();
        let result = load(
            &set,
            parse(format, input),
            reason,
            |changes| {
                let applied = self.db.apply(&set.id, changes, |a| {
                    vec![batch_note(actor, &set.id, &source, a)]
                })?;
                applied_records += changes.len() as u64;
                if last_flush.elapsed() >= FLUSH_EVERY {
                    self.db.store().flush()?;
                    last_flush = Instant::now();
                }
                progress(applied_records);
                Ok(applied)
            },
            |bad| {
                if summary.problems.len() < MAX_PROBLEMS {
                    summary.problems.push(bad.to_string());
                }
            },
        );
        match result {
            Ok(s) => {
                summary.records = s.records;
                summary.added = s.added;
                summary.updated = s.updated;
                summary.unchanged = s.unchanged;
                summary.retracted = s.retracted;
                summary.not_found = s.not_found;
                summary.refused = s.malformed;
            }
            Err(LoadError::Input(e)) => summary.stopped = e.to_string(),
            Err(LoadError::Store(e)) => return Err(e.into()),
        }
        self.db.store().flush()?;
        if summary.refused > 0 || !summary.stopped.is_empty() {
            // What did not go in has no effect to carry its record: it is
            // audited on its own.
            let mut detail = format!("{source}: {} records refused", summary.refused);
            if !summary.stopped.is_empty() {
                detail.push_str(&format!("; stopped: {}", summary.stopped));
            }
            self.db
                .audit(actor.note(Action::ImportRefused, set.id.as_str(), detail))?;
        }
        summary.head_seq = self.db.store().set(&set.id).map_or(0, |s| s.head_seq);
        tracing::info!(set = %set.id, records = summary.records, "import");
        Ok(summary)
    }
}
