//! `hashfed verify` and `hashfed sets`: look at the database as a whole.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hashfed::store::{Store, StoreOptions};

/// Arguments of `hashfed verify` and `hashfed sets`.
#[derive(Args, Debug)]
pub struct DirArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Checks every log, entry, by-value key and slot; exit 1 on any problem.
pub fn verify(args: DirArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    let report = store.verify()?;
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    println!(
        "{} sets, {} log records, {} entries ({} matchable): {}",
        report.sets,
        report.records,
        report.entries,
        report.matchable,
        if report.is_ok() {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Lists the sets with their log heads.
pub fn sets(args: DirArgs) -> anyhow::Result<ExitCode> {
    let store = Store::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    for s in store.sets() {
        println!(
            "{}\thead {}\tdigest {}\t{} matchable",
            s.id(),
            s.head_seq,
            s.head_digest,
            s.matchable
        );
    }
    Ok(ExitCode::SUCCESS)
}
