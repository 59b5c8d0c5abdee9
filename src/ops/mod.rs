//! The node's operations: every change an operator (or a peer, or the node
//! itself) makes, and the reads they need, as typed calls on domain types.
//!
//! The admin service and the CLI only translate: a gRPC request or a
//! command line becomes one call here, its answer becomes a response or
//! printed lines. So an operation behaves the same whichever door it came
//! through, and its audit record says the same thing.
//!
//! Every change goes through [`Database`] and carries its audit notes
//! into the same sled batch as its effect (see `Store::audit_into`): a
//! crash leaves both or neither. A change to the peer registry, a file
//! outside the store, is journalled instead (its digest and its audit
//! record in one batch, then the rename; see `peers.rs`). A key rotation
//! is audited once the new key files are in place.

mod entries;
mod exchanges;
mod import;
mod peers;
mod sets;

use std::sync::Arc;
use std::time::Instant;

pub use crate::store::DisputeView;
pub use entries::{ConfirmOutcome, Release};
pub use exchanges::ExchangePage;
pub use import::{ImportRequest, ImportSummary, MAX_PROBLEMS};
pub use peers::{PeerView, Rotated, SetComparison};

use crate::database::Database;
use crate::federation::Federation;
pub use crate::model::audit::Actor;
use crate::model::audit::{AuditCheck, AuditEvent};
use crate::model::NameError;
use crate::peers::PeerError;
use crate::report::Report;
use crate::store::{StoreError, StoreStats};

/// Longest free-text reason kept (it goes into logs and the audit log).
pub const MAX_REASON: usize = 200;

/// Most records one list call returns.
pub const MAX_PAGE: usize = 1000;

/// Why an operation failed. Each kind tells the door how to answer (a gRPC
/// code, an exit code); the message says what to do in words, and the
/// cause is kept as the error's source.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The request is malformed or out of range.
    #[error("{0}")]
    Invalid(String),
    /// A name that does not parse.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The operation needs something the node does not have or is not in
    /// (an identity, an own set, a state).
    #[error("{0}")]
    Precondition(String),
    /// The database refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The peer registry refused or failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The federation (keys, certificates, the peer registry) failed or
    /// refused.
    #[error(transparent)]
    Federation(#[from] crate::federation::FederationError),
    /// Input could not be read or output written.
    #[error("{what}: {source}")]
    Io {
        /// What was being read or written.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The counts `hashfed stats` shows.
#[derive(Clone, Debug)]
pub struct NodeStats {
    /// The store's counts.
    pub store: StoreStats,
    /// Matches answered so far.
    pub matches: u64,
    /// Matches confirmed by feedback.
    pub confirmed: u64,
    /// Matches called false positives by feedback.
    pub false_positive: u64,
    /// Seconds since the operations began (the node started).
    pub uptime_seconds: u64,
    /// Peers' key histories refused since then (forks, forged rotations:
    /// an old key may have leaked).
    pub key_history_refusals: u64,
}

/// The operations over one node's database (and, where the node has an
/// identity, its federation).
pub struct Ops {
    db: Arc<Database>,
    fed: Option<Arc<Federation>>,
    node_id: String,
    node_name: String,
    started: Instant,
}

impl Ops {
    /// Operations over `db` for the node `node_id` (`node_name`); without
    /// a federation, the peer, policy and key operations are refused.
    pub fn new(db: Arc<Database>, node_id: String, node_name: String) -> Self {
        Ops {
            db,
            fed: None,
            node_id,
            node_name,
            started: Instant::now(),
        }
    }

    /// Also the peer, policy and key operations, through `fed`.
    pub fn with_federation(mut self, fed: Arc<Federation>) -> Self {
        self.fed = Some(fed);
        self
    }

    /// The database underneath (reads).
    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// The node's id ("" for a bare database).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's name ("" for a bare database).
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    fn fed(&self) -> Result<&Arc<Federation>, OpsError> {
        self.fed.as_ref().ok_or_else(|| {
            OpsError::Precondition("this node directory has no identity (hashfed.toml)".into())
        })
    }

    /// The node's counts.
    pub fn stats(&self) -> Result<NodeStats, OpsError> {
        let store = self.db.store().stats()?;
        let matches = self.db.match_counts()?;
        Ok(NodeStats {
            store,
            matches: matches.matches,
            confirmed: matches.confirmed,
            false_positive: matches.false_positive,
            uptime_seconds: self.started.elapsed().as_secs(),
            key_history_refusals: self.fed.as_ref().map_or(0, |f| f.key_history_refusals()),
        })
    }

    /// Audit records after `after_seq`, at most `limit` (0: a full page).
    pub fn audit_events(&self, after_seq: u64, limit: usize) -> Result<Vec<AuditEvent>, OpsError> {
        Ok(self.db.store().audit_events(after_seq, page(limit))?)
    }

    /// Recomputes the audit chain and checks its signed head.
    pub fn verify_audit(&self) -> Result<AuditCheck, OpsError> {
        Ok(self.db.store().check_audit()?)
    }

    /// The transparency report for days `from` to `to` (UTC days since
    /// the epoch, both included).
    pub fn report(&self, from: u32, to: u32) -> Result<Report, OpsError> {
        if from > to {
            return Err(OpsError::Invalid("the period ends before it starts".into()));
        }
        Ok(self.db.report(&self.node_name, from, to)?)
    }

    /// Writes sets to `out` as a file in an export format, one entry at a
    /// time; returns how many entries. (A read: not audited.)
    pub fn export(
        &self,
        options: &crate::export::ExportOptions,
        out: &mut impl std::io::Write,
    ) -> Result<u64, crate::export::ExportError> {
        crate::export::export(self.db.store(), options, out)
    }

    /// The store's full consistency check (`hashfed verify`).
    pub fn verify(&self) -> Result<crate::store::VerifyReport, OpsError> {
        Ok(self.db.store().verify()?)
    }

    /// Writes a consistent copy of the database to `out`, and audits it.
    pub fn backup(
        &self,
        actor: &Actor,
        out: &mut impl std::io::Write,
    ) -> Result<crate::store::BackupSummary, OpsError> {
        let summary = self.db.store().backup(&mut *out)?;
        out.flush().map_err(|source| OpsError::Io {
            what: "writing the backup".into(),
            source,
        })?;
        tracing::info!(keys = summary.keys, bytes = summary.bytes, "backup taken");
        let detail = format!("{} keys, {} bytes", summary.keys, summary.bytes);
        // The backup is a read: its record is its only effect.
        self.db
            .audit(actor.note(crate::model::audit::Action::BackupTaken, "database", detail))?;
        Ok(summary)
    }
}

/// Refuses a reason over [`MAX_REASON`] bytes.
pub fn check_reason(reason: &str) -> Result<(), OpsError> {
    if reason.len() > MAX_REASON {
        return Err(OpsError::Invalid(format!(
            "reason is over {MAX_REASON} bytes"
        )));
    }
    Ok(())
}

/// Records per page: `limit`, at most (and by default) [`MAX_PAGE`].
pub fn page(limit: usize) -> usize {
    match limit {
        0 => MAX_PAGE,
        n => n.min(MAX_PAGE),
    }
}
