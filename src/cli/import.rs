//! `hashfed import`: load hash lists into a set of the node's database.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use hashfed::database::now_ms;
use hashfed::import::load::{load, LoadError};
use hashfed::import::{detect, parse, Format};
use hashfed::model::audit::Action;
use hashfed::model::signed::Signer;
use hashfed::model::{SetId, SetInfo};
use hashfed::service::proto::{self, admin_client::AdminClient};
use hashfed::store::{Store, StoreOptions};
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
    let store = Store::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    // The node's signing key, where it has one: own sets get their
    // checkpoints signed as they are written, and the audit head stays
    // signed.
    if let Ok(config) = hashfed::identity::load_config(&args.dir) {
        let key = hashfed::identity::keys::read(&args.dir)?;
        store.set_signer(Arc::new(Signer::new(&config.name, &config.node_id, key)));
    }
    let set = match store.set(&args.set) {
        Some(state) => state.info,
        None => {
            let info = store
                .create_set(SetInfo::new(args.set.clone()), now_ms())?
                .info;
            audit(&store, Action::SetCreated, &info.id, "by an import")?;
            info
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
                let detail = format!(
                    "{format} format, {} records: {} added, {} updated, {} unchanged, {} retracted, {} refused",
                    s.records, s.added, s.updated, s.unchanged, s.retracted, s.malformed
                );
                audit(&store, Action::Imported, &set.id, &detail)?;
                failed |= s.malformed > 0;
            }
            Err(LoadError::Input(e)) => {
                eprintln!("hashfed: {shown}: {e}; records before it were imported");
                audit(&store, Action::Imported, &set.id, &format!("stopped: {e}"))?;
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

/// Records an import on a stopped node in its audit log (a running node's
/// admin service does it for imports sent to it).
fn audit(store: &Store, action: Action, set: &SetId, detail: &str) -> anyhow::Result<()> {
    store.audit(now_ms(), "local-cli", action, set.as_str(), detail)?;
    Ok(())
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
