//! `hashfed serve`: run the node's services until SIGINT or SIGTERM, then
//! close the database cleanly (which writes the index snapshot).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use hashfed::database::Database;
use hashfed::identity::roles::{server_tls, Listener};
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
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen.match_)
            .await
            .with_context(|| format!("binding the match listener to {}", config.listen.match_))?;
        let tls = server_tls(&args.dir, Listener::Match)?;
        eprintln!(
            "hashfed: node {} ({}): match listening on {}",
            config.node_id,
            config.name,
            listener.local_addr()?
        );
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let mut server = tokio::spawn(hashfed::service::serve_match(
            db.clone(),
            tls,
            listener,
            async move { stopped.notified().await },
        ));
        tokio::select! {
            finished = &mut server => return finished.context("match service")?.context("match service"),
            () = shutdown() => {}
        }
        // Stop accepting, let calls in flight finish, but do not wait on
        // idle client connections for ever.
        stop.notify_one();
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(finished) => finished.context("match service")?.context("match service"),
            Err(_) => {
                server.abort();
                let _ = server.await;
                tracing::warn!("connections still open after the grace period; closed");
                Ok(())
            }
        }
    })?;
    drop(runtime);
    let db =
        Arc::try_unwrap(db).map_err(|_| anyhow!("the database is still in use at shutdown"))?;
    db.close()?;
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
