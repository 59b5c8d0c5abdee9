//! Operations on peers and keys: add a peer from its card, its grants,
//! suspend/resume/revoke, review holds, key rotation, and the federation's
//! reads (`hashfed set verify`, feedback received).
//!
//! The peer registry is a file (`peers.toml`) that operators may read; its
//! change and its audit record cannot share one sled batch, so the record
//! is written as soon as the file is in place, and a crash between the two
//! is the one window the operations layer leaves (see docs/SECURITY.md).

pub use crate::federation::manage::{PeerView, Rotated, SetComparison};

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
        let view = self.fed()?.add_peer(card, send, accept)?;
        let subject = format!("{} ({})", view.peer.name(), view.peer.card.node_id);
        self.db
            .audit(actor.note(Action::PeerAdded, subject, detail))?;
        Ok(view)
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
        let view = self.fed()?.set_peer_grants(name, send, accept)?;
        self.db
            .audit(actor.note(Action::PeerGranted, view.peer.name(), detail))?;
        Ok(view)
    }

    /// Suspends, resumes or revokes a peer (its connections close at once
    /// unless resumed).
    pub fn set_peer_status(
        &self,
        actor: &Actor,
        name: &str,
        status: PeerStatus,
    ) -> Result<PeerView, OpsError> {
        let view = self.fed()?.set_peer_status(name, status)?;
        let action = match status {
            PeerStatus::Revoked => Action::PeerRevoked,
            PeerStatus::Suspended => Action::PeerSuspended,
            PeerStatus::Active => Action::PeerResumed,
        };
        self.db.audit(actor.note(action, view.peer.name(), ""))?;
        Ok(view)
    }

    /// Holds new entries from a peer (they sync, do not match) until
    /// released, or stops holding them.
    pub fn set_peer_review(
        &self,
        actor: &Actor,
        name: &str,
        review: bool,
    ) -> Result<PeerView, OpsError> {
        let view = self.fed()?.set_peer_review(name, review)?;
        let detail = if review {
            "new entries held for review"
        } else {
            "entries accepted as they come"
        };
        self.db
            .audit(actor.note(Action::PeerReview, view.peer.name(), detail))?;
        Ok(view)
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
        let out = self.fed()?.rotate_keys(signing, tls)?;
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
        self.db
            .audit(actor.note(Action::KeysRotated, &out.node_id, detail.join("; ")))?;
        Ok(out)
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
