//! `hashfed entry`: look at one entry, withdraw it, or switch it off locally
//! (through the admin service: see [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use hashfed::model::EntryId;
use hashfed::service::proto;

use super::admin::NodeAdmin;

/// Arguments of `hashfed entry`.
#[derive(Args, Debug)]
pub struct EntryArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Print the entry as JSON.
    Show {
        /// Entry id (32 hex digits).
        id: EntryId,
    },
    /// Withdraw the entry from its set (a log record; peers will follow).
    Retract {
        /// Entry id (32 hex digits).
        id: EntryId,
        /// Why, for the log.
        #[arg(long, default_value = "retracted by operator")]
        reason: String,
    },
    /// Stop matching the entry on this node only (the set is untouched).
    Disable {
        /// Entry id (32 hex digits).
        id: EntryId,
    },
    /// Undo `disable`.
    Enable {
        /// Entry id (32 hex digits).
        id: EntryId,
    },
}

pub fn run(args: EntryArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.ok_or_else(|| anyhow!("--dir DIR is required"))?;
    let mut node = NodeAdmin::open(&dir)?;
    let result = act(&mut node, args.action);
    node.close()?;
    result
}

fn act(node: &mut NodeAdmin, action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Show { id } => {
            let e = node.get_entry(id.to_string())?;
            let signal = e.signal.unwrap_or_default();
            let v = serde_json::json!({
                "id": e.id,
                "set": e.set,
                "type": type_name(&signal),
                "value": hashfed::signal::exact::to_hex(&signal.value),
                "labels": e.labels,
                "external_id": (!e.external_id.is_empty()).then_some(e.external_id),
                "retracted": e.retracted,
                "disabled": e.disabled,
                "added_seq": e.added_seq,
                "last_seq": e.last_seq,
                "time": e.time_ms,
            });
            println!("{v}");
        }
        Action::Retract { id, reason } => {
            let e = node.retract(id.to_string(), reason)?;
            if e.changed {
                eprintln!("{id}: retracted from {}", e.set);
            } else {
                eprintln!("{id}: already retracted");
            }
        }
        Action::Disable { id } | Action::Enable { id } => {
            let disable = matches!(action, Action::Disable { .. });
            node.set_disabled(id.to_string(), disable)?;
            eprintln!(
                "{id}: {}",
                if disable {
                    "disabled on this node"
                } else {
                    "enabled"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The name of a wire signal's type, as `hashfed` prints it elsewhere.
fn type_name(signal: &proto::Signal) -> String {
    hashfed::service::wire::signal_from(signal)
        .map(|s| s.kind().name().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
