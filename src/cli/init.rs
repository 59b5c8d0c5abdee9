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
    /// Take the CAs and server certificates from a development set (e.g.
    /// the repository's `certs/`) instead of making new ones. Their keys
    /// are public: for demos and tests only.
    #[arg(long, value_name = "CERTS")]
    dev_certs: Option<PathBuf>,
}

pub fn run(args: InitArgs) -> anyhow::Result<ExitCode> {
    let made = hashfed::identity::init_with(&args.dir, &args.name, args.dev_certs.as_deref())?;
    if args.dev_certs.is_some() {
        eprintln!("hashfed: warning: development certificates (public keys and all): never use this node in production");
    }
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
