//! Peers: the other nodes this node knows, and what it shares with each.
//!
//! Operators decide whom to trust. A peer is added from its card
//! ([`card`]) with two lists of set patterns: what we **send** it and what
//! we **accept** from it. Both sides add each other; a connection needs
//! both, since each side's TLS pins the other's CA. A peer is `active`,
//! `suspended` (its connections are closed and refused until resumed) or
//! `revoked` (final).
//!
//! A peer's card also makes it a known **origin**: records of sets named
//! `<its name>/...` are checked against its signing key, whichever node
//! relays them. A node can therefore hold the card of an origin it never
//! connects to (no grants), just to trust that origin's sets arriving
//! through a relay. When an origin rotates its key, the statement signed
//! by its old key reaches us in manifests (from it or any relay) and
//! extends its card here ([`PeerRegistry::learn_keys`]).
//!
//! The registry lives in `DIR/peers.toml`, rewritten atomically (temporary
//! file, fsync, rename) on every change; the running node owns it, and the
//! CLI changes it through the node's admin socket.

pub mod card;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

pub use card::PeerCard;

use crate::config::Config;
use crate::identity::keys::KeyHistory;
use crate::identity::peers::TrustedPeer;
use crate::identity::IdentityError;
use crate::model::keychain::{self, merge};
use crate::model::SetId;

/// Why a peer operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// Reading or writing the registry failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// A card, pattern or status that does not parse or is not allowed.
    #[error("{0}")]
    Invalid(String),
    /// No peer of that name.
    #[error("no peer named {0:?}")]
    Unknown(String),
    /// The peer was revoked; that is final.
    #[error("peer {0:?} was revoked; revocation is final (a new node key means a new card)")]
    Revoked(String),
    /// Another peer already has this name or node id.
    #[error("{0}")]
    Conflict(String),
    /// The node's own identity files.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The change could not be journalled (with its audit record) in the
    /// node's database, so it was not made.
    #[error("the change could not be recorded: {0}")]
    Journal(#[source] JournalError),
}

/// Makes a rename in `path`'s folder durable (best effort: some file
/// systems refuse to sync a directory).
fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent() {
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
    }
}

/// Where a peer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStatus {
    /// Connects, sends and receives as granted.
    Active,
    /// Temporarily cut off: connections closed and refused, nothing synced.
    Suspended,
    /// Cut off for good.
    Revoked,
}

impl PeerStatus {
    /// The status as the CLI and the admin service name it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStatus::Active => "active",
            PeerStatus::Suspended => "suspended",
            PeerStatus::Revoked => "revoked",
        }
    }

    /// Parses `active`, `suspended` or `revoked`.
    pub fn parse(s: &str) -> Result<Self, PeerError> {
        match s {
            "active" => Ok(PeerStatus::Active),
            "suspended" => Ok(PeerStatus::Suspended),
            "revoked" => Ok(PeerStatus::Revoked),
            other => Err(PeerError::Invalid(format!(
                "peer status {:?} must be active, suspended or revoked",
                other.chars().take(40).collect::<String>()
            ))),
        }
    }
}

/// A known peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its card.
    pub card: PeerCard,
    /// Where it stands.
    pub status: PeerStatus,
    /// Set patterns we send it.
    #[serde(default)]
    pub send: Vec<String>,
    /// Set patterns we take from it.
    #[serde(default)]
    pub accept: Vec<String>,
    /// When it was added, ms since the epoch.
    pub added_ms: u64,
    /// Hold new entries received from it for local review: they sync but
    /// do not match until an operator releases them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub review: bool,
}

