//! Writing match records off the query path.
//!
//! A hit is answered at once with its match id, reserved in memory; the
//! call's records (entry, time, caller: see [`crate::store::matches`]) go
//! to a writer thread that groups whatever is queued into one store batch.
//! Measured over loopback gRPC at 1M entries, writing each call's records inline
//! cost about 40% of the exact-lookup throughput and put the store's
//! occasional write stalls (hundreds of milliseconds) into query latency.
//!
//! The same thread adds the queries counted in memory (per signal type,
//! for the transparency report: counts only) to the day's counts once a
//! second, so the query path pays a map increment, not a store write.
//!
//! Records reach the store within milliseconds. Reads that depend on them
//! (feedback on a match, counts) call [`RecordWriter::flush`] first, so
//! they always see every match already answered. A crash can lose the
//! records of the last moments, as the store's own write buffer can.

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::matches::{MatchId, MatchRecord, ReservedMatches};
use crate::store::usage::{self, Counter, Increments};
use crate::store::{Store, StoreError};

/// Counts made on the query path since the last write.
#[derive(Default)]
struct Counted {
    /// Queries, by signal type name.
    queries: Mutex<BTreeMap<String, u64>>,
    /// The rest (queries an allowlist answered, by allowlist and signal
    /// type): rarer than queries, so keyed as the store keys them.
    others: Mutex<Increments>,
}

type QueryCounts = Arc<Counted>;

/// How often counted queries are written.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// How often expired match records are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(3600);

/// How long match records are kept (0: for ever), in ms.
type Retention = Arc<std::sync::atomic::AtomicU64>;

/// Deletes match records older than the retention period.
fn expire(store: &Store, retention: &Retention) {
    let keep_ms = retention.load(std::sync::atomic::Ordering::Relaxed);
    if keep_ms == 0 {
        return;
    }
    let before = super::now_ms().saturating_sub(keep_ms);
    match store.expire_matches(before) {
        Ok(0) => {}
        Ok(n) => tracing::info!(records = n, "expired match records deleted"),
        Err(e) => tracing::error!(error = %e, "expired match records could not be deleted"),
    }
}

/// Calls queued before callers wait for the writer.
const QUEUE: usize = 1 << 12;

/// Records written in one store batch at most.
const BATCH: usize = 4096;

