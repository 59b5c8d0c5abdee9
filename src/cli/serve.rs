//! `hashfed serve`: run the node's services until SIGINT or SIGTERM, then
//! close the database cleanly (which writes the index snapshot).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use hashfed::database::Database;
use hashfed::server::Node;
use hashfed::store::StoreOptions;

/// How long calls in flight may run on after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Arguments of `hashfed serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The node directory (made by `hashfed init`).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = hashfed::identity::load_config(&args.dir)?;
    let db = Arc::new(Database::open(
        &super::store_dir(&args.dir),
        &StoreOptions::default(),
    )?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // The node gets the only handle: once it has stopped (every task it
    // started has ended), it hands the database back to be closed.
    let (db, failed) = runtime.block_on(async {
        let mut node = Node::start(&args.dir, &config, db).await?;
        let a = node.addresses().clone();
        eprintln!(
            "hashfed: node {} ({}): match listening on {}",
            config.node_id, config.name, a.match_
        );
        eprintln!("hashfed: admin listening on {}", a.admin);
        eprintln!("hashfed: admin socket {}", a.admin_socket.display());
        if let Some(path) = &a.match_socket {
            eprintln!("hashfed: match socket {}", path.display());
        }
        eprintln!("hashfed: federation listening on {}", a.federation);
        eprintln!("hashfed: metrics listening on http://{}/metrics", a.metrics);
        let failed = tokio::select! {
            failed = node.failed() => Some(match failed {
                Ok(()) => anyhow!("a listener stopped unexpectedly"),
                Err(e) => anyhow::Error::new(e),
            }),
            () = shutdown() => None,
        };
        let db = node
            .into_database(SHUTDOWN_GRACE)
            .await
            .context("stopping the node")?;
        anyhow::Ok((db, failed))
    })?;
    drop(runtime);
    db.close()?;
    if let Some(failed) = failed {
        return Err(failed);
    }
    eprintln!("hashfed: stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
