//! Keeping each exchange current: one schedule per exchange (a task of
//! the node's, with its lifetime), and the pass it runs: fetch the page
//! after the stored cursor, apply it with the cursor past it in one batch,
//! until the service has no more.
//!
//! What HMA's users ran into, and what is done about it here:
//! - two fetchers of one exchange (HMA #1734): each exchange has a lease;
//!   a second pass (an operator's `hashfed exchange fetch` while the
//!   schedule runs one) waits for the first, then starts from where it
//!   left off;
//! - a service that stalls, fails or rate-limits: every request has a
//!   deadline ([`super::http`]); failures wait, doubling from 1 s to 15
//!   min with jitter (so a fleet of nodes does not come back in step),
//!   and at least what the service's `Retry-After` asks;
//! - malformed or partial pages (HMA #2004/#2005): the clients skip the
//!   bad records with a reason, counted in the state; only an answer that
//!   does not parse at all fails the page, and then the same cursor is
//!   retried, so nothing is skipped silently and nothing stalls the rest;
//! - a service that says "more" but hands back the same cursor again and
//!   again: three times and the pass stops with an error;
//! - a crash: the cursor is written with the records it covers, so a
//!   restart fetches the next page, never one twice or one too few (a page
//!   seen twice would change nothing anyway: imports are idempotent).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Client, ExchangeError};
use crate::config::ExchangeConfig;
use crate::error::Chain;
use crate::model::exchange::ExchangeState;
use crate::model::SetId;
use crate::ops::{Actor, ExchangePage, Ops, OpsError};
use crate::tasks::Tasks;

/// First pause after a failed pass.
const MIN_BACKOFF: Duration = Duration::from_secs(1);

/// Longest pause after failed passes (and the pause after an error that
/// needs an operator).
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// Most pages one pass applies before it lets the schedule breathe (the
/// next pass goes on from the cursor).
const MAX_PAGES_PER_PASS: u64 = 100_000;

/// How often waiting verdicts are looked for.
const FEEDBACK_EVERY: Duration = Duration::from_secs(2);

/// Times a service may hand back the cursor it was given, saying there is
/// more, before the pass stops.
const MAX_REPEATS: u32 = 3;

/// Why a pass ended early.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No such exchange in `hashfed.toml`.
    #[error("no exchange named {0:?} in hashfed.toml")]
    Unknown(String),
    /// The service, or the way to it.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// Applying a page.
    #[error(transparent)]
    Ops(#[from] OpsError),
    /// The work applying a page failed (it panicked).
    #[error("applying a page")]
    Task(#[from] tokio::task::JoinError),
    /// The service keeps saying "more" with the same cursor.
    #[error("the service answered the same cursor {0} times in a row, saying there is more")]
    Stuck(u32),
}

impl FetchError {
    fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::Exchange(e) => e.retry_after(),
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        match self {
            FetchError::Exchange(e) => e.retryable(),
            FetchError::Unknown(_) => false,
            _ => true,
        }
    }
}

/// What one pass did.
#[derive(Clone, Debug)]
pub struct Pass {
    /// Pages applied.
    pub pages: u64,
    /// The exchange's state after it.
    pub state: ExchangeState,
}

struct Exchange {
    config: ExchangeConfig,
    /// Held by the pass that runs: one at a time per exchange.
    lease: tokio::sync::Mutex<()>,
}

/// The node's exchanges.
pub struct Exchanges {
    dir: PathBuf,
    ops: Arc<Ops>,
    tasks: Tasks,
    metrics: Arc<crate::metrics::Metrics>,
    by_name: BTreeMap<String, Exchange>,
}