enum Message {
    /// One call's records.
    Records(ReservedMatches),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The writer thread and the way to it.
pub(super) struct RecordWriter {
    store: Arc<Store>,
    /// The way to the writer; held from reserving a call's ids to queueing
    /// it, so calls reach the store in the order of their keys (which the
    /// store's layout needs, see [`crate::store::matches`]).
    tx: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    queries: QueryCounts,
    retention: Retention,
}

/// Adds the counted queries (and the other query-path counts) to today's
/// counts.
fn write_queries(store: &Store, counts: &QueryCounts) {
    let counted = std::mem::take(&mut *counts.queries.lock().unwrap_or_else(|p| p.into_inner()));
    let mut increments =
        std::mem::take(&mut *counts.others.lock().unwrap_or_else(|p| p.into_inner()));
    if counted.is_empty() && increments.is_empty() {
        return;
    }
    increments.extend(
        counted
            .into_iter()
            .map(|(kind, n)| ((Counter::Queries, None, kind), n)),
    );
    if let Err(e) = store.add_usage(usage::today(), &increments) {
        tracing::error!(error = %e, "query counts could not be written");
    }
}

fn write(store: &Store, batch: &mut Vec<ReservedMatches>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.record_matches(batch) {
        let records: usize = batch.iter().map(ReservedMatches::len).sum();
        tracing::error!(error = %e, records, "match records could not be written");
    }
    batch.clear();
}

fn run(store: Arc<Store>, rx: Receiver<Message>, queries: QueryCounts, retention: Retention) {
    let mut batch = Vec::new();
    let mut queued = 0;
    let mut flushes = Vec::new();
    let mut last_count = std::time::Instant::now();
    let mut last_expiry: Option<std::time::Instant> = None;
    loop {
        match rx.recv_timeout(COUNT_EVERY) {
            Ok(first) => {
                let mut next = Some(first);
                while let Some(message) = next {
                    match message {
                        Message::Records(call) => {
                            queued += call.len();
                            batch.push(call);
                        }
                        Message::Flush(done) => flushes.push(done),
                    }
                    next = if queued < BATCH {
                        rx.try_recv().ok()
                    } else {
                        None
                    };
                }
                write(&store, &mut batch);
                queued = 0;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        // Busy or idle, counts are written every second and expired
        // records looked for every hour.
        if !flushes.is_empty() || last_count.elapsed() >= COUNT_EVERY {
            write_queries(&store, &queries);
            last_count = std::time::Instant::now();
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if last_expiry.is_none_or(|t| t.elapsed() >= EXPIRE_EVERY) {
            expire(&store, &retention);
            last_expiry = Some(std::time::Instant::now());
        }
    }
    write_queries(&store, &queries);
}

impl RecordWriter {
    /// Starts the writer thread over `store`.
    pub(super) fn start(store: Arc<Store>) -> Result<Self, StoreError> {
        let (tx, rx) = sync_channel(QUEUE);
        let writer = store.clone();
        let queries = QueryCounts::default();
        let counted = queries.clone();
        let retention = Retention::default();
        let keep = retention.clone();
        let thread = std::thread::Builder::new()
            .name("hashfed-match-records".into())
            .spawn(move || run(writer, rx, counted, keep))
            .map_err(|e| StoreError::Corrupt(format!("starting the match record writer: {e}")))?;
        Ok(RecordWriter {
            store,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            queries,
            retention,
        })
    }

    /// Keeps match records `days` days (0: for ever); older ones are
    /// deleted within the hour.
    pub(super) fn set_retention(&self, days: u32) {
        self.retention.store(
            u64::from(days) * 86_400_000,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Counts one query of signal type `kind` (written within a second).
    pub(super) fn count_query(&self, kind: &str) {
        let mut q = self
            .queries
            .queries
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match q.get_mut(kind) {
            Some(n) => *n += 1,
            None => {
                q.insert(kind.to_owned(), 1);
            }
        }
    }

    /// Counts one query that allowlist `set` answered (its block hits
    /// withheld), of signal type `kind`.
    pub(super) fn count_allowlisted(&self, set: &crate::model::SetId, kind: &str) {
        let mut others = self
            .queries
            .others
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *others
            .entry((Counter::Allowlisted, Some(set.clone()), kind.to_owned()))
            .or_insert(0) += 1;
    }

    fn sender(&self) -> Option<SyncSender<Message>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues one call's records; their ids are final now. After
    /// [`Self::close`] the records are written directly.
    pub(super) fn record(&self, records: Vec<MatchRecord>) -> Result<Vec<MatchId>, StoreError> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let call = self.store.reserve_matches(records);
        let ids = call.ids();
        let unsent = match tx.as_ref() {
            None => Some(Message::Records(call)),
            Some(tx) => match tx.try_send(Message::Records(call)) {
                Ok(()) => None,
                // A full queue: wait for the writer (back-pressure; the
                // other callers wait with us, their calls come after).
                Err(TrySendError::Full(message)) => tx.send(message).err().map(|lost| lost.0),
                Err(TrySendError::Disconnected(message)) => Some(message),
            },
        };
        if let Some(Message::Records(call)) = unsent {
            self.store.record_matches(&[call])?;
        }
        Ok(ids)
    }

    /// Returns once every record queued so far is in the store.
    pub(super) fn flush(&self) {
        let Some(tx) = self.sender() else {
            return;
        };
        let (done, wait) = sync_channel(1);
        if tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Writes what is queued and stops the thread.
    pub(super) fn close(&self) {
        // Held until the thread has written everything queued: a call
        // recorded meanwhile is written directly after those, in order.
        let mut tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        drop(tx.take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if thread.join().is_err() {
                tracing::error!("the match record writer panicked");
            }
        }
        drop(tx);
        write_queries(&self.store, &self.queries);
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.close();
    }
}
