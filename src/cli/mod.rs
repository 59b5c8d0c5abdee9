//! Subcommands of the `hashfed` binary. Each file is one subcommand; errors
//! are `anyhow` here, at the edge, and typed in the library.

mod compare;
mod demo;
mod hash;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A hash-sharing federation node for child-safety work.
#[derive(Parser, Debug)]
#[command(name = "hashfed", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Hash images: PDQ (as Meta's reference) plus MD5, SHA-1, SHA-256, BLAKE3.
    Hash(hash::HashArgs),
    /// Print the Hamming distance between two PDQ hashes.
    Compare(compare::CompareArgs),
    /// Show PDQ at work on generated images: edits, rotations, matches.
    Demo(demo::DemoArgs),
}

/// Runs the parsed command; the exit code says whether everything succeeded.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Hash(args) => hash::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Demo(args) => demo::run(args),
    }
}
