//! `hashfed peer` and `hashfed set`: whom this node federates with, and
//! who may receive its sets (through the admin service: see
//! [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use hashfed::model::Verdict;
use hashfed::peers::PeerCard;
use hashfed::wire::proto;

use super::admin::NodeAdmin;

/// Arguments of `hashfed peer`.
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: PeerAction,
}

#[derive(Subcommand, Debug)]
enum PeerAction {
    /// Write this node's peer card (public: hand it to the other node's operators).
    Invite {
        /// host:port where peers reach this node's federation listener
        /// (default: listen.federation from hashfed.toml).
        #[arg(long)]
        endpoint: Option<String>,
        /// Write the card here instead of standard output.
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
    /// Add a peer from its card, with what we send it and what we take from it.
    Add {
        /// The peer's card file.
        card: PathBuf,
        /// Set patterns we send it: `<origin>/<name>`, `<origin>/*` or `*` (repeatable).
        #[arg(long)]
        send: Vec<String>,
        /// Set patterns we take from it (repeatable).
        #[arg(long)]
        accept: Vec<String>,
    },
    /// Replace what we send a peer and take from it.
    Grant {
        /// The peer's name.
        name: String,
        /// Set patterns we send it (repeatable; none: nothing).
        #[arg(long)]
        send: Vec<String>,
        /// Set patterns we take from it (repeatable; none: nothing).
        #[arg(long)]
        accept: Vec<String>,
    },
    /// List peers, their grants, connections and sync state.
    List,
    /// Hold new entries from a peer for local review (`on`: they sync but
    /// match only once released with `hashfed entry release`), or accept
    /// them as they come (`off`).
    Review {
        /// The peer's name.
        name: String,
        /// `on` or `off`.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(["on", "off"]))]
        mode: String,
    },
    /// Cut a peer off until resumed (closes its connections at once).
    Suspend {
        /// The peer's name.
        name: String,
    },
    /// Let a suspended peer back in.
    Resume {
        /// The peer's name.
        name: String,
    },
    /// Cut a peer off for good (closes its connections at once).
    Revoke {
        /// The peer's name.
        name: String,
    },
}

fn dir(dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    dir.context("--dir DIR is required (the node directory)")
}

fn print_peer(p: &proto::Peer) {
    println!(
        "{}  {}  {}  {}  send=[{}] accept=[{}] connections={} sync={}{}",
        p.name,
        p.node_id,
        p.endpoint,
        p.status,
        p.send.join(","),
        p.accept.join(","),
        p.open_connections,
        p.sync,
        if p.review { "  review=on" } else { "" }
    );
}

/// Runs `hashfed peer`.
pub fn run(args: PeerArgs) -> anyhow::Result<ExitCode> {
    let dir = dir(args.dir)?;
    if let PeerAction::Invite { endpoint, out } = &args.action {
        let endpoint = match endpoint {
            Some(e) => e.clone(),
            None => hashfed::identity::load_config(&dir)?.listen.federation,
        };
        let card = PeerCard::of_node(&dir, &endpoint)?.to_toml()?;
        match out {
            Some(path) => {
                std::fs::write(path, card)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("peer card written to {}", path.display());
            }
            None => print!("{card}"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut admin = NodeAdmin::open(&dir)?;
    match args.action {
        PeerAction::Invite { .. } => {}
        PeerAction::Add { card, send, accept } => {
            let card = std::fs::read_to_string(&card)
                .with_context(|| format!("reading the peer card {}", card.display()))?;
            let peer = admin.add_peer(proto::AddPeerRequest { card, send, accept })?;
            print_peer(&peer);
        }
        PeerAction::Grant { name, send, accept } => {
            let peer = admin.set_peer_grants(proto::SetPeerGrantsRequest { name, send, accept })?;
            print_peer(&peer);
        }
        PeerAction::List => {
            for p in admin.list_peers()?.peers {
                print_peer(&p);
            }
        }
        PeerAction::Review { name, mode } => {
            print_peer(&admin.set_peer_review(name, mode == "on")?)
        }
        PeerAction::Suspend { name } => print_peer(&admin.set_peer_status(name, "suspended")?),
        PeerAction::Resume { name } => print_peer(&admin.set_peer_status(name, "active")?),
        PeerAction::Revoke { name } => print_peer(&admin.set_peer_status(name, "revoked")?),
    }
    admin.close()?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `hashfed set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: SetAction,
}

#[derive(Subcommand, Debug)]
enum SetAction {
    /// Create one of this node's own sets: a block list, or with `--allow`
    /// an allowlist of known-benign hashes (a query that matches one of
    /// its entries within its threshold gets no hit from the block lists).
    Create {
        /// The set, `<this node's name>/<name>`.
        set: String,
        /// An allowlist instead of a block list.
        #[arg(long)]
        allow: bool,
        /// Free text for operators.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Change who may receive one of this node's own sets (signed anew).
    Share {
        /// The set, `<this node's name>/<name>`.
        set: String,
        /// Node ids that may ever receive it, or `*` (repeatable; none: any peer it is granted to).
        #[arg(long = "with")]
        share_with: Vec<String>,
        /// Let receivers pass the set on to their own peers.
        #[arg(long)]
        reshare: bool,
    },
    /// Compare every shared set's head and digest with the peers that have it;
    /// exit 1 if any differs.
    Verify,
    /// Feedback peers sent about this node's own entries.
    Feedback,
    /// Stop matching a whole set on this node at once (a kill switch); it
    /// keeps syncing and its origin is not told.
    Suppress {
        /// The set.
        set: String,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// What happens when distinct peers call an entry of one of this
    /// node's sets a false positive.
    DisputePolicy {
        /// The set.
        set: String,
        /// Reports (from distinct nodes, since the entry's last review)
        /// that raise it for review; 0: off.
        #[arg(long)]
        threshold: u32,
        /// Also suspend a raised entry network-wide until reviewed.
        #[arg(long)]
        suspend: bool,
    },
    /// The dispute review queue: entries peers sent feedback about since
    /// their last review, most false positives first.
    Disputes {
        /// Only this set.
        #[arg(long, default_value = "")]
        set: String,
    },
    /// Mark a disputed entry reviewed; --restore adds a suspended one back.
    Review {
        /// The entry id.
        id: String,
        /// Add the entry back (it was wrongly suspended).
        #[arg(long)]
        restore: bool,
        /// Why, for the audit log.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Undo `suppress`.
    Unsuppress {
        /// The set.
        set: String,
    },
    /// How many reviewers (besides the submitter) must confirm each new
    /// entry of a set before it enters the set's log: 0 (off) or 2 or more.
    Vetting {
        /// The set.
        set: String,
        /// Reviewers per entry.
        reviewers: u32,
    },
}

/// Runs `hashfed set`.
pub fn run_set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let mut admin = NodeAdmin::open(&dir(args.dir)?)?;
    let mut code = ExitCode::SUCCESS;
    match args.action {
        SetAction::Create {
            set,
            allow,
            description,
        } => {
            let s = admin.create_set(proto::CreateSetRequest {
                set,
                allow,
                description,
            })?;
            let kind = if s.kind == "allow" {
                "an allowlist: queries that match its entries get no hit from the block lists"
            } else {
                "a block list"
            };
            println!("{}: {kind} (seq {})", s.id, s.head_seq);
        }
        SetAction::Share {
            set,
            share_with,
            reshare,
        } => {
            let s = admin.set_policy(proto::SetPolicyRequest {
                set,
                share_with,
                reshare,
            })?;
            println!("{}  seq {}  {}", s.id, s.head_seq, s.info_json);
        }
        SetAction::Suppress { set, reason } => {
            let s = admin.set_suppressed(set, true, reason)?;
            println!(
                "{}: suppressed on this node (still syncing; seq {})",
                s.id, s.head_seq
            );
        }
        SetAction::Unsuppress { set } => {
            let s = admin.set_suppressed(set, false, String::new())?;
            println!("{}: matching again", s.id);
        }
        SetAction::DisputePolicy {
            set,
            threshold,
            suspend,
        } => {
            let s = admin.set_dispute_policy(proto::SetDisputePolicyRequest {
                set,
                threshold,
                suspend,
            })?;
            println!("{}  seq {}  {}", s.id, s.head_seq, s.info_json);
        }
        SetAction::Disputes { set } => {
            for d in admin.list_disputes(set)?.disputes {
                println!(
                    "{}\t{}\t{} false positive{}, {} confirmed\t{}{}\treporters {}",
                    d.entry_id,
                    d.set,
                    d.false_positives,
                    if d.false_positives == 1 { "" } else { "s" },
                    d.confirmed,
                    if d.raised {
                        "RAISED"
                    } else {
                        "below threshold"
                    },
                    if d.retracted { ", withdrawn" } else { "" },
                    d.reporters.join(",")
                );
            }
        }
        SetAction::Review {
            id,
            restore,
            reason,
        } => {
            let e = admin.review_dispute(proto::ReviewDisputeRequest {
                id,
                restore,
                reason,
            })?;
            println!(
                "{}: reviewed; {}",
                e.id,
                if e.retracted { "withdrawn" } else { "matching" }
            );
        }
        SetAction::Vetting { set, reviewers } => {
            let s = admin.set_vetting(set, reviewers)?;
            println!("{}  seq {}  {}", s.id, s.head_seq, s.info_json);
        }
        SetAction::Verify => {
            let report = admin.verify_sets()?;
            if report.comparisons.is_empty() {
                println!("no set is shared with or taken from an active peer");
            }
            for c in report.comparisons {
                println!(
                    "{}  peer {}  local seq {}  peer seq {}  {}",
                    c.set, c.peer, c.local_seq, c.peer_seq, c.verdict
                );
                if c.verdict != "equal" {
                    code = ExitCode::from(1);
                }
            }
        }
        SetAction::Feedback => {
            for f in admin.received_feedback()?.items {
                let verdict: Verdict = f
                    .verdict
                    .parse()
                    .with_context(|| format!("the node's feedback on {}", f.entry_id))?;
                println!(
                    "{}  {}  {}  {}  reporter {}  via {}  {}",
                    f.set,
                    f.entry_id,
                    verdict,
                    f.reason,
                    f.reporter_node_id,
                    f.via,
                    if f.verified {
                        "signature verified"
                    } else {
                        "reporter key unknown"
                    }
                );
            }
        }
    }
    admin.close()?;
    Ok(code)
}
