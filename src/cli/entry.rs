//! `hashfed entry`: look at one entry, withdraw it, or switch it off locally.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use hashfed::database::Database;
use hashfed::model::EntryId;
use hashfed::store::{Change, Outcome, StoreOptions};

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
    let db = Database::open(&super::store_dir(&dir), &StoreOptions::default())?;
    let store = db.store();
    let id = match &args.action {
        Action::Show { id }
        | Action::Retract { id, .. }
        | Action::Disable { id }
        | Action::Enable { id } => *id,
    };
    let entry = store
        .entry(&id)?
        .with_context(|| format!("no entry {id}"))?;
    match args.action {
        Action::Show { .. } => {
            let v = serde_json::json!({
                "id": id.to_string(),
                "set": entry.set.as_str(),
                "type": entry.data.signal.kind().name(),
                "value": entry.data.signal.value_hex(),
                "labels": entry.data.labels,
                "external_id": entry.data.external_id,
                "retracted": entry.retracted,
                "disabled": entry.disabled,
                "added_seq": entry.added_seq,
                "last_seq": entry.last_seq,
                "time": entry.time_ms,
            });
            println!("{v}");
        }
        Action::Retract { reason, .. } => {
            let applied = db.apply(&entry.set, &[Change::RetractEntry { entry: id, reason }])?;
            match applied.outcomes.first() {
                Some(Outcome::Retracted(_)) => eprintln!("{id}: retracted from {}", entry.set),
                _ => eprintln!("{id}: already retracted"),
            }
        }
        Action::Disable { .. } | Action::Enable { .. } => {
            let disable = matches!(args.action, Action::Disable { .. });
            db.set_disabled(&id, disable)?;
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
    db.close()?;
    Ok(ExitCode::SUCCESS)
}
