//! `hashfed init`: create a node directory (keys, certificates, config).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Arguments of `hashfed init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The node directory to create.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The node's name (a-z 0-9 -), e.g. `hotline-a`.
    #[arg(long)]
    name: String,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let made = hashfed::identity::init(&args.dir, &args.name)?;
    println!("node {} ({})", made.config.node_id, made.config.name);
    println!("directory {}", args.dir.display());
    println!(
        "listeners: federation {}, match {}, admin {}, metrics {}",
        made.config.listen.federation,
        made.config.listen.match_,
        made.config.listen.admin,
        made.config.listen.metrics
    );
    Ok(ExitCode::SUCCESS)
}