impl Peer {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.card.name
    }

    /// Whether `other` is this peer, at most with more key rotations
    /// learnt (nothing a running sync with it must restart for).
    pub fn same_but_keys(&self, other: &Peer) -> bool {
        let plain = |p: &Peer| Peer {
            card: p.card.identity(),
            ..p.clone()
        };
        plain(self) == plain(other)
    }

    /// Whether it is active.
    pub fn active(&self) -> bool {
        self.status == PeerStatus::Active
    }

    /// Whether our grants let it receive `set` (the set policy is checked
    /// separately).
    pub fn sends(&self, set: &SetId) -> bool {
        self.active() && self.send.iter().any(|p| pattern_matches(p, set))
    }

    /// Whether we take `set` from it.
    pub fn accepts(&self, set: &SetId) -> bool {
        self.active() && self.accept.iter().any(|p| pattern_matches(p, set))
    }
}

/// `*`, `<origin>/*` or an exact set id.
pub fn pattern_matches(pattern: &str, set: &SetId) -> bool {
    match pattern.strip_suffix("/*") {
        _ if pattern == "*" => true,
        Some(origin) => set.origin() == origin,
        None => pattern == set.as_str(),
    }
}

/// Refuses patterns that could never match anything.
pub fn check_patterns(patterns: &[String]) -> Result<(), PeerError> {
    for p in patterns {
        let ok = p == "*"
            || match p.strip_suffix("/*") {
                Some(origin) => SetId::new(origin, "x").is_ok(),
                None => p.parse::<SetId>().is_ok(),
            };
        if !ok {
            return Err(PeerError::Invalid(format!(
                "set pattern {:?} must be `*`, `<origin>/*` or `<origin>/<name>`",
                p.chars().take(140).collect::<String>()
            )));
        }
    }
    Ok(())
}

#[derive(Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    peer: Vec<Peer>,
}

/// The node's peers, persisted in `DIR/peers.toml`.
pub struct PeerRegistry {
    path: PathBuf,
    own_name: String,
    own_node_id: String,
    peers: RwLock<BTreeMap<String, Peer>>,
    /// Bumped on every change; the federation follows it (connections,
    /// sync tasks, subscriptions).
    version: tokio::sync::watch::Sender<u64>,
}

/// A peer as operators see it: its registry entry and what the node is
/// doing with it now.
#[derive(Clone, Debug)]
pub struct PeerView {
    /// The registry's entry (card, grants, status, review).
    pub peer: Peer,
    /// Connections it has open to this node.
    pub open_connections: u32,
    /// What our sync with it is doing (idle if we take nothing).
    pub sync: SyncState,
}

/// What our sync with one peer is doing. Its text is what `hashfed peer
/// list` prints after `sync=` (and what operators' scripts read): `idle`,
/// `connected`, `disconnected`, or the last session's error with its
/// causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// No sync: we take nothing from the peer, or it is not active.
    Idle,
    /// Subscribed to the peer's manifest (and pulling what it announces).
    Connected,
    /// The peer ended the subscription; reconnecting.
    Disconnected,
    /// The last session failed; retried after a pause.
    Failed(String),
}

impl SyncState {
    /// The state after a session that failed with `error`, keeping the
    /// error's causes in the text.
    pub fn failed(error: &(dyn std::error::Error + 'static)) -> Self {
        SyncState::Failed(crate::error::Chain(error).to_string())
    }
}

impl std::fmt::Display for SyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncState::Idle => f.write_str("idle"),
            SyncState::Connected => f.write_str("connected"),
            SyncState::Disconnected => f.write_str("disconnected"),
            SyncState::Failed(why) => f.write_str(why),
        }
    }
}

/// How one set compares with a peer's copy (`hashfed set verify`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetComparison {
    /// The set.
    pub set: String,
    /// The peer.
    pub peer: String,
    /// Our head.
    pub local_seq: u64,
    /// The peer's head (0 if unknown).
    pub peer_seq: u64,
    /// "equal", "N records behind the peer", "diverged ...",
    /// "unreachable: ...", ...
    pub verdict: String,
}

/// Why the journal of a registry change failed (the node's database).
pub type JournalError = Box<dyn std::error::Error + Send + Sync>;

