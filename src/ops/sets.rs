//! Operations on sets: create, suppress, and the rules an origin signs
//! (who receives a set, how many reviewers vet it, what disputes do).

use super::{check_reason, Actor, Ops, OpsError};
use crate::model::audit::Action;
use crate::model::{DisputePolicy, SetId, SetInfo, SetKind, SetPolicy};
use crate::store::SetState;

impl Ops {
    /// Every set, by id.
    pub fn sets(&self) -> Vec<SetState> {
        self.db.store().sets()
    }

    /// The set `id`, created (and audited, in the same batch) if it does
    /// not exist yet; `why` says what created it.
    pub fn ensure_set(&self, actor: &Actor, id: &SetId, why: &str) -> Result<SetState, OpsError> {
        if let Some(state) = self.db.store().set(id) {
            return Ok(state);
        }
        let note = actor.note(Action::SetCreated, id.as_str(), why);
        Ok(self
            .db
            .create_set(SetInfo::new(id.clone()), |_| vec![note])?)
    }

    /// Creates one of this node's own sets, a block list or an allowlist
    /// (audited in the same batch). Creating a set that exists with the
    /// same kind and description returns it; any other difference is
    /// refused.
    pub fn create_set(
        &self,
        actor: &Actor,
        id: &SetId,
        kind: SetKind,
        description: &str,
    ) -> Result<SetState, OpsError> {
        if id.origin() != self.node_name {
            return Err(OpsError::Precondition(format!(
                "{id} is not named as this node's own set (own sets are named {}/...)",
                self.node_name
            )));
        }
        if description.len() > super::MAX_REASON {
            return Err(OpsError::Invalid(format!(
                "the description is over {} bytes",
                super::MAX_REASON
            )));
        }
        if let Some(existing) = self.db.store().set(id) {
            if existing.info.kind == kind && existing.info.description == description {
                return Ok(existing);
            }
            return Err(OpsError::Store(crate::store::StoreError::SetExists(
                id.clone(),
            )));
        }
        let mut info = SetInfo::new(id.clone());
        info.kind = kind;
        info.description = description.to_owned();
        let what = match kind {
            SetKind::Block => "a block list, by an operator",
            SetKind::Allow => "an allowlist, by an operator",
        };
        let note = actor.note(Action::SetCreated, id.as_str(), what);
        let state = self.db.create_set(info, |_| vec![note])?;
        tracing::info!(set = %id, kind = %kind, "set created by operator");
        Ok(state)
    }

    /// Switches a set off (or back on) on this node: its entries stop (or
    /// resume) matching at once; the set keeps syncing; the origin is not
    /// told.
    pub fn suppress(
        &self,
        actor: &Actor,
        set: &SetId,
        suppressed: bool,
        reason: &str,
    ) -> Result<SetState, OpsError> {
        check_reason(reason)?;
        let action = if suppressed {
            Action::SetSuppressed
        } else {
            Action::SetUnsuppressed
        };
        let note = actor.note(action, set.as_str(), reason);
        let state = self.db.set_suppressed(set, suppressed, |_| vec![note])?;
        tracing::info!(set = %set, suppressed, "set switched by operator");
        Ok(state)
    }

    /// Sets how many reviewers besides the submitter must confirm each new
    /// entry of one of this node's sets (0: none; else at least 2).
    pub fn set_vetting(
        &self,
        actor: &Actor,
        set: &SetId,
        reviewers: u32,
    ) -> Result<SetState, OpsError> {
        let note = actor.note(
            Action::VettingSet,
            set.as_str(),
            format!("{reviewers} reviewers per entry"),
        );
        Ok(self.db.set_vetting(set, reviewers, |_| vec![note])?)
    }

    /// Sets what this node does when peers dispute entries of one of its
    /// sets.
    pub fn set_dispute_policy(
        &self,
        actor: &Actor,
        set: &SetId,
        policy: DisputePolicy,
    ) -> Result<SetState, OpsError> {
        let note = actor.note(
            Action::DisputePolicySet,
            set.as_str(),
            format!("threshold {}, suspend {}", policy.threshold, policy.suspend),
        );
        Ok(self.db.set_disputes(set, policy, |_| vec![note])?)
    }

    /// Changes who may receive one of this node's own sets and whether
    /// they may pass it on; signed with the next version.
    pub fn set_policy(
        &self,
        actor: &Actor,
        set: &SetId,
        policy: SetPolicy,
    ) -> Result<SetState, OpsError> {
        let name = &self.fed()?.config().name;
        if set.origin() != name {
            return Err(OpsError::Precondition(format!(
                "{set} is not this node's own set (own sets are named {name}/...)"
            )));
        }
        if let Some(bad) = policy.share_with.iter().find(|n| {
            n.as_str() != "*" && (n.len() != 32 || !n.bytes().all(|b| b.is_ascii_alphanumeric()))
        }) {
            return Err(OpsError::Invalid(format!(
                "share_with takes node ids (32 characters) or *, not {:?}",
                bad.chars().take(40).collect::<String>()
            )));
        }
        let describe = |s: &SetState| {
            let p = &s.info.policy;
            vec![actor.note(
                Action::PolicySigned,
                s.id().as_str(),
                format!(
                    "version {}, share with {:?}, reshare {}",
                    s.signed_info.as_ref().map_or(0, |i| i.version),
                    p.share_with,
                    p.reshare
                ),
            )]
        };
        Ok(self.db.set_policy(set, policy, describe)?)
    }
}
