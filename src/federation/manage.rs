//! Operators' federation actions, as the admin service offers them: peers
//! and their grants, set policies, anti-entropy (`hashfed set verify`) and
//! the feedback an origin received.

use std::sync::Arc;

use tonic::Status;

use super::sync::connect;
use super::Federation;
use crate::model::signed::Signer;
use crate::model::{SetId, SetPolicy};
use crate::peers::{Peer, PeerCard, PeerError, PeerStatus};
use crate::service::proto;
use crate::store::SetState;

fn peer_error(e: PeerError) -> Status {
    match e {
        PeerError::Unknown(_) => Status::not_found(e.to_string()),
        PeerError::Revoked(_) | PeerError::Conflict(_) => {
            Status::failed_precondition(e.to_string())
        }
        PeerError::Invalid(_) => Status::invalid_argument(e.to_string()),
        PeerError::Io { .. } | PeerError::Identity(_) => Status::internal(e.to_string()),
    }
}

impl Federation {
    fn peer_view(&self, p: &Peer) -> proto::Peer {
        proto::Peer {
            name: p.card.name.clone(),
            node_id: p.card.node_id.clone(),
            endpoint: p.card.endpoint.clone(),
            status: p.status.as_str().into(),
            send: p.send.clone(),
            accept: p.accept.clone(),
            open_connections: self.trust.open_connections(p.name()) as u32,
            sync: if p.active() && !p.accept.is_empty() {
                self.sync_status(p.name())
            } else {
                "idle".into()
            },
            review: p.review,
        }
    }

    /// Switches local review of a peer's entries on or off.
    pub fn set_peer_review(&self, name: &str, review: bool) -> Result<proto::Peer, Status> {
        let peer = self.peers.set_review(name, review).map_err(peer_error)?;
        tracing::info!(peer = %peer.name(), review, "peer review changed");
        Ok(self.peer_view(&peer))
    }

    /// Every peer.
    pub fn list_peers(&self) -> proto::ListPeersResponse {
        proto::ListPeersResponse {
            peers: self
                .peers
                .list()
                .iter()
                .map(|p| self.peer_view(p))
                .collect(),
        }
    }

    /// Adds a peer from its card.
    pub fn add_peer(&self, req: proto::AddPeerRequest) -> Result<proto::Peer, Status> {
        if self.config.dev_certs {
            return Err(Status::failed_precondition(
                "this node uses the development certificates, which every development node \
                 shares: it cannot federate (run `hashfed init` without --dev-certs)",
            ));
        }
        let card = PeerCard::parse(&req.card).map_err(peer_error)?;
        let peer = self
            .peers
            .add(card, req.send, req.accept, crate::database::now_ms())
            .map_err(peer_error)?;
        tracing::info!(peer = %peer.name(), node = %peer.card.node_id, "peer added");
        Ok(self.peer_view(&peer))
    }

    /// Replaces a peer's grants.
    pub fn set_peer_grants(&self, req: proto::SetPeerGrantsRequest) -> Result<proto::Peer, Status> {
        let peer = self
            .peers
            .set_grants(&req.name, req.send, req.accept)
            .map_err(peer_error)?;
        tracing::info!(peer = %peer.name(), "peer grants changed");
        Ok(self.peer_view(&peer))
    }

    /// Suspends, resumes or revokes a peer; an inactive peer's connections
    /// are closed at once.
    pub fn set_peer_status(&self, req: proto::SetPeerStatusRequest) -> Result<proto::Peer, Status> {
        let status = PeerStatus::parse(&req.status).map_err(peer_error)?;
        let peer = self
            .peers
            .set_status(&req.name, status)
            .map_err(peer_error)?;
        // Close its connections now, not when the federation task next
        // runs: the caller is told "revoked" only once it is cut off.
        self.refresh_trust();
        tracing::info!(peer = %peer.name(), status = status.as_str(), "peer status changed");
        Ok(self.peer_view(&peer))
    }

