//! `hashfed export`: write a set's entries (or every set's) to a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hashfed::import::{write_te_csv_header, write_te_csv_row, write_te_line};
use hashfed::model::SetId;
use hashfed::store::{Store, StoreOptions, StoredEntry};

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ExportFormat {
    /// hashfed's JSON lines: everything, re-importable without loss.
    Jsonl,
    /// python-threatexchange's dataset CSV.
    TeCsv,
    /// python-threatexchange's `<type> <value>` lines.
    TeLines,
}

/// Arguments of `hashfed export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Only this set (default: every set).
    #[arg(long, value_name = "ORIGIN/NAME")]
    set: Option<SetId>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: ExportFormat,
    /// Also write retracted entries (jsonl marks them `"status":"retracted"`,
    /// which imports as a retraction).
    #[arg(long)]
    include_retracted: bool,
    /// Write here instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(256 << 10, &mut out);
    if let ExportFormat::TeCsv = args.format {
        write_te_csv_header(&mut out)?;
    }
    let mut written = 0u64;
    for entry in store.entries(args.set.as_ref())? {
        let entry = entry?;
        if entry.retracted && !args.include_retracted {
            continue;
        }
        let kind = entry.data.signal.kind().name();
        let value = entry.data.signal.value_hex();
        match args.format {
            ExportFormat::Jsonl => {
                serde_json::to_writer(&mut out, &json_line(&entry))?;
                out.write_all(b"\n")?;
            }
            ExportFormat::TeCsv => write_te_csv_row(&mut out, kind, &value, &entry.data.labels)?,
            ExportFormat::TeLines => write_te_line(&mut out, kind, &value, &entry.data.labels)?,
        }
        written += 1;
    }
    out.flush()?;
    eprintln!("{written} entries written");
    Ok(ExitCode::SUCCESS)
}

fn json_line(e: &StoredEntry) -> serde_json::Value {
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