/// For changes with no record to keep (tests, tools on a copy): the
/// change goes in place at once.
pub fn unjournalled<T: ?Sized>(_: &T, _: [u8; 32]) -> Result<(), JournalError> {
    Ok(())
}

/// The file a change is written to before it goes in place.
fn next_path(path: &Path) -> PathBuf {
    path.with_extension("toml.tmp")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PeerError + '_ {
    move |source| PeerError::Io {
        path: path.to_owned(),
        source,
    }
}

impl PeerRegistry {
    /// Finishes or drops a change a crash interrupted, before the
    /// registry in `dir` is opened: the written-but-not-in-place file goes
    /// in place if its BLAKE3 digest is `journalled` (the change was
    /// recorded, so it happened), else it is removed (it never happened).
    pub fn recover(dir: &Path, journalled: Option<[u8; 32]>) -> Result<(), PeerError> {
        let path = dir.join("peers.toml");
        let next = next_path(&path);
        let bytes = match std::fs::read(&next) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(&next)(e)),
        };
        if journalled == Some(*blake3::hash(&bytes).as_bytes()) {
            tracing::info!("finishing a peer registry change a crash interrupted");
            std::fs::rename(&next, &path).map_err(io(&path))?;
            sync_parent(&path);
        } else {
            std::fs::remove_file(&next).map_err(io(&next))?;
        }
        Ok(())
    }

    /// Loads the registry of the node in `dir` (empty if none yet).
    pub fn open(dir: &Path, config: &Config) -> Result<Self, PeerError> {
        let path = dir.join("peers.toml");
        let file: File = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| PeerError::Invalid(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        let mut peers = BTreeMap::new();
        for peer in file.peer {
            peers.insert(peer.card.name.clone(), peer);
        }
        Ok(PeerRegistry {
            path,
            own_name: config.name.clone(),
            own_node_id: config.node_id.clone(),
            peers: RwLock::new(peers),
            version: tokio::sync::watch::Sender::new(0),
        })
    }

    /// Every peer, by name.
    pub fn list(&self) -> Vec<Peer> {
        self.read().values().cloned().collect()
    }

    /// One peer.
    pub fn get(&self, name: &str) -> Option<Peer> {
        self.read().get(name).cloned()
    }

    /// The peer with this node id, whatever its status.
    pub fn by_node_id(&self, node_id: &str) -> Option<Peer> {
        self.read()
            .values()
            .find(|p| p.card.node_id == node_id)
            .cloned()
    }

    /// The key chain (every key, oldest first, with its bounds) of the
    /// origin named `origin`, if it is a known, active peer.
    pub fn origin_keys(&self, origin: &str) -> Option<crate::model::keychain::KeyChain> {
        self.read()
            .get(origin)
            .filter(|p| p.active())
            .and_then(|p| p.card.chain().ok())
    }

    /// Learns a peer's key rotations from `history`, whoever passed it on:
    /// it must start at the key the peer's card starts at, verify, and
    /// extend what we know (a fork is refused). Returns the peer's name
    /// when something was learnt; a history of a node we do not know is
    /// ignored.
    /// `commit` is as for [`PeerRegistry::add`], called only when
    /// something is learnt.
    pub fn learn_keys(
        &self,
        history: &KeyHistory,
        commit: impl FnOnce(&str, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<Option<String>, PeerError> {
        let Some(known) = self.by_node_id(&history.node_id) else {
            return Ok(None);
        };
        if known.card.signing_key != history.first_key {
            return Err(PeerError::Invalid(format!(
                "key history of {} starts at another key than its card",
                known.name()
            )));
        }
        let fork = |e: keychain::ChainError| PeerError::Conflict(format!("{}: {e}", known.name()));
        // Cheap comparisons first: manifests repeat what we know.
        if merge(&known.card.rotations, &history.rotations)
            .map_err(fork)?
            .is_none()
        {
            return Ok(None);
        }
        history
            .keys()
            .map_err(|e| PeerError::Invalid(format!("key history of {}: {e}", known.name())))?;
        self.change(
            |peers| {
                let peer = peers
                    .values_mut()
                    .find(|p| p.card.node_id == history.node_id)
                    .ok_or_else(|| PeerError::Unknown(known.name().to_owned()))?;
                if let Some(longer) =
                    merge(&peer.card.rotations, &history.rotations).map_err(fork)?
                {
                    peer.card.rotations = longer;
                }
                Ok(Some(peer.name().to_owned()))
            },
            |learnt: &Option<String>, digest| match learnt {
                Some(name) => commit(name, digest),
                None => Ok(()),
            },
        )
    }

    /// What the federation listener's TLS trusts: every peer, active or not
    /// (inactive ones are refused and their connections closed).
    pub fn trusted(&self) -> Vec<TrustedPeer> {
        self.read()
            .values()
            .map(|p| TrustedPeer {
                name: p.card.name.clone(),
                node_id: p.card.node_id.clone(),
                ca_pem: p.card.ca.clone(),
                active: p.active(),
            })
            .collect()
    }

    /// A receiver that sees a new value after every change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Adds a peer from its card. Adding the same card again replaces its
    /// grants; another card under a known name or node id is refused, and
    /// so is a revoked node.
    ///
    /// Every change is written beside the registry, handed to `commit`
    /// with its digest (the node journals it with its audit record, see
    /// [`PeerRegistry::recover`]), and put in place only if that succeeds.
    pub fn add(
        &self,
        card: PeerCard,
        send: Vec<String>,
        accept: Vec<String>,
        now_ms: u64,
        commit: impl FnOnce(&Peer, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<Peer, PeerError> {
        check_patterns(&send)?;
        check_patterns(&accept)?;
        if card.node_id == self.own_node_id || card.name == self.own_name {
            return Err(PeerError::Conflict(format!(
                "the card of {} is this node's own",
                card.name
            )));
        }
        self.change(
            |peers| {
                if let Some(same) = peers.values().find(|p| p.card.node_id == card.node_id) {
                    if same.status == PeerStatus::Revoked {
                        return Err(PeerError::Revoked(same.card.name.clone()));
                    }
                    if same.card.identity() != card.identity() {
                        return Err(PeerError::Conflict(format!(
                            "node {} is already a peer as {:?} with another card; revoke it first",
                            card.node_id, same.card.name
                        )));
                    }
                } else if peers.contains_key(&card.name) {
                    return Err(PeerError::Conflict(format!(
                        "another node is already a peer under the name {:?}",
                        card.name
                    )));
                }
                // A card may be older or newer than what we learnt since.
                let mut card = card;
                if let Some(same) = peers.values().find(|p| p.card.node_id == card.node_id) {
                    card.rotations = merge(&same.card.rotations, &card.rotations)
                        .map_err(|e| PeerError::Conflict(format!("{}: {e}", card.name)))?
                        .unwrap_or_else(|| same.card.rotations.clone());
                }
                let peer = Peer {
                    status: peers
                        .get(&card.name)
                        .map_or(PeerStatus::Active, |p| p.status),
                    added_ms: peers.get(&card.name).map_or(now_ms, |p| p.added_ms),
                    review: peers.get(&card.name).is_some_and(|p| p.review),
                    card,
                    send,
                    accept,
                };
                peers.insert(peer.card.name.clone(), peer.clone());
                Ok(peer)
            },
            commit,
        )
    }

    /// Switches local review of what a peer sends on or off.
    pub fn set_review(
        &self,
        name: &str,
        review: bool,
        commit: impl FnOnce(&Peer, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<Peer, PeerError> {
        self.change(
            |peers| {
                let peer = peers
                    .get_mut(name)
                    .ok_or_else(|| PeerError::Unknown(name.to_owned()))?;
                peer.review = review;
                Ok(peer.clone())
            },
            commit,
        )
    }

    /// Replaces what we send a peer and take from it.
    pub fn set_grants(
        &self,
        name: &str,
        send: Vec<String>,
        accept: Vec<String>,
        commit: impl FnOnce(&Peer, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<Peer, PeerError> {
        check_patterns(&send)?;
        check_patterns(&accept)?;
        self.change(
            |peers| {
                let peer = peers
                    .get_mut(name)
                    .ok_or_else(|| PeerError::Unknown(name.to_owned()))?;
                peer.send = send;
                peer.accept = accept;
                Ok(peer.clone())
            },
            commit,
        )
    }

    /// Suspends, resumes or revokes a peer.
    pub fn set_status(
        &self,
        name: &str,
        status: PeerStatus,
        commit: impl FnOnce(&Peer, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<Peer, PeerError> {
        self.change(
            |peers| {
                let peer = peers
                    .get_mut(name)
                    .ok_or_else(|| PeerError::Unknown(name.to_owned()))?;
                if peer.status == PeerStatus::Revoked && status != PeerStatus::Revoked {
                    return Err(PeerError::Revoked(name.to_owned()));
                }
                peer.status = status;
                if status == PeerStatus::Revoked {
                    peer.send.clear();
                    peer.accept.clear();
                }
                Ok(peer.clone())
            },
            commit,
        )
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Peer>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to a copy, saves it (journalled through `commit`), then
    /// makes it current: a failed save or journal leaves both the file and
    /// the registry as they were.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Peer>) -> Result<T, PeerError>,
        commit: impl FnOnce(&T, [u8; 32]) -> Result<(), JournalError>,
    ) -> Result<T, PeerError> {
        let mut guard = self.peers.write().unwrap_or_else(|p| p.into_inner());
        let mut next = guard.clone();
        let out = f(&mut next)?;
        self.save(&next, |digest| commit(&out, digest))?;
        *guard = next;
        drop(guard);
        self.version.send_modify(|v| *v += 1);
        Ok(out)
    }

    /// Writes `peers` beside the registry (fsynced), has `commit` journal
    /// its digest, then renames it in place. A crash after the journal is
    /// finished by [`PeerRegistry::recover`]; before it, the change never
    /// happened.
    fn save(
        &self,
        peers: &BTreeMap<String, Peer>,
        commit: impl FnOnce([u8; 32]) -> Result<(), JournalError>,
    ) -> Result<(), PeerError> {
        let file = File {
            peer: peers.values().cloned().collect(),
        };
        let text = toml::to_string(&file).map_err(|e| PeerError::Invalid(e.to_string()))?;
        let mut bytes = b"# hashfed peers: managed by `hashfed peer ...`\n".to_vec();
        bytes.extend_from_slice(text.as_bytes());
        let tmp = next_path(&self.path);
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(io(&tmp))?;
        }
        if let Err(e) = commit(*blake3::hash(&bytes).as_bytes()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(PeerError::Journal(e));
        }
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        sync_parent(&self.path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(tmp: &Path, name: &str) -> (PathBuf, Config, PeerCard) {
        let dir = tmp.join(name);
        let init = crate::identity::init(&dir, name).unwrap();
        let card = PeerCard::of_node(&dir, "127.0.0.1:1").unwrap();
        (dir, init.config, card)
    }

    #[test]
    fn add_grant_suspend_revoke_persist() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, config, own) = node(tmp.path(), "a");
        let (_, _, b) = node(tmp.path(), "b");
        let reg = PeerRegistry::open(&dir, &config).unwrap();
        let mut changes = reg.changes();
        assert!(reg
            .add(own, vec![], vec![], 1, super::unjournalled)
            .is_err());
        reg.add(
            b.clone(),
            vec!["a/*".into()],
            vec!["*".into()],
            1,
            super::unjournalled,
        )
        .unwrap();
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let set: SetId = "a/list".parse().unwrap();
        assert!(reg.get("b").unwrap().sends(&set));
        assert!(!reg.get("b").unwrap().sends(&"c/list".parse().unwrap()));
        assert!(reg.origin_keys("b").is_some());
        assert!(reg
            .add(
                b.clone(),
                vec!["../x".into()],
                vec![],
                1,
                super::unjournalled
            )
            .is_err());

        reg.set_status("b", PeerStatus::Suspended, super::unjournalled)
            .unwrap();
        assert!(!reg.get("b").unwrap().sends(&set));
        assert!(reg.origin_keys("b").is_none());
        assert!(!reg.trusted()[0].active);

        let again = PeerRegistry::open(&dir, &config).unwrap();
        assert_eq!(again.get("b").unwrap().status, PeerStatus::Suspended);
        again
            .set_status("b", PeerStatus::Revoked, super::unjournalled)
            .unwrap();
        assert!(matches!(
            again.set_status("b", PeerStatus::Active, super::unjournalled),
            Err(PeerError::Revoked(_))
        ));
        assert!(matches!(
            again.add(b, vec![], vec![], 2, super::unjournalled),
            Err(PeerError::Revoked(_))
        ));
        assert!(matches!(
            again.set_status("nobody", PeerStatus::Active, super::unjournalled),
            Err(PeerError::Unknown(_))
        ));
    }

    #[test]
    fn rotations_are_learnt_kept_and_forks_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, config, _) = node(tmp.path(), "a");
        let (b_dir, _, old_card) = node(tmp.path(), "b");
        let reg = PeerRegistry::open(&dir, &config).unwrap();
        reg.add(
            old_card.clone(),
            vec![],
            vec!["b/*".into()],
            1,
            super::unjournalled,
        )
        .unwrap();
        let first = crate::identity::keys::read(&b_dir).unwrap();
        let (key, history) = crate::identity::keys::rotate(&b_dir, 7, Vec::new()).unwrap();
        assert_eq!(
            reg.learn_keys(&history, super::unjournalled).unwrap(),
            Some("b".to_owned())
        );
        assert_eq!(reg.learn_keys(&history, super::unjournalled).unwrap(), None);
        let keys = reg.origin_keys("b").unwrap();
        assert_eq!(keys.keys().last(), Some(&key.verifying_key()));
        // The old card again (say, re-added from a file): what was learnt stays.
        reg.add(old_card, vec![], vec!["b/*".into()], 2, super::unjournalled)
            .unwrap();
        assert_eq!(reg.origin_keys("b").unwrap().keys().len(), 2);
        let again = PeerRegistry::open(&dir, &config).unwrap();
        assert_eq!(again.origin_keys("b").unwrap().keys().len(), 2);
        // Someone else's statement, or a fork by a leaked old key.
        let mut forged = history.clone();
        forged.rotations[0].time_ms += 1;
        assert!(again.learn_keys(&forged, super::unjournalled).is_err());
        let elsewhere = crate::identity::keys::generate().verifying_key();
        let mut fork = history.clone();
        fork.rotations[0] =
            crate::model::keychain::rotate(&history.node_id, &first, 1, &elsewhere, 8, vec![]);
        assert!(matches!(
            again.learn_keys(&fork, super::unjournalled),
            Err(PeerError::Conflict(_))
        ));
        assert_eq!(again.origin_keys("b").unwrap().keys().len(), 2);
    }

    #[test]
    fn patterns() {
        let set: SetId = "o/n".parse().unwrap();
        assert!(pattern_matches("*", &set));
        assert!(pattern_matches("o/*", &set));
        assert!(pattern_matches("o/n", &set));
        assert!(!pattern_matches("o/m", &set));
        assert!(!pattern_matches("p/*", &set));
        assert!(check_patterns(&["*".into(), "o/*".into(), "o/n".into()]).is_ok());
        for bad in ["", "o", "o/", "/*", "a/b/c", "*/*"] {
            assert!(check_patterns(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
