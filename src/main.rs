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
            // As grep: 1 is an answer (nothing found, a check failed), 2
            // an error (see `hashfed --help`).
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr, `warn` and above unless `RUST_LOG` says otherwise;
/// colours only on a terminal (log files and collectors get plain text).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
