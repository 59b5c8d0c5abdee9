//! `hashfed`: the command line. Parsing and presentation live here and in
//! `src/cli/`; all behaviour lives in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    init_logging();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("hashfed: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, `warn` and above unless `RUST_LOG` says otherwise.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
