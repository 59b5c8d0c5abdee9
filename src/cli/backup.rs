//! `hashfed backup` and `hashfed restore`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use hashfed::store::{Store, StoreOptions};

use super::admin::NodeAdmin;

/// Arguments of `hashfed backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The file to write (must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Arguments of `hashfed restore`.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The node directory (its node must be stopped).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Move the node's current database aside (to `store.before-restore-<time>`)
    /// instead of refusing.
    #[arg(long)]
    force: bool,
    /// The backup file.
    file: PathBuf,
}

/// Runs `hashfed backup`: written to a temporary file (owner-only), synced,
/// then renamed, so the named file is always a whole backup.
pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    if args.out.exists() {
        bail!("{} exists: choose another --out", args.out.display());
    }
    let tmp = args.out.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut admin = NodeAdmin::open(&args.dir)?;
    let written = admin.backup(&mut out);
    admin.close()?;
    let finish = written.and_then(|bytes| {
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &args.out)?;
        Ok(bytes)
    });
    match finish {
        Ok(bytes) => {
            eprintln!("backup written to {} ({bytes} bytes)", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Runs `hashfed restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if hashfed::server::admin_socket(&args.dir).exists() {
        bail!(
            "the node in {} is running (its admin socket exists): stop it before restoring",
            args.dir.display()
        );
    }
    let store_dir = super::store_dir(&args.dir);
    if store_dir.exists() {
        if !args.force {
            bail!(
                "{} already holds a database: restore with --force to move it aside",
                store_dir.display()
            );
        }
        let aside = args.dir.join(format!(
            "store.before-restore-{}",
            hashfed::database::now_ms()
        ));
        std::fs::rename(&store_dir, &aside)
            .with_context(|| format!("moving {} aside", store_dir.display()))?;
        eprintln!("the previous database is in {}", aside.display());
    }
    let summary = Store::restore(&store_dir, &args.file, &StoreOptions::default())?;
    // Opening it checks the layout and rebuilds the id map; verifying it
    // proves the copy whole before the node serves from it.
    let store = Store::open(&store_dir, &StoreOptions::default())?;
    let report = store.verify()?;
    if !report.is_ok() {
        for p in &report.problems {
            eprintln!("hashfed: restored database: {p}");
        }
        bail!("the restored database does not verify");
    }
    drop(store);
    writeln!(
        std::io::stderr(),
        "restored {} keys from {}: {} sets, {} entries; the node resumes syncing from the backup's heads",
        summary.keys,
        args.file.display(),
        report.sets,
        report.entries
    )?;
    Ok(ExitCode::SUCCESS)
}
