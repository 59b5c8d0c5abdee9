//! The federation's messages to and from the library's types: set heads,
//! signed configurations and checkpoints, key histories, feedback notes.

use super::proto;
use crate::identity::keys::KeyHistory;
use crate::model::keychain::{KeyBound, KeyRotation};
use crate::model::signed::{Checkpoint, FeedbackNote, SignedInfo};
use crate::model::{UnknownVerdict, Verdict};
use crate::store::SetState;

/// A set's head as the manifest shows it.
pub fn head(s: &SetState) -> proto::SetHead {
    proto::SetHead {
        set: s.id().to_string(),
        head_seq: s.head_seq,
        head_digest: s.digest().to_vec(),
        info: s.signed_info.as_ref().map(signed_info),
    }
}

/// A key history to the wire's.
pub fn key_history(h: &KeyHistory) -> proto::KeyHistory {
    proto::KeyHistory {
        node_id: h.node_id.clone(),
        first_key: h.first_key.clone(),
        rotations: h
            .rotations
            .iter()
            .map(|r| proto::KeyRotation {
                n: r.n,
                key: r.key.clone(),
                time_ms: r.time_ms,
                signature: r.signature.clone(),
                bounded: r.bounds.is_some(),
                bounds: r
                    .bounds
                    .iter()
                    .flatten()
                    .map(|b| proto::KeyBound {
                        set: b.set.clone(),
                        seq: b.seq,
                        info_version: b.info_version,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The wire's key history to ours (checked by whoever uses it).
pub fn key_history_from(h: &proto::KeyHistory) -> KeyHistory {
    KeyHistory {
        node_id: h.node_id.clone(),
        first_key: h.first_key.clone(),
        rotations: h
            .rotations
            .iter()
            .map(|r| KeyRotation {
                n: r.n,
                key: r.key.clone(),
                time_ms: r.time_ms,
                signature: r.signature.clone(),
                bounds: r.bounded.then(|| {
                    r.bounds
                        .iter()
                        .map(|b| KeyBound {
                            set: b.set.clone(),
                            seq: b.seq,
                            info_version: b.info_version,
                        })
                        .collect()
                }),
            })
            .collect(),
    }
}

/// Our signed configuration to the wire's.
pub fn signed_info(s: &SignedInfo) -> proto::SignedInfo {
    proto::SignedInfo {
        json: s.json.clone(),
        version: s.version,
        signature: s.signature.clone(),
    }
}

/// Our checkpoint to the wire's.
pub fn checkpoint(c: &Checkpoint) -> proto::Checkpoint {
    proto::Checkpoint {
        seq: c.seq,
        digest: c.digest.to_vec(),
        signature: c.signature.to_vec(),
    }
}

/// The wire's checkpoint to ours.
pub fn checkpoint_from(c: &proto::Checkpoint) -> Result<Checkpoint, String> {
    Ok(Checkpoint {
        seq: c.seq,
        digest: c
            .digest
            .as_slice()
            .try_into()
            .map_err(|_| "checkpoint digest is not 32 bytes".to_owned())?,
        signature: c
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| "checkpoint signature is not 64 bytes".to_owned())?,
    })
}

/// A feedback note to the wire's.
pub fn feedback_item(n: &FeedbackNote) -> proto::FeedbackItem {
    proto::FeedbackItem {
        set: n.set.to_string(),
        entry_id: n.entry.to_string(),
        verdict: n.verdict.as_str().to_owned(),
        reason: n.reason.clone(),
        time_ms: n.time_ms,
        reporter_node_id: n.reporter.clone(),
        signature: n.signature.clone(),
    }
}

/// The wire's feedback note to ours (its signature checked by whoever
/// uses it).
pub fn feedback_note(i: &proto::FeedbackItem) -> Result<FeedbackNote, String> {
    let verdict: Verdict = i
        .verdict
        .parse()
        .map_err(|e: UnknownVerdict| e.to_string())?;
    if i.reason.len() > 64 || i.reporter_node_id.len() > 64 || i.signature.len() > 128 {
        return Err("a field is too long".into());
    }
    Ok(FeedbackNote {
        set: i
            .set
            .parse()
            .map_err(|e: crate::model::NameError| e.to_string())?,
        entry: i
            .entry_id
            .parse()
            .map_err(|e: crate::model::NameError| e.to_string())?,
        verdict,
        reason: i.reason.clone(),
        time_ms: i.time_ms,
        reporter: i.reporter_node_id.clone(),
        signature: i.signature.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(verdict: &str) -> proto::FeedbackItem {
        proto::FeedbackItem {
            set: "hotline-a/list".into(),
            entry_id: "ab".repeat(16),
            verdict: verdict.into(),
            reason: "benign_collision".into(),
            time_ms: 7,
            reporter_node_id: "node-c".into(),
            signature: String::new(),
        }
    }

    #[test]
    fn feedback_verdicts_cross_the_wire_as_their_names() {
        for v in Verdict::ALL {
            let note = feedback_note(&item(v.as_str())).unwrap();
            assert_eq!(note.verdict, v);
            assert_eq!(feedback_item(&note), item(v.as_str()));
        }
    }

    #[test]
    fn an_unknown_feedback_verdict_is_refused_by_name() {
        for bad in ["", "CONFIRMED", "maybe"] {
            let why = feedback_note(&item(bad)).unwrap_err();
            assert!(why.contains(&format!("unknown verdict {bad:?}")), "{why}");
        }
    }
}
