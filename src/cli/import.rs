//! `hashfed import`: load hash lists into a set of the node's database.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Args;
use hashfed::database::Database;
use hashfed::import::Format;
use hashfed::model::signed::Signer;
use hashfed::model::SetId;
use hashfed::ops::{ImportRequest, Ops};
use hashfed::store::StoreOptions;
use hashfed::wire::proto::{self, admin_client::AdminClient};
use tonic::transport::Channel;

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
    let runtime = super::admin::runtime()?;
    if let Some(client) = super::admin::running(&runtime, &args.dir) {
        return run_remote(&args, &runtime, client);
    }
    drop(runtime);
    // A stopped node: the same operation in this process, over the
    // database opened here (with the node's signing key, where it has one:
    // own sets get their checkpoints signed as they are written, and the
    // audit head stays signed).
    let db = Arc::new(Database::open(
        &super::store_dir(&args.dir),
        &StoreOptions::default(),
    )?);
    if let Ok(config) = hashfed::identity::load_config(&args.dir) {
        let key = hashfed::identity::keys::read(&args.dir)?;
        db.set_signer(Arc::new(Signer::new(&config.name, &config.node_id, key)))?;
    }
    let ops = Ops::new(db.clone(), String::new(), String::new());
    let actor = hashfed::service::admin::local_cli();
    let format = match &args.format {
        Some(name) => Some(name.parse::<Format>().map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let mut failed = false;
    for path in &args.files {
        let input = open(path)?;
        let shown = path.display().to_string();
        let request = ImportRequest {
            set: args.set.clone(),
            format,
            file_name: path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned(),
            reason: args.reason.clone(),
        };
        let mut reported = 0;
        let s = ops
            .import(&actor, &request, input, |records| {
                if args.progress_every > 0 && records - reported >= args.progress_every {
                    reported = records;
                    // The operation flushes at least every second; this
                    // line promises durability, so flush first.
                    if db.store().flush().is_ok() {
                        eprintln!(
                            "hashfed: import: {shown}: {records} records applied and durable"
                        );
                    }
                }
            })
            .with_context(|| shown.clone())?;
        for problem in &s.problems {
            eprintln!("hashfed: {shown}: {problem}");
        }
        if !s.stopped.is_empty() {
            eprintln!(
                "hashfed: {shown}: {}; records before it were imported",
                s.stopped
            );
            failed = true;
        }
        eprintln!(
            "{shown} ({}): {} records: {} added, {} updated, {} unchanged, {} retracted, {} retractions found nothing, {} refused",
            s.format, s.records, s.added, s.updated, s.unchanged, s.retracted, s.not_found, s.refused
        );
        eprintln!("set {}: log head {}", args.set, s.head_seq);
        failed |= s.refused > 0;
    }
    drop(ops);
    match Arc::try_unwrap(db) {
        Ok(db) => db.close()?,
        Err(_) => bail!("the database is still in use at exit"),
    }
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

/// Bytes per import message sent to a running node.
const CHUNK: usize = 256 << 10;

/// Imports through the running node's admin service, so that its index
/// takes the new entries at once.
fn run_remote(
    args: &ImportArgs,
    runtime: &tokio::runtime::Runtime,
    client: AdminClient<Channel>,
) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    for path in &args.files {
        let shown = path.display().to_string();
        let mut input = open(path)?;
        let (tx, rx) = tokio::sync::mpsc::channel::<proto::ImportChunk>(4);
        let call = runtime.spawn({
            let mut client = client.clone();
            async move {
                client
                    .import(tokio_stream::wrappers::ReceiverStream::new(rx))
                    .await
            }
        });
        let mut first = Some(proto::ImportChunk {
            set: args.set.to_string(),
            format: args.format.clone().unwrap_or_default(),
            file_name: path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned(),
            reason: args.reason.clone(),
            data: Vec::new(),
        });
        loop {
            let mut data = vec![0; CHUNK];
            let n = read_full(&mut input, &mut data).with_context(|| format!("reading {shown}"))?;
            data.truncate(n);
            let is_first = first.is_some();
            let chunk = match first.take() {
                Some(header) => proto::ImportChunk { data, ..header },
                None => proto::ImportChunk {
                    data,
                    ..Default::default()
                },
            };
            // A closed channel means the node ended the call; its answer
            // says why.
            if (n > 0 || is_first) && tx.blocking_send(chunk).is_err() {
                break;
            }
            if n == 0 {
                break;
            }
        }
        drop(tx);
        let summary = runtime
            .block_on(call)
            .context("import call")?
            .map_err(super::admin::status)
            .with_context(|| shown.clone())?
            .into_inner();
        for problem in &summary.problems {
            eprintln!("hashfed: {shown}: {problem}");
        }
        if !summary.stopped.is_empty() {
            eprintln!(
                "hashfed: {shown}: {}; records before it were imported",
                summary.stopped
            );
            failed = true;
        }
        eprintln!(
            "{shown} ({}): {} records: {} added, {} updated, {} unchanged, {} retracted, {} retractions found nothing, {} refused (through the running node)",
            summary.format, summary.records, summary.added, summary.updated, summary.unchanged, summary.retracted, summary.not_found, summary.refused
        );
        eprintln!("set {}: log head {}", args.set, summary.head_seq);
        failed |= summary.refused > 0;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Reads until `buf` is full or the input ends.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