    /// Changes one of this node's own sets' policy.
    pub fn set_policy(&self, req: proto::SetPolicyRequest) -> Result<SetState, Status> {
        let set: SetId = req
            .set
            .parse()
            .map_err(|e: crate::model::NameError| Status::invalid_argument(e.to_string()))?;
        if set.origin() != self.config.name {
            return Err(Status::failed_precondition(format!(
                "{set} is not this node's own set (own sets are named {}/...)",
                self.config.name
            )));
        }
        if let Some(bad) = req.share_with.iter().find(|n| {
            n.as_str() != "*" && (n.len() != 32 || !n.bytes().all(|b| b.is_ascii_alphanumeric()))
        }) {
            return Err(Status::invalid_argument(format!(
                "share_with takes node ids (32 characters) or *, not {:?}",
                bad.chars().take(40).collect::<String>()
            )));
        }
        self.db
            .set_policy(
                &set,
                SetPolicy {
                    share_with: req.share_with,
                    reshare: req.reshare,
                },
            )
            .map_err(|e| match e {
                crate::store::StoreError::UnknownSet(_) => Status::not_found(e.to_string()),
                other => Status::failed_precondition(other.to_string()),
            })
    }

    /// Compares every set we share with or take from a peer with that
    /// peer's copy.
    pub async fn verify_sets(self: &Arc<Self>) -> proto::VerifySetsResponse {
        let mut out = proto::VerifySetsResponse::default();
        for peer in self.peers.list().into_iter().filter(Peer::active) {
            let relevant: Vec<SetState> = self
                .db
                .store()
                .sets()
                .into_iter()
                .filter(|s| {
                    s.signed_info.is_some() && (peer.accepts(s.id()) || self.may_see(&peer, s))
                })
                .collect();
            if relevant.is_empty() {
                continue;
            }
            let compare = |set: &SetState, peer_seq: u64, verdict: String| proto::SetComparison {
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
                        out.comparisons
                            .push(compare(set, 0, format!("unreachable: {why}")));
                    }
                    continue;
                }
            };
            for set in &relevant {
                let Some(theirs) = manifest.sets.iter().find(|h| h.set == set.id().as_str()) else {
                    out.comparisons
                        .push(compare(set, 0, "not offered by the peer".into()));
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
                out.comparisons.push(compare(set, theirs.head_seq, verdict));
            }
        }
        out
    }

    /// Rotates this node's signing key and/or renews its certificates while
    /// it serves. The new key signs from now on and reaches peers in the
    /// next manifest (with the statement the old key signed); new
    /// certificates serve from the next handshake. One rotation at a time.
    pub fn rotate_keys(
        &self,
        signing: bool,
        tls: bool,
    ) -> Result<proto::RotateKeysResponse, Status> {
        let internal = |e: &dyn std::fmt::Display| Status::internal(e.to_string());
        let _one = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = proto::RotateKeysResponse {
            node_id: self.config.node_id.clone(),
            ..Default::default()
        };
        if tls && self.config.dev_certs {
            return Err(Status::failed_precondition(
                "this node uses the fixed development certificates; they are not renewed",
            ));
        }
        if signing {
            let (key, history) =
                crate::identity::keys::rotate(&self.dir, crate::database::now_ms())
                    .map_err(|e| internal(&e))?;
            let keys = history.keys().map_err(|e| internal(&e))?;
            let signer =
                Signer::new(&self.config.name, &self.config.node_id, key).with_history(&keys);
            self.db
                .set_signer(Arc::new(signer))
                .map_err(|e| internal(&e))?;
            tracing::info!(keys = keys.len(), "signing key rotated");
            self.keys.send_replace(history);
        }
        if tls {
            out.certificates = crate::identity::renew::renew(&self.dir)
                .map_err(|e| internal(&e))?
                .into_iter()
                .map(str::to_owned)
                .collect();
            self.certs.reload().map_err(|e| internal(&e))?;
            self.metrics.load_certificate_expiries(&self.dir);
            tracing::info!("certificates renewed");
        }
        let history = self.key_history();
        out.key_number = history.rotations.len() as u32;
        out.signing_key = history
            .rotations
            .last()
            .map_or(history.first_key.clone(), |r| r.key.clone());
        Ok(out)
    }

    /// Feedback received about this node's entries.
    pub fn received_feedback(&self) -> Result<proto::ListReceivedFeedbackResponse, Status> {
        let items = self
            .db
            .store()
            .received_feedback()
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(proto::ListReceivedFeedbackResponse {
            items: items
                .into_iter()
                .map(|r| proto::ReceivedFeedback {
                    set: r.note.set.to_string(),
                    entry_id: r.note.entry.to_string(),
                    verdict: r.note.verdict,
                    reason: r.note.reason,
                    time_ms: r.note.time_ms,
                    reporter_node_id: r.note.reporter,
                    via: r.via,
                    verified: r.verified,
                })
                .collect(),
        })
    }
}
