//! `hashfed dev-certs`: (re)generate the development certificates that the
//! repository keeps in `certs/`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use hashfed::identity::dev;

/// Arguments of `hashfed dev-certs`.
#[derive(Args, Debug)]
pub struct DevCertsArgs {
    /// Directory to write into; existing files are never overwritten.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: DevCertsArgs) -> anyhow::Result<ExitCode> {
    dev::write(&args.out)?;
    for (stem, what) in dev::FILES {
        println!("{stem}.pem, {stem}.key\t{what}");
    }
    eprintln!(
        "hashfed: development certificates written to {} (their keys are not secret: never use them in production)",
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
