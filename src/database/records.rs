//! Writing match records off the query path.
//!
//! A hit is answered at once with a fresh random match id; the record
//! (entry, time, caller: see [`crate::store::matches`]) goes to a writer
//! thread that groups whatever is queued into one store batch. Measured
//! over loopback gRPC at 1M entries, writing each call's records inline
//! cost about 40% of the exact-lookup throughput and put the store's
//! occasional write stalls (hundreds of milliseconds) into query latency.
//!
//! Records reach the store within milliseconds. Reads that depend on them
//! (feedback on a match, counts) call [`RecordWriter::flush`] first, so
//! they always see every match already answered. A crash can lose the
//! records of the last moments, as the store's own write buffer can.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::store::matches::{MatchId, MatchRecord};
use crate::store::{Store, StoreError};

/// Records queued before callers wait for the writer.
const QUEUE: usize = 1 << 16;

/// Records written in one store batch at most.
const BATCH: usize = 4096;

enum Message {
    Record(MatchId, MatchRecord),
    /// Answered once everything queued before it is written.
    Flush(SyncSender<()>),
}

/// The writer thread and the way to it.
pub(super) struct RecordWriter {
    store: Arc<Store>,
    tx: Mutex<Option<SyncSender<Message>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn write(store: &Store, batch: &mut Vec<(MatchId, MatchRecord)>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = store.record_matches(batch) {
        tracing::error!(error = %e, records = batch.len(), "match records could not be written");
    }
    batch.clear();
}

fn run(store: Arc<Store>, rx: Receiver<Message>) {
    let mut batch = Vec::new();
    let mut flushes = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Record(id, record) => batch.push((id, record)),
                Message::Flush(done) => flushes.push(done),
            }
            next = if batch.len() < BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        write(&store, &mut batch);
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

impl RecordWriter {
    /// Starts the writer thread over `store`.
    pub(super) fn start(store: Arc<Store>) -> Result<Self, StoreError> {
        let (tx, rx) = sync_channel(QUEUE);
        let writer = store.clone();
        let thread = std::thread::Builder::new()
            .name("hashfed-match-records".into())
            .spawn(move || run(writer, rx))
            .map_err(|e| StoreError::Corrupt(format!("starting the match record writer: {e}")))?;
        Ok(RecordWriter {
            store,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn sender(&self) -> Option<SyncSender<Message>> {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Queues records; their ids are final now. After [`Self::close`] the
    /// records are written directly.
    pub(super) fn record(&self, records: Vec<MatchRecord>) -> Result<Vec<MatchId>, StoreError> {
        let with_ids: Vec<(MatchId, MatchRecord)> = records
            .into_iter()
            .map(|r| (MatchId::random(), r))
            .collect();
        let ids = with_ids.iter().map(|(id, _)| *id).collect();
        let Some(tx) = self.sender() else {
            self.store.record_matches(&with_ids)?;
            return Ok(ids);
        };
        for (id, record) in with_ids {
            match tx.try_send(Message::Record(id, record)) {
                Ok(()) => {}
                // A full queue: wait for the writer (back-pressure).
                Err(TrySendError::Full(message)) => {
                    if let Err(lost) = tx.send(message) {
                        if let Message::Record(id, record) = lost.0 {
                            self.store.record_matches(&[(id, record)])?;
                        }
                    }
                }
                Err(TrySendError::Disconnected(Message::Record(id, record))) => {
                    self.store.record_matches(&[(id, record)])?;
                }
                Err(TrySendError::Disconnected(Message::Flush(_))) => {}
            }
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
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if thread.join().is_err() {
                tracing::error!("the match record writer panicked");
            }
        }
    }
}

impl Drop for RecordWriter {
    fn drop(&mut self) {
        self.close();
    }
}
