//! Operations on peers and keys: add a peer from its card, its grants,
//! suspend/resume/revoke, review holds, key rotation, and the federation's
//! reads (`hashfed set verify`, feedback received).
//!
//! The peer registry is a file (`peers.toml`) that operators may read, so
//! a change cannot share a sled batch with its audit record. It is
//! journalled instead: written beside the registry, its digest recorded
//! with the audit record in one batch, then renamed in place; a crash in
//! between is finished (or dropped, if nothing was recorded) when the node
//! next opens its registry ([`crate::peers::PeerRegistry::recover`]).

pub use crate::identity::keys::Rotated;
pub use crate::peers::{PeerView, SetComparison};

use super::{Actor, Ops, OpsError};
use crate::model::audit::Action;
use crate::peers::PeerStatus;
use crate::store::ReceivedFeedback;

impl Ops {
    /// Every peer.
    pub fn peers(&self) -> Result<Vec<PeerView>, OpsError> {
        Ok(self.fed()?.list_peers())
    }

    /// Adds a peer from its card, with what we send it and take from it.
    pub fn add_peer(
        &self,
        actor: &Actor,
        card: &str,
        send: Vec<String>,
        accept: Vec<String>,
    ) -> Result<PeerView, OpsError> {
        let detail = format!("send {send:?}, accept {accept:?}");
        let audit = |peer: &crate::peers::Peer| {
            let subject = format!("{} ({})", peer.name(), peer.card.node_id);
            vec![actor.note(Action::PeerAdded, subject, detail)]
        };
        Ok(self.fed()?.add_peer(card, send, accept, audit)?)
    }

    /// Replaces a peer's grants.
    pub fn set_peer_grants(
        &self,
        actor: &Actor,
        name: &str,
        send: Vec<String>,
        accept: Vec<String>,
    ) -> Result<PeerView, OpsError> {
        let detail = format!("send {send:?}, accept {accept:?}");
        let audit =
            |peer: &crate::peers::Peer| vec![actor.note(Action::PeerGranted, peer.name(), detail)];
        Ok(self.fed()?.set_peer_grants(name, send, accept, audit)?)
    }

    /// Suspends, resumes or revokes a peer (its connections close at once
    /// unless resumed).
    pub fn set_peer_status(
        &self,
        actor: &Actor,
        name: &str,
        status: PeerStatus,
    ) -> Result<PeerView, OpsError> {
        let action = match status {
            PeerStatus::Revoked => Action::PeerRevoked,
            PeerStatus::Suspended => Action::PeerSuspended,
            PeerStatus::Active => Action::PeerResumed,
        };
        let audit = |peer: &crate::peers::Peer| vec![actor.note(action, peer.name(), "")];
        Ok(self.fed()?.set_peer_status(name, status, audit)?)
    }

    /// Holds new entries from a peer (they sync, do not match) until
    /// released, or stops holding them.
    pub fn set_peer_review(
        &self,
        actor: &Actor,
        name: &str,
        review: bool,
    ) -> Result<PeerView, OpsError> {
        let detail = if review {
            "new entries held for review"
        } else {
            "entries accepted as they come"
        };
        let audit =
            |peer: &crate::peers::Peer| vec![actor.note(Action::PeerReview, peer.name(), detail)];
        Ok(self.fed()?.set_peer_review(name, review, audit)?)
    }

    /// Rotates the signing key and/or renews the certificates while the
    /// node serves.
    pub fn rotate_keys(
        &self,
        actor: &Actor,
        signing: bool,
        tls: bool,
    ) -> Result<Rotated, OpsError> {
        if !signing && !tls {
            return Err(OpsError::Invalid(
                "nothing to rotate: ask for the signing key, the certificates or both".into(),
            ));
        }
        let note = |out: &Rotated| {
            let mut detail = Vec::new();
            if signing {
                detail.push(format!(
                    "signing key {} ({})",
                    out.key_number, out.signing_key
                ));
            }
            if tls {
                detail.push(format!("certificates {}", out.certificates.join(", ")));
            }
            vec![actor.note(Action::KeysRotated, &out.node_id, detail.join("; "))]
        };
        Ok(self.fed()?.rotate_keys(signing, tls, note)?)
    }

    /// Compares every set shared with or taken from a peer with the peer's
    /// copy.
    pub async fn verify_sets(&self) -> Result<Vec<SetComparison>, OpsError> {
        Ok(self.fed()?.verify_sets().await)
    }

    /// Feedback peers sent about this node's own entries.
    pub fn received_feedback(&self) -> Result<Vec<ReceivedFeedback>, OpsError> {
        self.fed()?;
        Ok(self.db.store().received_feedback()?)
    }
}
