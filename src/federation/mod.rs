//! Federation: sets flowing between nodes over mutually authenticated
//! gRPC, as their origins signed them.
//!
//! ```text
//!  origin A                      relay B                         provider C
//!  append ─▶ log + checkpoint    sync.rs: Subscribe(A) ─ new head ─▶ Pull(A, after cursor)
//!  (store/federation.rs)           verify chain + A's signature, apply records and cursor
//!          ▲                       in one batch ─▶ index          (same, from B)
//!          │                     service.rs: Manifest / Pull / Subscribe for C, if A's
//!          │                       signed policy allows re-sharing and B granted C
//!          └──── outbox.rs: feedback notes, signed by C, passed hop by hop back to A
//! ```
//!
//! * [`service`]: what peers call (policy checked on every call);
//! * [`sync`]: one task per peer we accept sets from;
//! * [`outbox`]: feedback travelling back toward origins.
//!
//! Trust: a set `<origin>/<name>` is checked against the signing key on
//! `<origin>`'s peer card, whoever relays it, so a relay can delay records
//! but not forge, alter, reorder or drop-and-replace them.

pub mod manage;
pub mod outbox;
pub mod service;
pub mod sync;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::database::Database;
use crate::identity::keys::KeyHistory;
use crate::identity::peers::{PeerIdentity, PeerTrust};
use crate::identity::server::ServerCerts;
use crate::metrics::Metrics;
use crate::model::signed::Signer;
use crate::peers::{Peer, PeerRegistry, SyncState};
use crate::store::Journal;
use crate::store::SetState;
use crate::tasks::Tasks;

