//! `hashfed compare HASH HASH`: the Hamming distance between two PDQ hashes.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use hashfed::signal::pdq::{PdqHash, DEFAULT_MATCH_THRESHOLD};

/// Arguments of `hashfed compare`.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// First PDQ hash (64 hex digits).
    a: String,
    /// Second PDQ hash (64 hex digits).
    b: String,
    /// Also say whether the distance is within this threshold.
    #[arg(long, default_value_t = DEFAULT_MATCH_THRESHOLD)]
    threshold: u32,
    /// Print only the number.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let a: PdqHash = args.a.trim().parse().context("first hash")?;
    let b: PdqHash = args.b.trim().parse().context("second hash")?;
    let d = a.distance(&b);
    if args.quiet {
        println!("{d}");
    } else {
        let verdict = if d <= args.threshold {
            "match"
        } else {
            "no match"
        };
        println!("{d}\t({verdict} at threshold {})", args.threshold);
    }
    Ok(ExitCode::SUCCESS)
}
