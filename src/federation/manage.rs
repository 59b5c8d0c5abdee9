//! Operators' federation actions, as the admin service offers them: peers
//! and their grants, set policies, anti-entropy (`hashfed set verify`) and
//! the feedback an origin received.

use std::sync::Arc;

use super::sync::connect;
use super::{Federation, FederationError};
use crate::identity::keys::Rotated;
use crate::model::audit::Note;
use crate::model::signed::Signer;
use crate::peers::{Peer, PeerCard, PeerError, PeerStatus, PeerView, SetComparison};
use crate::store::SetState;
use crate::wire::proto;

impl Federation {
    fn peer_view(&self, p: &Peer) -> PeerView {
        PeerView {
            open_connections: self.trust.open_connections(p.name()) as u32,
            sync: if p.active() && !p.accept.is_empty() {
                self.sync_status(p.name())
            } else {
                crate::peers::SyncState::Idle
            },
            peer: p.clone(),
        }
    }

    /// A registry change's journal: the audit records `audit` makes of
    /// the changed peer, written with the change's digest before it goes
    /// in place.
    fn journal<'a>(
        &'a self,
        audit: impl FnOnce(&Peer) -> Vec<Note> + 'a,
    ) -> impl FnOnce(&Peer, [u8; 32]) -> Result<(), crate::peers::JournalError> + 'a {
        move |peer, digest| self.journal_peers(digest, audit(peer))
    }

    /// Switches local review of a peer's entries on or off, audited as
    /// `audit` says.
    pub fn set_peer_review(
        &self,
        name: &str,
        review: bool,
        audit: impl FnOnce(&Peer) -> Vec<Note>,
    ) -> Result<PeerView, PeerError> {
        let peer = self.peers.set_review(name, review, self.journal(audit))?;
        tracing::info!(peer = %peer.name(), review, "peer review changed");
        Ok(self.peer_view(&peer))
    }

    /// Every peer.
    pub fn list_peers(&self) -> Vec<PeerView> {
        self.peers
            .list()
            .iter()
            .map(|p| self.peer_view(p))
            .collect()
    }

    /// Adds a peer from its card (the card's text), audited as `audit`
    /// says.
    pub fn add_peer(
        &self,
        card: &str,
        send: Vec<String>,
        accept: Vec<String>,
        audit: impl FnOnce(&Peer) -> Vec<Note>,
    ) -> Result<PeerView, PeerError> {
        if self.config.dev_certs {
            return Err(PeerError::Conflict(
                "this node uses the development certificates, which every development node \
                 shares: it cannot federate (run `hashfed init` without --dev-certs)"
                    .into(),
            ));
        }
        let card = PeerCard::parse(card)?;
        let peer = self.peers.add(
            card,
            send,
            accept,
            crate::database::now_ms(),
            self.journal(audit),
        )?;
        tracing::info!(peer = %peer.name(), node = %peer.card.node_id, "peer added");
        Ok(self.peer_view(&peer))
    }

    /// Replaces a peer's grants, audited as `audit` says.
    pub fn set_peer_grants(
        &self,
        name: &str,
        send: Vec<String>,
        accept: Vec<String>,
        audit: impl FnOnce(&Peer) -> Vec<Note>,
    ) -> Result<PeerView, PeerError> {
        let peer = self
            .peers
            .set_grants(name, send, accept, self.journal(audit))?;
        tracing::info!(peer = %peer.name(), "peer grants changed");
        Ok(self.peer_view(&peer))
    }

    /// Suspends, resumes or revokes a peer; an inactive peer's connections
    /// are closed at once. Audited as `audit` says.
    pub fn set_peer_status(
        &self,
        name: &str,
        status: PeerStatus,
        audit: impl FnOnce(&Peer) -> Vec<Note>,
    ) -> Result<PeerView, PeerError> {
        let peer = self.peers.set_status(name, status, self.journal(audit))?;
        // Close its connections now, not when the federation task next
        // runs: the caller is told "revoked" only once it is cut off.
        self.refresh_trust();
        tracing::info!(peer = %peer.name(), status = status.as_str(), "peer status changed");
        Ok(self.peer_view(&peer))
    }

    /// Compares every set we share with or take from a peer with that
    /// peer's copy.
    pub async fn verify_sets(self: &Arc<Self>) -> Vec<SetComparison> {
        let mut out = Vec::new();
        for peer in self.peers.list().into_iter().filter(Peer::active) {
            let relevant: Vec<SetState> = self
                .db
                .store()
                .sets()
                .into_iter()
                .filter(|s| {
                    // A set of this node's own is never taken from a peer,
                    // whatever the peer's grants say: it is compared only
                    // where it is sent.
                    let received = peer.accepts(s.id()) && s.id().origin() != self.config.name;
                    s.signed_info.is_some() && (received || self.may_see(&peer, s))
                })
                .collect();
            if relevant.is_empty() {
                continue;
            }
            let compare = |set: &SetState, peer_seq: u64, verdict: String| SetComparison {
                set: set.id().to_string(),
                peer: peer.name().to_owned(),
                local_seq: set.head_seq,
                peer_seq,
                verdict,
            };
            let manifest = match connect(self, &peer).await {
                Ok(mut client) => client
                    .manifest(proto::ManifestRequest {})
                    .await
                    .map(|r| (client, r.into_inner()))
                    .map_err(|e| e.message().to_owned()),
                Err(e) => Err(e.to_string()),
            };
            let (mut client, manifest) = match manifest {
                Ok(m) => m,
                Err(why) => {
                    for set in &relevant {
                        out.push(compare(set, 0, format!("unreachable: {why}")));
                    }
                    continue;
                }
            };
            for set in &relevant {
                let Some(theirs) = manifest.sets.iter().find(|h| h.set == set.id().as_str()) else {
                    out.push(compare(set, 0, "not offered by the peer".into()));
                    continue;
                };
                let verdict = if theirs.head_seq == set.head_seq {
                    if theirs.head_digest == set.digest() {
                        "equal".to_owned()
                    } else {
                        "diverged: same head, different digest".to_owned()
                    }
                } else {
                    // Compare at the shorter head: the longer log must
                    // contain the shorter one.
                    let (at, ours_longer) = if theirs.head_seq < set.head_seq {
                        (theirs.head_seq, true)
                    } else {
                        (set.head_seq, false)
                    };
                    let (ours_at, theirs_at) = if ours_longer {
                        // Our digest where the peer's head is.
                        let ours = if at == 0 {
                            Some(crate::model::record::genesis_digest(set.id()).to_vec())
                        } else {
                            self.db
                                .store()
                                .checkpoint_at(set.id(), at)
                                .ok()
                                .flatten()
                                .map(|c| c.digest.to_vec())
                        };
                        (ours, Some(theirs.head_digest.clone()))
                    } else {
                        // The peer's digest where our head is (our head
                        // digest at seq 0 is the genesis digest).
                        let theirs_at = client
                            .get_checkpoint(proto::CheckpointRequest {
                                set: set.id().to_string(),
                                seq: at,
                            })
                            .await
                            .ok()
                            .map(|r| r.into_inner().digest);
                        (Some(set.digest().to_vec()), theirs_at)
                    };
                    let behind = theirs.head_seq.abs_diff(set.head_seq);
                    match (ours_at, theirs_at) {
                        (Some(a), Some(b)) if a == b && ours_longer => {
                            format!("peer is {behind} records behind")
                        }
                        (Some(a), Some(b)) if a == b => format!("{behind} records behind the peer"),
                        (Some(_), Some(_)) => format!("diverged at or before seq {at}"),
                        _ => format!(
                            "heads differ by {behind}; no checkpoint at seq {at} to compare"
                        ),
                    }
                };
                out.push(compare(set, theirs.head_seq, verdict));
            }
        }
        out
    }

    /// Rotates this node's signing key and/or renews its certificates while
    /// it serves. The new key signs from now on and reaches peers in the
    /// next manifest (with the statement the old key signed); new
    /// certificates serve from the next handshake. One rotation at a time.
    ///
    /// Atomic with its audit records (`audit`, given what the rotation
    /// will do): the new files are staged beside the old, the records
    /// land with the store's key journal in one batch, then the files are
    /// put in place; a crash before the journal leaves neither, after it
    /// both (the next open finishes it: `Federation::for_node`). The old
    /// key's bounds are read, and the new signer installed, under the
    /// store's writer lock, so the old key signs nothing past what its
    /// rotation states.
    pub fn rotate_keys(
        &self,
        signing: bool,
        tls: bool,
        audit: impl FnOnce(&Rotated) -> Vec<crate::model::audit::Note>,
    ) -> Result<Rotated, FederationError> {
        let _one = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        if tls && self.config.dev_certs {
            return Err(FederationError::Refused(
                "this node uses the fixed development certificates; they are not renewed",
            ));
        }
        let mut out = Rotated {
            node_id: self.config.node_id.clone(),
            ..Default::default()
        };
        let mut rotated = None;
        self.db.rotate_signer(|bounds, journal| {
            let staged = match signing {
                true => Some(crate::identity::keys::stage_rotation(
                    &self.dir,
                    crate::database::now_ms(),
                    bounds,
                )?),
                false => None,
            };
            if tls {
                out.certificates = crate::identity::renew::stage(&self.dir)?
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
            }
            let history = staged
                .as_ref()
                .map_or_else(|| self.key_history(), |s| s.history.clone());
            out.key_number = history.rotations.len() as u32;
            out.signing_key = history
                .rotations
                .last()
                .map_or(history.first_key.clone(), |r| r.key.clone());
            journal(audit(&out))?;
            if tls {
                crate::identity::renew::commit(&self.dir)?;
            }
            let Some(staged) = staged else {
                return Ok::<_, FederationError>(None);
            };
            crate::identity::keys::commit_rotation(&self.dir)?;
            let keys = staged.history.keys()?;
            rotated = Some(staged.history);
            Ok(Some(Arc::new(
                Signer::new(&self.config.name, &self.config.node_id, staged.key)
                    .with_history(&keys),
            )))
        })?;
        self.db.store().clear_journal(crate::store::Journal::Keys)?;
        if let Some(history) = rotated {
            tracing::info!(keys = history.rotations.len() + 1, "signing key rotated");
            self.keys.send_replace(history);
        }
        if tls {
            self.certs.reload()?;
            self.metrics.load_certificate_expiries(&self.dir);
            tracing::info!("certificates renewed");
        }
        Ok(out)
    }
}
