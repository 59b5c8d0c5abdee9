//! Subcommands of the `hashfed` binary. Each file is one subcommand; errors
//! are `anyhow` here, at the edge, and typed in the library.

mod admin;
mod audit;
mod backup;
mod client;
mod compare;
mod demo;
mod dev_certs;
mod entry;
mod exchange;
mod export;
mod hash;
mod import;
mod init;
mod keys;
mod matching;
mod peer;
mod report;
mod serve;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, as grep and ripgrep use them (shown by `hashfed --help`).
const EXIT_CODES: &str = "\
Exit codes:
  0  done: found (match), consistent (verify, audit verify), equal (set verify)
  1  ran fine, but nothing found or a check failed: no match, no such entry
     (entry show), verify inconsistent, audit log altered, sets differing
     from peers (set verify), a certificate expiring (status); import:
     records refused
  2  error: bad arguments, node directory missing or unreachable, I/O
     error, a file that failed to hash (hash)

Commands that read or change the database (match, export, verify, sets,
stats, entry, set, peer, audit, report, keys, backup, status, import) go
through the running node's admin socket; when the node is stopped they
run the same operation on its database directly.";

/// A hash-sharing federation node for child-safety work.
#[derive(Parser, Debug)]
#[command(
    name = "hashfed",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a node directory: signing key, node id, certificates, config.
    Init(init::InitArgs),
    /// Run the node's services (match, admin, federation, metrics) until stopped.
    Serve(serve::ServeArgs),
    /// Issue client certificates for local services and operators.
    Client(client::ClientArgs),
    /// Write a fresh set of development certificates (what `certs/` holds).
    DevCerts(dev_certs::DevCertsArgs),
    /// Hash images: PDQ (as Meta's reference) plus MD5, SHA-1, SHA-256, BLAKE3.
    Hash(hash::HashArgs),
    /// Print the Hamming distance between two PDQ hashes.
    Compare(compare::CompareArgs),
    /// Run a three-node federation locally: publish, vet, sync, match, feedback, retract.
    ///
    /// Two hotlines and a provider, each a real node (own identity, sled store,
    /// mTLS listeners on 127.0.0.1) in a temporary directory. `hashfed demo pdq`
    /// shows PDQ on generated images instead: edits, rotations, matches.
    Demo(demo::DemoArgs),
    /// Load hash lists (hashfed JSON lines, ThreatExchange CSV or lines,
    /// NCMEC XML, StopNCII JSON) into a set.
    Import(import::ImportArgs),
    /// Write sets out as JSON lines or ThreatExchange CSV or lines.
    Export(export::ExportArgs),
    /// Look hashes or images up in the database.
    Match(matching::MatchArgs),
    /// Show, retract, disable or enable one entry.
    Entry(entry::EntryArgs),
    /// Check the database for consistency (logs, chains, keys, slots).
    Verify(verify::DirArgs),
    /// List the sets with their log heads and digests.
    Sets(verify::DirArgs),
    /// Counts: sets, entries, log records, matches, feedback.
    Stats(verify::DirArgs),
    /// Peers: invite (write our card), add, grant, list, suspend, resume, revoke.
    Peer(peer::PeerArgs),
    /// Sets and peers: share (signed policy), verify (compare with peers), feedback received.
    Set(peer::SetArgs),
    /// The audit log: list it, or verify its hash chain and signed head.
    Audit(audit::AuditArgs),
    /// Rotate the signing key and renew the certificates, while the node serves.
    Keys(keys::KeysArgs),
    /// Live exchanges (NCMEC, StopNCII, ThreatExchange, TCAP): list, status,
    /// fetch now, reset.
    Exchange(exchange::ExchangeArgs),
    /// The transparency report over a period: signal types in use, queries,
    /// matches, feedback, false-positive rate, entries added and retracted.
    Report(report::ReportArgs),
    /// The node at a glance: running or not, certificates and when they
    /// expire (exit 1 if one does within 30 days), what waits for operators.
    Status(verify::DirArgs),
    /// Write a consistent copy of the database to a file, while the node
    /// serves (owner-only: it holds the sets).
    Backup(backup::BackupArgs),
    /// Make the node's database from a backup (the node stopped); it then
    /// resumes syncing from the cursors the backup holds.
    Restore(backup::RestoreArgs),
}

/// Where a node directory keeps its database.
fn store_dir(dir: &Path) -> PathBuf {
    dir.join("store")
}

/// Runs the parsed command; the exit code says whether everything succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init(args) => init::run(args),
        Command::Client(args) => client::run(args),
        Command::DevCerts(args) => dev_certs::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Hash(args) => hash::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Match(args) => matching::run(args),
        Command::Entry(args) => entry::run(args),
        Command::Verify(args) => verify::verify(args),
        Command::Sets(args) => verify::sets(args),
        Command::Stats(args) => verify::stats(args),
        Command::Peer(args) => peer::run(args),
        Command::Set(args) => peer::run_set(args),
        Command::Audit(args) => audit::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Exchange(args) => exchange::run(args),
        Command::Report(args) => report::run(args),
        Command::Status(args) => status::run(args),
        Command::Backup(args) => backup::backup(args),
        Command::Restore(args) => backup::restore(args),
    }
}
