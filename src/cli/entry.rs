//! `hashfed entry`: look at one entry, withdraw it, or switch it off locally
//! (through the admin service: see [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use hashfed::model::EntryId;
use hashfed::wire::proto;

use super::admin::{is_not_found, NodeAdmin, OperatorArgs};

/// Arguments of `hashfed entry`.
#[derive(Args, Debug)]
pub struct EntryArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    operator: OperatorArgs,
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
    /// Put an entry up for vetting in a set that asks for it (`hashfed set
    /// vetting`): it waits, unmatched and unshared, for its reviewers.
    Submit {
        /// The set.
        #[arg(long)]
        set: String,
        /// `TYPE:VALUE` (e.g. `md5:…`) or a bare 64-digit PDQ hash.
        signal: String,
        /// Labels (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Confirm a pending entry, as the operator of --operator-cert (never
    /// the one who submitted it).
    Confirm {
        /// Entry id (32 hex digits).
        id: EntryId,
    },
    /// Withdraw a pending entry; it never enters the set.
    Reject {
        /// Entry id (32 hex digits).
        id: EntryId,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List entries held for review (from peers under review).
    Held {
        /// Only this set.
        #[arg(long, default_value = "")]
        set: String,
    },
    /// Let held entries match: one by id, or every held entry of --set.
    Release {
        /// Entry id (32 hex digits); or none with --set.
        id: Option<EntryId>,
        /// Every held entry of this set.
        #[arg(long, default_value = "")]
        set: String,
    },
    /// List entries waiting for confirmations.
    Pending {
        /// Only this set.
        #[arg(long, default_value = "")]
        set: String,
    },
}

pub fn run(args: EntryArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.ok_or_else(|| anyhow!("--dir DIR is required"))?;
    let mut node = NodeAdmin::open_as(&dir, args.operator.login().as_ref())?;
    let result = act(&mut node, args.action);
    node.close()?;
    result
}

fn act(node: &mut NodeAdmin, action: Action) -> anyhow::Result<ExitCode> {
    match action {
        Action::Show { id } => {
            let e = match node.get_entry(id.to_string()) {
                Ok(e) => e,
                // Like grep: 1 means "ran fine, found nothing".
                Err(e) if is_not_found(&e) => {
                    eprintln!("hashfed: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e),
            };
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
                "held": e.held,
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
        Action::Submit {
            set,
            signal,
            labels,
        } => {
            let (signal_type, value) = signal.split_once(':').unwrap_or(("pdq", &signal));
            let p = node.submit_entry(proto::SubmitEntryRequest {
                set,
                signal_type: signal_type.to_owned(),
                value: value.to_owned(),
                labels,
                external_id: String::new(),
            })?;
            println!("{}", p.id);
            eprintln!(
                "{}: waiting in {} for {} reviewers other than {}",
                p.id, p.set, p.needed, p.submitter
            );
        }
        Action::Confirm { id } => {
            let c = node.confirm_entry(id.to_string())?;
            let p = c.pending.unwrap_or_default();
            if c.vetted {
                let seq = c.entry.map_or(0, |e| e.last_seq);
                eprintln!(
                    "{id}: vetted by {}; in {} at seq {seq}",
                    p.reviewers.join(", "),
                    p.set
                );
            } else {
                eprintln!("{id}: {} of {} confirmations", p.reviewers.len(), p.needed);
            }
        }
        Action::Reject { id, reason } => {
            let p = node.reject_entry(id.to_string(), reason)?;
            eprintln!("{id}: withdrawn from {}'s pending entries", p.set);
        }
        Action::Held { set } => {
            for e in node.list_held(set)?.entries {
                println!(
                    "{}\t{}\t{}\tseq {}",
                    e.id,
                    e.set,
                    type_name(&e.signal.unwrap_or_default()),
                    e.added_seq
                );
            }
        }
        Action::Release { id, set } => {
            let r = node.release_held(id.map(|i| i.to_string()).unwrap_or_default(), set)?;
            eprintln!("{} entries released: they match now", r.released);
        }
        Action::Pending { set } => {
            for p in node.list_pending(set)?.entries {
                println!(
                    "{}\t{}\t{} of {}\tsubmitted by {}\tconfirmed by {}",
                    p.id,
                    p.set,
                    p.reviewers.len(),
                    p.needed,
                    p.submitter,
                    p.reviewers.join(",")
                );
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
    hashfed::wire::signal_from(signal)
        .map(|s| s.kind().name().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}
