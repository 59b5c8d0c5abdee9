//! `hashfed report`: the transparency report (through the admin service:
//! see [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use hashfed::report::{parse_day, Report};

use super::admin::NodeAdmin;

/// Arguments of `hashfed report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    from: String,
    /// Last day, included.
    #[arg(long)]
    to: String,
    /// Output format.
    #[arg(long, default_value = "markdown", value_parser = clap::builder::PossibleValuesParser::new(["json", "markdown"]))]
    format: String,
}

/// Runs `hashfed report`.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let from = parse_day(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = parse_day(&args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if from > to {
        anyhow::bail!("--from {} is after --to {}", args.from, args.to);
    }
    let mut admin = NodeAdmin::open(&args.dir)?;
    let answer = admin.report(from, to);
    admin.close()?;
    let report: Report =
        serde_json::from_str(&answer?.json).context("reading the node's report")?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_markdown());
    }
    Ok(ExitCode::SUCCESS)
}