/// Why the federation could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The peer registry.
    #[error(transparent)]
    Peers(#[from] crate::peers::PeerError),
    /// Keys or certificates.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// Signing what the node's own sets lack.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Refused in this node's state.
    #[error("{0}")]
    Refused(&'static str),
}

/// What the federation's parts share.
pub struct Federation {
    dir: PathBuf,
    config: Config,
    db: Arc<Database>,
    peers: Arc<PeerRegistry>,
    trust: PeerTrust,
    /// The server certificates the listeners serve (renewed live).
    certs: ServerCerts,
    /// This node's key history; subscribers follow it, so peers hear of a
    /// rotation at once.
    keys: tokio::sync::watch::Sender<KeyHistory>,
    /// Held while keys rotate: one rotation at a time.
    rotating: Mutex<()>,
    /// Per peer: what our sync with it is doing (for `hashfed peer list`).
    sync_status: Mutex<HashMap<String, SyncState>>,
    /// The node's tasks: sync, the outbox and subscriptions run as its
    /// background work (ended when the node stops), pulls' and feedback's
    /// store work as its blocking work (waited for).
    tasks: Tasks,
    /// Counters the node exports.
    metrics: Arc<Metrics>,
}

impl Federation {
    /// Peers' key histories refused since the node started (see
    /// `Metrics::key_history_refused`).
    pub fn key_history_refusals(&self) -> u64 {
        self.metrics.key_history_refusals()
    }

    /// The federation of the node in `dir`: its peer registry, its signer
    /// (set on `db`, which signs what its own sets lack), the TLS trust
    /// for its peers, its server certificates, and the client certificate
    /// it dials peers with. Finishes a key rotation or certificate renewal
    /// a crash interrupted. Starts nothing; see [`Federation::run`]. What
    /// it starts later is one of `tasks`, so that whoever stops them (the
    /// node) knows when nothing of the federation runs any more.
    pub fn for_node(
        dir: &Path,
        config: &Config,
        db: Arc<Database>,
        metrics: Arc<Metrics>,
        tasks: Tasks,
    ) -> Result<Arc<Self>, FederationError> {
        // A registry change a crash interrupted happened if it was
        // journalled (with its audit record), and not otherwise.
        let journalled = db.store().journalled(Journal::Peers)?;
        PeerRegistry::recover(dir, journalled)?;
        if journalled.is_some() {
            db.store().clear_journal(Journal::Peers)?;
        }
        let peers = Arc::new(PeerRegistry::open(dir, config)?);
        // So did a key rotation or certificate renewal.
        let rotated = db.store().journalled(Journal::Keys)?.is_some();
        crate::identity::keys::recover(dir, rotated)?;
        crate::identity::renew::recover(dir, rotated)?;
        if rotated {
            db.store().clear_journal(Journal::Keys)?;
        }
        let (key, history) = crate::identity::keys::read_with_history(dir)?;
        let signer = Arc::new(
            Signer::new(&config.name, &config.node_id, key).with_history(&history.keys()?),
        );
        let signed = db.set_signer(signer)?;
        if !signed.is_empty() {
            tracing::info!(
                sets = signed.len(),
                "signed the configuration and log checkpoints of own sets"
            );
        }
        let trust = PeerTrust::new();
        trust.replace(peers.trusted())?;
        if !config.dev_certs {
            crate::identity::client::ensure_peer_client_cert(dir)?;
        }
        Ok(Arc::new(Federation {
            dir: dir.to_owned(),
            config: config.clone(),
            db,
            peers,
            trust,
            certs: ServerCerts::load(dir)?,
            keys: tokio::sync::watch::Sender::new(history),
            rotating: Mutex::new(()),
            sync_status: Mutex::new(HashMap::new()),
            tasks,
            metrics,
        }))
    }

    /// The server certificates the node's listeners serve.
    pub fn certs(&self) -> &ServerCerts {
        &self.certs
    }

    /// This node's key history.
    pub fn key_history(&self) -> KeyHistory {
        self.keys.borrow().clone()
    }

    /// The peer registry.
    pub fn peers(&self) -> &Arc<PeerRegistry> {
        &self.peers
    }

    /// The registry's peer for a connection's identity, if that peer is
    /// active and still has the node id the connection was admitted with.
    pub fn active_peer(&self, identity: &PeerIdentity) -> Option<Peer> {
        self.peers
            .get(&identity.name)
            .filter(|p| p.active() && p.card.node_id == identity.node_id)
    }

    /// Makes the listener's TLS trust equal to the registry (closing the
    /// connections of peers no longer active).
    pub fn refresh_trust(&self) {
        if let Err(e) = self.trust.replace(self.peers.trusted()) {
            tracing::warn!(error = %e, "peer certificates could not be loaded");
        }
    }

    /// The TLS trust the federation listener uses.
    pub fn trust(&self) -> &PeerTrust {
        &self.trust
    }

    /// Whether `peer` may receive `set` from this node.
    ///
    /// Own sets: the peer is granted the set (its `send` patterns). Sets
    /// from another origin: the same, and the origin's signed policy allows
    /// re-sharing. Either way, if the origin's signed `share_with` lists
    /// node ids, the peer's must be among them. Local-only sets (no signed
    /// configuration: not named after this node, nor received) never leave.
    pub fn may_see(&self, peer: &Peer, set: &SetState) -> bool {
        if !peer.sends(set.id()) || set.signed_info.is_none() {
            return false;
        }
        let own = set.upstream.is_none();
        if own && set.id().origin() != self.config.name {
            return false;
        }
        set.info.policy.allows(own, &peer.card.node_id).is_ok()
    }

    /// Journals a peer registry change with its audit records (see
    /// [`crate::peers::PeerRegistry::recover`]).
    pub(crate) fn journal_peers(
        &self,
        digest: [u8; 32],
        notes: Vec<crate::model::audit::Note>,
    ) -> Result<(), crate::peers::JournalError> {
        self.db
            .journal_peers(digest, notes)
            .map_err(|e| Box::new(e) as crate::peers::JournalError)
    }

    /// The sets `peer` may receive.
    pub fn visible(&self, peer: &Peer) -> Vec<SetState> {
        self.db
            .store()
            .sets()
            .into_iter()
            .filter(|s| self.may_see(peer, s))
            .collect()
    }

    /// Our sync with `peer` (idle if there is none).
    pub fn sync_status(&self, peer: &str) -> SyncState {
        self.sync_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(peer)
            .cloned()
            .unwrap_or(SyncState::Idle)
    }

    fn set_sync_status(&self, peer: &str, status: SyncState) {
        self.sync_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.to_owned(), status);
    }

    /// Ends the background work and every open subscription (the node's
    /// first step of stopping, [`Tasks::stop`]).
    pub fn shutdown(&self) {
        self.tasks.stop();
    }

    /// The tasks the federation runs its work as.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Runs the federation's background work until [`Federation::shutdown`]:
    /// keeps the TLS trust equal to the registry, one sync task per peer
    /// we accept sets from, and the feedback outbox, each one of the
    /// federation's [`Tasks`].
    pub async fn run(self: Arc<Self>) {
        let stop = self.tasks.stopping().clone();
        let mut changes = self.peers.changes();
        let mut tasks: HashMap<String, (Peer, CancellationToken)> = HashMap::new();
        self.tasks.spawn(outbox::run(self.clone(), stop.clone()));
        loop {
            self.refresh_trust();
            let wanted: HashMap<String, Peer> = self
                .peers
                .list()
                .into_iter()
                .filter(|p| p.active() && !p.accept.is_empty())
                .map(|p| (p.name().to_owned(), p))
                .collect();
            tasks.retain(|name, (peer, token)| {
                let keep = wanted.get(name).is_some_and(|w| w.same_but_keys(peer));
                if !keep {
                    token.cancel();
                    self.set_sync_status(name, SyncState::Idle);
                }
                keep
            });
            for (name, peer) in wanted {
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(name) {
                    let token = stop.child_token();
                    self.tasks
                        .spawn(sync::run(self.clone(), peer.clone(), token.clone()));
                    slot.insert((peer, token));
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }

    /// The database.
    pub fn db(&self) -> &Arc<Database> {
        &self.db
    }

    /// This node's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }
}
