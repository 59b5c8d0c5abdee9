//! `hashfed exchange`: the live exchanges of `hashfed.toml` (NCMEC,
//! StopNCII, ThreatExchange, TCAP): what they fetched, a fetch now, a
//! fresh start. Through the running node's admin socket, or in-process on
//! a stopped node (see [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use hashfed::wire::proto;

use super::admin::NodeAdmin;

/// Arguments of `hashfed exchange`.
#[derive(Args, Debug)]
pub struct ExchangeArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: ExchangeAction,
}

#[derive(Subcommand, Debug)]
enum ExchangeAction {
    /// One line per exchange: kind, set, last success, counts.
    List,
    /// Everything about each exchange (or one): cursor, last success and
    /// attempt, counts, the last error. Exit 1 if one's last fetch failed.
    Status {
        /// Only this exchange.
        name: Option<String>,
    },
    /// Fetch from the exchange now, until its service has no more (waits
    /// for a fetch that runs). Exit 2 with the error if it fails.
    Fetch {
        /// The exchange.
        name: String,
    },
    /// Forget the exchange's cursor: its next fetch starts from the
    /// service's beginning (what is in the set stays; audited).
    Reset {
        /// The exchange.
        name: String,
    },
}

/// Runs `hashfed exchange`.
pub fn run(args: ExchangeArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .ok_or_else(|| anyhow::anyhow!("--dir DIR is required"))?;
    let mut admin = NodeAdmin::open(&dir)?;
    let outcome = match args.action {
        ExchangeAction::List => admin.list_exchanges().map(|list| {
            if list.exchanges.is_empty() {
                println!("no exchanges in hashfed.toml");
            }
            for e in &list.exchanges {
                println!(
                    "{:<20} {:<15} {:<30} {} pages, {} added, {} retracted, last success {}{}",
                    e.name,
                    e.kind,
                    e.set,
                    e.pages,
                    e.added,
                    e.retracted,
                    when(e.last_success_ms),
                    if e.last_error.is_empty() { "" } else { ", FAILING" }
                );
            }
            ExitCode::SUCCESS
        }),
        ExchangeAction::Status { name } => admin.list_exchanges().and_then(|list| {
            let shown: Vec<_> = list
                .exchanges
                .iter()
                .filter(|e| name.as_ref().is_none_or(|n| *n == e.name))
                .collect();
            if let Some(n) = &name {
                anyhow::ensure!(!shown.is_empty(), "no exchange named {n:?} in hashfed.toml");
            }
            for e in &shown {
                print_status(e);
            }
            Ok(if shown.iter().any(|e| !e.last_error.is_empty()) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }),
        ExchangeAction::Fetch { name } => admin.fetch_exchange(name).map(|e| {
            println!(
                "{}: {} pages fetched; {} added, {} updated, {} retracted, {} skipped in all; caught up {}",
                e.name,
                e.pages_fetched,
                e.added,
                e.updated,
                e.retracted,
                e.skipped,
                when(e.caught_up_ms)
            );
            ExitCode::SUCCESS
        }),
        ExchangeAction::Reset { name } => admin.reset_exchange(name).map(|e| {
            println!("{}: cursor cleared; the next fetch starts over", e.name);
            ExitCode::SUCCESS
        }),
    };
    admin.close()?;
    outcome
}

fn print_status(e: &proto::ExchangeStatus) {
    println!("exchange {} ({})", e.name, e.kind);
    println!("  set           {}", e.set);
    println!("  endpoint      {}", e.endpoint);
    println!("  every         {} s", e.interval_secs);
    println!(
        "  cursor        {}",
        if e.cursor.is_empty() {
            "(start)"
        } else {
            &e.cursor
        }
    );
    println!("  last success  {}", when(e.last_success_ms));
    println!("  last attempt  {}", when(e.last_attempt_ms));
    println!("  caught up     {}", when(e.caught_up_ms));
    println!(
        "  counts        {} pages: {} added, {} updated, {} unchanged, {} retracted, {} withdrawals found nothing, {} skipped; {} feedback sent",
        e.pages, e.added, e.updated, e.unchanged, e.retracted, e.not_found, e.skipped, e.feedback_sent
    );
    if e.last_error.is_empty() {
        println!("  last error    none");
    } else {
        println!(
            "  last error    {} ({} failures in a row)",
            e.last_error, e.failures
        );
    }
}

/// A time in ms since the epoch as UTC, or "never".
fn when(ms: u64) -> String {
    match ms {
        0 => "never".into(),
        ms => super::audit::utc(ms),
    }
}
