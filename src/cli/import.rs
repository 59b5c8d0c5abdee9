//! `hashfed import`: load hash lists into a set of the node's database.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hashfed::database::now_ms;
use hashfed::import::load::{load, LoadError};
use hashfed::import::{detect, parse, Format};
use hashfed::model::{SetId, SetInfo};
use hashfed::store::{Store, StoreOptions};

/// Arguments of `hashfed import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The set to load into, `<origin>/<name>`; created if missing.
    #[arg(long, value_name = "ORIGIN/NAME")]
    set: SetId,
    /// Input format; guessed from the content and file name if absent.
    #[arg(long, value_name = "FORMAT", value_parser = clap::builder::PossibleValuesParser::new(["jsonl", "te-csv", "te-lines", "ncmec-xml", "stopncii-json"]))]
    format: Option<String>,
    /// Reason recorded with retractions this import makes.
    #[arg(long, default_value = "withdrawn at source")]
    reason: String,
    /// Print a progress line to stderr every N records (0: never).
    #[arg(long, default_value_t = 0, hide = true)]
    progress_every: u64,
    /// Files to read (`-` for standard input).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

pub fn run(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    let set = match store.set(&args.set) {
        Some(state) => state.info,
        None => {
            store
                .create_set(SetInfo::new(args.set.clone()), now_ms())?
                .info
        }
    };
    let mut failed = false;
    for path in &args.files {
        let mut input = open(path)?;
        let format = match &args.format {
            Some(name) => name.parse::<Format>().map_err(|e| anyhow::anyhow!("{e}"))?,
            None => {
                let head = input
                    .fill_buf()
                    .with_context(|| format!("reading {}", path.display()))?;
                let name = path.file_name().and_then(|n| n.to_str());
                match detect(head, name) {
                    Some(f) => f,
                    None => bail!("{}: cannot tell the format; use --format", path.display()),
                }
            }
        };
        let shown = path.display().to_string();
        let mut since_progress = 0;
        let mut records = 0;
        let mut last_flush = Instant::now();
        let result = load(
            &set,
            parse(format, input),
            &args.reason,
            |changes| {
                let applied = store.append(&set.id, changes, now_ms())?;
                records += changes.len() as u64;
                since_progress += changes.len() as u64;
                let report = args.progress_every > 0 && since_progress >= args.progress_every;
                // Make progress durable every second (sled otherwise
                // buffers up to half a second of writes in memory), so a
                // crash costs at most that much re-reading.
                if report || last_flush.elapsed() >= Duration::from_secs(1) {
                    store.flush()?;
                    last_flush = Instant::now();
                }
                if report {
                    since_progress = 0;
                    eprintln!("hashfed: import: {shown}: {records} records applied and durable");
                }
                Ok(applied)
            },
            |bad| eprintln!("hashfed: {shown}: {bad}"),
        );
        match result {
            Ok(s) => {
                eprintln!(
                    "{shown} ({format}): {} records: {} added, {} updated, {} unchanged, {} retracted, {} retractions found nothing, {} refused",
                    s.records, s.added, s.updated, s.unchanged, s.retracted, s.not_found, s.malformed
                );
                failed |= s.malformed > 0;
            }
            Err(LoadError::Input(e)) => {
                eprintln!("hashfed: {shown}: {e}; records before it were imported");
                failed = true;
            }
            Err(LoadError::Store(e)) => return Err(e.into()),
        }
    }
    store.flush()?;
    let head = store.set(&set.id).map_or(0, |s| s.head_seq);
    eprintln!("set {}: log head {head}", set.id);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn open(path: &PathBuf) -> anyhow::Result<Box<dyn BufRead>> {
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
    };
    Ok(Box::new(BufReader::with_capacity(256 << 10, reader)))
}
