//! `hashfed keys`: rotate the node's signing key and renew its
//! certificates, while it serves (through the admin service: see
//! [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::admin::NodeAdmin;

/// Arguments of `hashfed keys`.
#[derive(Args, Debug)]
pub struct KeysArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Subcommand, Debug)]
enum KeysAction {
    /// Make a new signing key (peers learn it from a statement the old key
    /// signs; what the old key signed stays valid) and new server and
    /// peer-client certificates from the node CA. Without a flag, both.
    Rotate {
        /// Only the signing key.
        #[arg(long, conflicts_with = "tls")]
        signing: bool,
        /// Only the certificates.
        #[arg(long)]
        tls: bool,
    },
}

/// Runs `hashfed keys`.
pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .ok_or_else(|| anyhow::anyhow!("--dir DIR is required"))?;
    let KeysAction::Rotate { signing, tls } = args.action;
    let both = !signing && !tls;
    let mut admin = NodeAdmin::open(&dir)?;
    let out = admin.rotate_keys(signing || both, tls || both)?;
    admin.close()?;
    if signing || both {
        println!(
            "node {}: signing key {} is now {} (peers learn it at their next sync)",
            out.node_id, out.key_number, out.signing_key
        );
    }
    if tls || both {
        println!(
            "node {}: renewed certificates {} (served from the next connection)",
            out.node_id,
            out.certificates.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
