//! `hashfed demo`: the federation at work, with nothing to download.
//!
//! * `hashfed demo` starts three real nodes in a temporary directory (two
//!   hotlines and a provider, each with its own identity, sled store and
//!   mTLS listeners on loopback) and walks one hash list through them:
//!   publish, vet, sync, match, false-positive feedback, retraction
//!   (see [`federation`]);
//! * `hashfed demo pdq` shows PDQ on generated images: edits, rotations,
//!   matches (see [`pdq`]).
//!
//! The "abuse images" are generated scenes, never real content.

mod federation;
mod pdq;

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Arguments of `hashfed demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// Seed of the generated scenes.
    #[arg(long, default_value_t = 7, global = true)]
    seed: u32,
}

#[derive(Subcommand, Debug)]
enum DemoCommand {
    /// Show PDQ at work on generated images: edits, rotations, matches.
    Pdq,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        None => federation::run(args.seed),
        Some(DemoCommand::Pdq) => pdq::run(args.seed),
    }
}
