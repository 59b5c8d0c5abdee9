//! `hashfed client issue`: client certificates for local services and
//! operators, signed by the node's clients or operators CA.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use hashfed::identity::roles::{issue_client, ClientRole};
use hashfed::identity::write_file;

/// Arguments of `hashfed client`.
#[derive(Args, Debug)]
pub struct ClientArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Issue a client certificate: NAME.pem and NAME.key (owner-only) in --out.
    Issue {
        /// The node directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Who it is for (a-z 0-9 . -), e.g. `upload-pipeline`.
        name: String,
        /// An operator certificate (admin listener) instead of a local
        /// service's (match listener).
        #[arg(long)]
        operator: bool,
        /// Days it stays valid.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Directory to write into.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
}

pub fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let Action::Issue {
        dir,
        name,
        operator,
        days,
        out,
    } = args.action;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if !valid {
        bail!("client name {name:?} must be 1-64 of a-z 0-9 . - (it becomes a file name)");
    }
    if !(1..=3650).contains(&days) {
        bail!("--days must be 1 to 3650");
    }
    let role = if operator {
        ClientRole::Operator
    } else {
        ClientRole::Local
    };
    let cert = issue_client(&dir, &name, role, days)?;
    std::fs::create_dir_all(&out)
        .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
    let cert_path = out.join(format!("{name}.pem"));
    let key_path = out.join(format!("{name}.key"));
    write_file(&cert_path, &cert.cert, false)?;
    write_file(&key_path, &cert.key, true)?;
    println!(
        "{} and {} ({})",
        cert_path.display(),
        key_path.display(),
        if operator {
            "operator"
        } else {
            "local service"
        }
    );
    Ok(ExitCode::SUCCESS)
}