impl std::fmt::Debug for Exchanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanges")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Exchanges {
    /// The exchanges `configs` of the node in `dir` (its `hashfed.toml`),
    /// checked: names unique and path-safe, each set one of this node's
    /// own (`<node name>/<name>`). Pages are applied through `ops`, as
    /// `tasks`, and counted in `metrics`.
    pub fn new(
        dir: &Path,
        configs: &[ExchangeConfig],
        ops: Arc<Ops>,
        tasks: Tasks,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, ExchangeError> {
        let mut by_name = BTreeMap::new();
        for config in configs {
            check(config, ops.node_name())?;
            let exchange = Exchange {
                config: config.clone(),
                lease: tokio::sync::Mutex::new(()),
            };
            if by_name.insert(config.name.clone(), exchange).is_some() {
                return Err(ExchangeError::Config(format!(
                    "two exchanges are named {:?}",
                    config.name
                )));
            }
        }
        Ok(Exchanges {
            dir: dir.to_owned(),
            ops,
            tasks,
            metrics,
            by_name,
        })
    }

    /// The configuration of exchange `name`.
    pub fn config(&self, name: &str) -> Option<&ExchangeConfig> {
        self.by_name.get(name).map(|e| &e.config)
    }

    /// Every exchange with its state, by name.
    pub fn list(&self) -> Result<Vec<(ExchangeConfig, ExchangeState)>, OpsError> {
        self.by_name
            .values()
            .map(|e| Ok((e.config.clone(), self.ops.exchange_state(&e.config.name)?)))
            .collect()
    }

    /// Starts every exchange's schedule and its feedback sender, as the
    /// node's tasks.
    pub fn start(self: &Arc<Self>) {
        for name in self.by_name.keys() {
            let (me, exchange) = (self.clone(), name.clone());
            self.tasks.spawn(async move { me.schedule(exchange).await });
            let (me, name) = (self.clone(), name.clone());
            self.tasks
                .spawn(async move { me.send_feedback(name).await });
        }
    }

    /// Exchange `name`'s verdicts sent back until none waits (each removed
    /// once its service took it, so a restart sends what was not sent, and
    /// nothing twice). Returns how many went.
    pub async fn flush_feedback(&self, name: &str) -> Result<u64, FetchError> {
        let exchange = self
            .by_name
            .get(name)
            .ok_or_else(|| FetchError::Unknown(name.to_owned()))?;
        let config = &exchange.config;
        let mut client: Option<Client> = None;
        let mut sent = 0;
        loop {
            let (ops, cfg) = (self.ops.clone(), config.clone());
            let items = self
                .tasks
                .spawn_blocking(move || ops.exchange_outbox(&cfg, 64))
                .await??;
            if items.is_empty() {
                return Ok(sent);
            }
            for (key, item) in items {
                if self.tasks.stopping().is_cancelled() {
                    return Ok(sent);
                }
                let Some(signal) = item.signal() else {
                    self.feedback_done(config, key, item, "its stored hash does not read back")
                        .await?;
                    continue;
                };
                let outgoing = super::OutgoingFeedback {
                    external_id: item.external_id.clone(),
                    signal,
                    verdict: item.verdict,
                    reason: item.reason.clone(),
                };
                let mut owned = match client.take() {
                    Some(c) => c,
                    None => Client::for_node(&self.dir, config)?,
                };
                let (ops, cfg) = (self.ops.clone(), config.clone());
                // Sent and recorded as one piece of work that a stopping
                // node waits for (the request has its deadline): a verdict
                // the service took is removed before the node is down, so
                // a restart does not send it again.
                let (owned, outcome) = self
                    .tasks
                    .spawn_uninterrupted(async move {
                        let refused = match owned.send_feedback(&outgoing).await {
                            Ok(()) => String::new(),
                            // Refused for good (the service does not know
                            // the entry, or takes no feedback): dropped,
                            // audited with the reason, so it does not
                            // block the rest.
                            Err(e) if !e.retryable() => Chain(&e).to_string(),
                            Err(e) => return (owned, Err(FetchError::from(e))),
                        };
                        let done = tokio::task::spawn_blocking(move || {
                            ops.exchange_feedback_done(&cfg, &key, &item, &refused)
                                .map(|_| refused.is_empty())
                        })
                        .await;
                        let outcome = match done {
                            Ok(Ok(went)) => Ok(went),
                            Ok(Err(e)) => Err(FetchError::from(e)),
                            Err(e) => Err(FetchError::from(e)),
                        };
                        (owned, outcome)
                    })
                    .await?;
                client = Some(owned);
                if outcome? {
                    self.metrics.exchange_feedback_sent(name);
                    sent += 1;
                }
            }
        }
    }

    async fn feedback_done(
        &self,
        config: &ExchangeConfig,
        key: Vec<u8>,
        item: crate::model::exchange::FeedbackOut,
        refused: &str,
    ) -> Result<(), FetchError> {
        let (ops, cfg, refused) = (self.ops.clone(), config.clone(), refused.to_owned());
        self.tasks
            .spawn_blocking(move || ops.exchange_feedback_done(&cfg, &key, &item, &refused))
            .await??;
        Ok(())
    }

    /// Exchange `name`'s feedback sender: every few seconds, what waits
    /// goes; after a failure it waits longer, doubling.
    async fn send_feedback(self: Arc<Self>, name: String) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let wait = match self.flush_feedback(&name).await {
                Ok(_) => {
                    backoff = MIN_BACKOFF;
                    FEEDBACK_EVERY
                }
                Err(e) => {
                    tracing::warn!(exchange = %name, error = %Chain(&e), "sending feedback to the exchange failed");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    jitter(backoff).max(e.retry_after().unwrap_or_default())
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One pass of exchange `name` now, until its service has no more
    /// (waiting for a pass that runs to end first).
    pub async fn fetch(&self, name: &str) -> Result<Pass, FetchError> {
        let exchange = self
            .by_name
            .get(name)
            .ok_or_else(|| FetchError::Unknown(name.to_owned()))?;
        let _lease = exchange.lease.lock().await;
        let result = self.pass(&exchange.config).await;
        if let Err(e) = &result {
            self.metrics.exchange_failure(name);
            let (ops, name, why) = (self.ops.clone(), name.to_owned(), Chain(e).to_string());
            self.tasks
                .spawn_blocking(move || ops.exchange_failed(&name, &why))
                .await??;
        }
        result
    }

    /// Forgets exchange `name`'s cursor (see [`Ops::reset_exchange`]),
    /// after any pass that runs.
    pub async fn reset(&self, actor: &Actor, name: &str) -> Result<ExchangeState, FetchError> {
        let exchange = self
            .by_name
            .get(name)
            .ok_or_else(|| FetchError::Unknown(name.to_owned()))?;
        let _lease = exchange.lease.lock().await;
        Ok(self.ops.reset_exchange(actor, name)?)
    }

    async fn pass(&self, config: &ExchangeConfig) -> Result<Pass, FetchError> {
        // Credentials are read at every pass: replacing the file is how
        // an operator rotates them.
        let mut client = Client::for_node(&self.dir, config)?;
        let mut state = self.ops.exchange_state(&config.name)?;
        let (mut pages, mut repeats) = (0u64, 0u32);
        // The next page is fetched while the last one is written: its
        // cursor is the one the last page's batch lands, so at most two
        // pages are held, and the server's time and the store's overlap.
        let mut cursor = state.cursor.clone();
        let mut writing = None;
        loop {
            let fetched = client.fetch(&cursor).await;
            if let Some(write) = writing.take() {
                state = Self::landed(write).await?;
            }
            let page = fetched?;
            if let Some(first) = page.skipped.first() {
                tracing::warn!(
                    exchange = %config.name,
                    skipped = page.skipped.len(),
                    first = %first.reason,
                    "records of a page skipped"
                );
            }
            let (more, same) = (page.more, page.cursor == cursor);
            self.metrics.exchange_page(
                &config.name,
                page.items.len() as u64,
                page.skipped.len() as u64,
            );
            cursor.clone_from(&page.cursor);
            let page = ExchangePage {
                skipped: page.skipped.len() as u64,
                items: page.items,
                cursor: page.cursor,
                caught_up: !page.more,
            };
            let (ops, cfg) = (self.ops.clone(), config.clone());
            writing = Some(
                self.tasks
                    .spawn_blocking(move || ops.apply_exchange_page(&cfg, page)),
            );
            pages += 1;
            if !more || pages >= MAX_PAGES_PER_PASS {
                break;
            }
            repeats = if same { repeats + 1 } else { 0 };
            if repeats >= MAX_REPEATS {
                break;
            }
        }
        if let Some(write) = writing.take() {
            state = Self::landed(write).await?;
        }
        if repeats >= MAX_REPEATS {
            return Err(FetchError::Stuck(repeats));
        }
        tracing::info!(exchange = %config.name, pages, "exchange fetched");
        Ok(Pass { pages, state })
    }

    /// The state a page's write landed, once it has.
    async fn landed(
        write: tokio::task::JoinHandle<Result<ExchangeState, OpsError>>,
    ) -> Result<ExchangeState, FetchError> {
        Ok(write.await??)
    }

    /// Exchange `name`'s schedule: a pass, then its interval (or, after a
    /// failure, the backoff), until the node stops.
    async fn schedule(self: Arc<Self>, name: String) {
        let Some(exchange) = self.by_name.get(&name) else {
            return;
        };
        let interval = Duration::from_secs(exchange.config.interval_secs.max(1));
        let mut backoff = MIN_BACKOFF;
        loop {
            let wait = match self.fetch(&name).await {
                Ok(_) => {
                    backoff = MIN_BACKOFF;
                    interval
                }
                Err(e) => {
                    tracing::warn!(exchange = %name, error = %Chain(&e), "exchange fetch failed");
                    let base = if e.retryable() { backoff } else { MAX_BACKOFF };
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    jitter(base).max(e.retry_after().unwrap_or_default())
                }
            };
            tokio::select! {
                () = self.tasks.stopping().cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// `base` scaled by a random factor in [0.5, 1.5).
fn jitter(base: Duration) -> Duration {
    use rand_core::RngCore as _;
    let r = rand_core::OsRng.next_u32() as f64 / (u32::MAX as f64 + 1.0);
    base.mul_f64(0.5 + r)
}

/// An exchange's configuration as this node can run it.
fn check(config: &ExchangeConfig, node_name: &str) -> Result<(), ExchangeError> {
    let bad = |why: String| ExchangeError::Config(format!("exchange {:?}: {why}", config.name));
    let name_ok = !config.name.is_empty()
        && config.name.len() <= 64
        && config
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok {
        return Err(bad("the name must be 1-64 of a-z 0-9 -".into()));
    }
    let set: SetId = config
        .set
        .parse()
        .map_err(|e| bad(format!("set {:?}: {e}", config.set)))?;
    if !node_name.is_empty() && set.origin() != node_name {
        return Err(bad(format!(
            "set {set} must be one of this node's own ({node_name}/...)"
        )));
    }
    Ok(())
}
