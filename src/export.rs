//! Writing sets out as files: hashfed's JSON lines (everything, re-importable
//! without loss) or python-threatexchange's CSV and lines formats (what other
//! tools read). The bytes are produced here, in the library, so that the
//! admin service streams exactly what `hashfed export` writes on a stopped
//! node; the row writers of the threatexchange formats live beside their
//! parsers in [`crate::import`].
//!
//! Entries are read from the store one at a time and written as they come:
//! an export of millions of entries holds one entry in memory, not the set.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use crate::import::{write_te_csv_header, write_te_csv_row, write_te_line};
use crate::model::SetId;
use crate::store::{Store, StoreError, StoredEntry};

/// The formats sets are exported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// hashfed's JSON lines: everything, re-importable without loss.
    #[default]
    Jsonl,
    /// python-threatexchange's dataset CSV.
    TeCsv,
    /// python-threatexchange's `<type> <value>` lines.
    TeLines,
}

impl ExportFormat {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Jsonl,
        ExportFormat::TeCsv,
        ExportFormat::TeLines,
    ];

    /// The name the CLI and the admin service use.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Jsonl => "jsonl",
            ExportFormat::TeCsv => "te-csv",
            ExportFormat::TeLines => "te-lines",
        }
    }
}

impl fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that is not one of [`ExportFormat::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?} (jsonl, te-csv or te-lines)")]
pub struct UnknownExportFormat(pub String);

impl FromStr for ExportFormat {
    type Err = UnknownExportFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ExportFormat::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownExportFormat(s.to_owned()))
    }
}

/// What to export.
#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Only this set; `None`: every set.
    pub set: Option<SetId>,
    /// The file format.
    pub format: ExportFormat,
    /// Also write retracted entries (jsonl marks them `"status":"retracted"`,
    /// which imports as a retraction).
    pub include_retracted: bool,
}

/// Why an export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The store could not be read (or the set does not exist).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing failed, or an entry cannot be carried by the format (a
    /// threatexchange format refuses what it could not read back the same).
    #[error("writing the export: {0}")]
    Write(#[from] io::Error),
}

/// Writes the entries `options` selects to `out` and returns how many were
/// written. `out` should be buffered: every entry is a few small writes.
pub fn export(
    store: &Store,
    options: &ExportOptions,
    out: &mut impl Write,
) -> Result<u64, ExportError> {
    if let ExportFormat::TeCsv = options.format {
        write_te_csv_header(out)?;
    }
    let mut written = 0u64;
    for entry in store.entries(options.set.as_ref())? {
        let entry = entry?;
        if entry.retracted && !options.include_retracted {
            continue;
        }
        let kind = entry.data.signal.kind().name();
        let value = entry.data.signal.value_hex();
        match options.format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut *out, &json_line(&entry)).map_err(io::Error::from)?;
                out.write_all(b"\n")?;
            }
            ExportFormat::TeCsv => write_te_csv_row(out, kind, &value, &entry.data.labels)?,
            ExportFormat::TeLines => write_te_line(out, kind, &value, &entry.data.labels)?,
        }
        written += 1;
    }
    Ok(written)
}

/// One entry as a jsonl export line (without its line break).
pub fn json_line(e: &StoredEntry) -> serde_json::Value {
    let status = if e.retracted {
        "retracted"
    } else if e.disabled {
        "disabled"
    } else {
        "active"
    };
    let mut v = serde_json::json!({
        "set": e.set.as_str(),
        "id": e.id.to_string(),
        "type": e.data.signal.kind().name(),
        "value": e.data.signal.value_hex(),
        "labels": e.data.labels,
        "status": status,
        "seq": e.last_seq,
        "time": e.time_ms,
    });
    if let Some(ext) = &e.data.external_id {
        v["external_id"] = ext.clone().into();
    }
    v
}
