//! `hashfed export`: write a set's entries (or every set's) to a file,
//! through the node's admin service (see [`super::admin`]): the running
//! node streams the file while it serves; a stopped node's database is
//! read here by the same service. The bytes are made in the library
//! ([`hashfed::export`]), so both are the same.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hashfed::export::ExportFormat as Format;
use hashfed::model::SetId;
use hashfed::wire::proto;

use super::admin::NodeAdmin;

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

impl From<ExportFormat> for Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Jsonl => Format::Jsonl,
            ExportFormat::TeCsv => Format::TeCsv,
            ExportFormat::TeLines => Format::TeLines,
        }
    }
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
    let mut node = NodeAdmin::open(&args.dir)?;
    let written = write(&mut node, &args);
    node.close()?;
    eprintln!("{} entries written", written?);
    Ok(ExitCode::SUCCESS)
}

fn write(node: &mut NodeAdmin, args: &ExportArgs) -> anyhow::Result<u64> {
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => {
            Box::new(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::with_capacity(256 << 10, &mut out);
    let request = proto::ExportRequest {
        set: args.set.as_ref().map(SetId::to_string).unwrap_or_default(),
        format: Format::from(args.format).name().to_owned(),
        include_retracted: args.include_retracted,
    };
    let written = node.export(request, &mut out);
    // What arrived is written even when the export failed part-way, as a
    // file written directly would hold it.
    let flushed = out.flush().context("writing the export");
    let written = written?;
    flushed?;
    Ok(written)
}
