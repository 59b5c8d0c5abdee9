//! What an origin signs, so that any node can check records relayed to it
//! by a third node.
//!
//! Signing every record would cost an Ed25519 verification per record
//! (about 20k per second per core), too slow for an initial sync of
//! millions of entries. Instead each set's log is a BLAKE3 hash chain (see
//! [`super::record::chain_digest`]) and the origin signs **checkpoints**:
//! (set, sequence number, chain digest after that record). A receiver
//! recomputes the chain over the records it is given and applies them only
//! when the digest at a checkpoint equals the signed one: altering,
//! dropping, inserting or reordering any record before it changes that
//! digest. The origin signs a checkpoint at least every
//! [`CHECKPOINT_EVERY`] records and at the end of every write, so a
//! receiver never holds more than that many unverified records.
//!
//! A set's configuration (description, policy, vocabulary, thresholds) is
//! signed too, with a version number, so a relay can neither widen the
//! policy (say, turn re-sharing on) nor replay an older one.
//!
//! Signatures verify against every key of the signer's chain (see
//! [`super::keychain`]), so rotating a key leaves what was signed before
//! valid.
//!
//! Every statement starts with its own domain-separation prefix, so a
//! signature over one kind can never be passed off as another.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use super::keychain::{KeyChain, Signed};
use super::set::{SetId, SetInfo};

/// Most records between two checkpoints of a set's log.
pub const CHECKPOINT_EVERY: u64 = 4096;

/// Why a signed statement was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature is not 64 bytes, or the key not 32.
    #[error("malformed signature or key")]
    Malformed,
    /// The signature does not verify under the origin's key.
    #[error("signature does not verify with the origin's key")]
    Invalid,
    /// A signed configuration that does not parse.
    #[error("signed set configuration is malformed: {0}")]
    BadInfo(String),
    /// Signed by one of the origin's retired keys past the bounds its
    /// rotation set (see [`super::keychain`]): an old key may have leaked.
    #[error("signed by a retired key past its bounds ({0}): was an old key leaked?")]
    Retired(String),
}

/// An origin's signature over (set, seq, chain digest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The sequence number of the last record covered.
    pub seq: u64,
    /// The chain digest after that record.
    pub digest: [u8; 32],
    /// Ed25519 over [`checkpoint_statement`].
    pub signature: [u8; 64],
}

/// The bytes a checkpoint signs.
pub fn checkpoint_statement(set: &SetId, seq: u64, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + set.as_str().len());
    m.extend_from_slice(b"hashfed checkpoint v1\0");
    m.extend_from_slice(set.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(digest);
    m
}

/// A set's configuration as its origin signed it. `json` is kept verbatim:
/// the signature covers these exact bytes, which every relay passes on
/// unchanged.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SignedInfo {
    /// The configuration ([`SetInfo`]) as JSON.
    pub json: String,
    /// Increases with every change; receivers keep the highest they saw.
    pub version: u64,
    /// Ed25519 over [`info_statement`], hex.
    pub signature: String,
}

/// The bytes a signed configuration signs.
pub fn info_statement(version: u64, json: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(32 + json.len());
    m.extend_from_slice(b"hashfed set info v1\0");
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(json.as_bytes());
    m
}

impl SignedInfo {
    /// Checks the signature with any of the origin's `keys` and returns
    /// the configuration.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<SetInfo, SignatureError> {
        verify_any(
            keys,
            &info_statement(self.version, &self.json),
            &self.signature()?,
        )?;
        self.parse()
    }

    /// As [`SignedInfo::verify`], for `set`, and only by a key of the
    /// origin's `chain` that may sign this version (a retired key, up to
    /// the version it was retired at).
    pub fn verify_in(&self, chain: &KeyChain, set: &SetId) -> Result<SetInfo, SignatureError> {
        let statement = info_statement(self.version, &self.json);
        let key = signed_by(chain.keys(), &statement, &self.signature()?)?;
        chain
            .may_sign(key, set.as_str(), Signed::Info(self.version))
            .map_err(SignatureError::Retired)?;
        self.parse()
    }

    fn signature(&self) -> Result<[u8; 64], SignatureError> {
        super::signal::decode_hex(&self.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed)
    }

    fn parse(&self) -> Result<SetInfo, SignatureError> {
        serde_json::from_str(&self.json).map_err(|e| SignatureError::BadInfo(e.to_string()))
    }
}

/// Checks an Ed25519 signature (strictly: no malleable encodings).
pub fn verify(
    key: &VerifyingKey,
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| SignatureError::Invalid)
}

/// Checks a signature against every key of a node's chain (see
/// [`super::keychain`]), newest first: what a node signed before rotating
/// its key stays valid.
pub fn verify_any(
    keys: &[VerifyingKey],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    if keys
        .iter()
        .rev()
        .any(|key| verify(key, message, signature).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// Which of `keys` signed `message` (its index), trying the newest first.
fn signed_by(
    keys: &[VerifyingKey],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<usize, SignatureError> {
    (0..keys.len())
        .rev()
        .find(|&i| verify(&keys[i], message, signature).is_ok())
        .ok_or(SignatureError::Invalid)
}

/// Checks a checkpoint for `set` against the origin's `chain`: signed by
/// one of its keys, and by a retired key only up to the seq it was
/// retired at (what receivers use: a leaked old key cannot extend a set).
pub fn verify_checkpoint_in(
    chain: &KeyChain,
    set: &SetId,
    checkpoint: &Checkpoint,
) -> Result<(), SignatureError> {
    let statement = checkpoint_statement(set, checkpoint.seq, &checkpoint.digest);
    let key = signed_by(chain.keys(), &statement, &checkpoint.signature)?;
    chain
        .may_sign(key, set.as_str(), Signed::Checkpoint(checkpoint.seq))
        .map_err(SignatureError::Retired)
}

/// Checks a checkpoint for `set` with any of the origin's keys.
pub fn verify_checkpoint(
    keys: &[VerifyingKey],
    set: &SetId,
    checkpoint: &Checkpoint,
) -> Result<(), SignatureError> {
    verify_any(
        keys,
        &checkpoint_statement(set, checkpoint.seq, &checkpoint.digest),
        &checkpoint.signature,
    )
}

/// Checks the node's signature over its audit log's head with any of its
/// keys.
pub fn verify_audit_head(
    keys: &[VerifyingKey],
    seq: u64,
    digest: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), SignatureError> {
    verify_any(keys, &super::audit::head_statement(seq, digest), signature)
}

/// A public key from its 32 bytes.
pub fn verifying_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| SignatureError::Malformed)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::Malformed)
}

/// Feedback a node gave on a match of an entry it received, on its way
/// back to the entry's origin. Signed by the node that gave it, so relays
/// on the way can neither invent nor change it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedbackNote {
    /// The entry's set.
    pub set: SetId,
    /// The entry.
    pub entry: super::EntryId,
    /// The verdict (signed as its name, `confirmed` or `false_positive`).
    pub verdict: super::Verdict,
    /// A reason code name.
    pub reason: String,
    /// When it was given, ms since the epoch.
    pub time_ms: u64,
    /// The node id of the node that gave it.
    pub reporter: String,
    /// Ed25519 over [`FeedbackNote::statement`], hex.
    pub signature: String,
}

impl FeedbackNote {
    /// The bytes the reporter signs.
    pub fn statement(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(160);
        m.extend_from_slice(b"hashfed feedback v1\0");
        for field in [
            self.set.as_str(),
            self.verdict.as_str(),
            &self.reason,
            &self.reporter,
        ] {
            m.extend_from_slice(&(field.len() as u32).to_be_bytes());
            m.extend_from_slice(field.as_bytes());
        }
        m.extend_from_slice(&self.entry.0);
        m.extend_from_slice(&self.time_ms.to_be_bytes());
        m
    }

    /// Checks the reporter's signature with any of its keys.
    pub fn verify(&self, keys: &[VerifyingKey]) -> Result<(), SignatureError> {
        verify_any(keys, &self.statement(), &self.signature_bytes()?)
    }

    /// Checks the reporter's signature against its `chain`: by one of its
    /// keys, and by a retired key only for a note dated before the
    /// rotation that retired it (a leaked old key cannot speak for the
    /// reporter afterwards).
    pub fn verify_in(&self, chain: &KeyChain) -> Result<(), SignatureError> {
        let key = signed_by(chain.keys(), &self.statement(), &self.signature_bytes()?)?;
        chain
            .may_sign_at(key, self.time_ms)
            .map_err(SignatureError::Retired)
    }

    fn signature_bytes(&self) -> Result<[u8; 64], SignatureError> {
        super::signal::decode_hex(&self.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed)
    }
}

/// An origin: the node name its sets carry and the key it signs them with.
pub struct Signer {
    origin: String,
    node_id: String,
    key: SigningKey,
    /// Every key the node has had, oldest first, ending with `key`'s.
    keys: Vec<VerifyingKey>,
}

impl Signer {
    /// The signer of node `node_id` for sets named `<origin>/...`.
    pub fn new(origin: &str, node_id: &str, key: SigningKey) -> Self {
        let keys = vec![key.verifying_key()];
        Signer {
            origin: origin.to_owned(),
            node_id: node_id.to_owned(),
            key,
            keys,
        }
    }

    /// As [`Signer::new`] for a node whose key was rotated: `earlier` are
    /// its previous keys, oldest first (what it signed with them still
    /// verifies here).
    pub fn with_history(mut self, earlier: &[VerifyingKey]) -> Self {
        let current = self.key.verifying_key();
        self.keys = earlier
            .iter()
            .copied()
            .filter(|k| *k != current)
            .chain(std::iter::once(current))
            .collect();
        self
    }

    /// Every key of this node, oldest first; the last signs from now on.
    pub fn public_keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Fills in `note.reporter` (this node) and signs it.
    pub fn feedback(&self, mut note: FeedbackNote) -> FeedbackNote {
        note.reporter = self.node_id.clone();
        note.signature = crate::signal::exact::to_hex(&self.key.sign(&note.statement()).to_bytes());
        note
    }

    /// The origin name (the node's name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether this node is the origin of `set`.
    pub fn owns(&self, set: &SetId) -> bool {
        set.origin() == self.origin
    }

    /// The public key.
    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs a checkpoint of `set`.
    pub fn checkpoint(&self, set: &SetId, seq: u64, digest: [u8; 32]) -> Checkpoint {
        let statement = checkpoint_statement(set, seq, &digest);
        Checkpoint {
            seq,
            digest,
            signature: self.key.sign(&statement).to_bytes(),
        }
    }

    /// Signs the audit log's head (see [`super::audit`]).
    pub fn audit_head(&self, seq: u64, digest: &[u8; 32]) -> [u8; 64] {
        self.key
            .sign(&super::audit::head_statement(seq, digest))
            .to_bytes()
    }

    /// Signs a configuration at `version`.
    pub fn info(&self, info: &SetInfo, version: u64) -> Result<SignedInfo, SignatureError> {
        let json =
            serde_json::to_string(info).map_err(|e| SignatureError::BadInfo(e.to_string()))?;
        let signature = self.key.sign(&info_statement(version, &json)).to_bytes();
        Ok(SignedInfo {
            json,
            version,
            signature: crate::signal::exact::to_hex(&signature),
        })
    }
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("origin", &self.origin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new("hotline-a", "node-a", SigningKey::from_bytes(&[7; 32]))
    }

    #[test]
    fn checkpoints_verify_only_for_their_set_seq_and_digest() {
        let s = signer();
        let set = SetId::new("hotline-a", "x").unwrap();
        let cp = s.checkpoint(&set, 5, [1; 32]);
        let key = [s.public_key()];
        assert!(verify_checkpoint(&key, &set, &cp).is_ok());
        let other = SetId::new("hotline-a", "y").unwrap();
        assert_eq!(
            verify_checkpoint(&key, &other, &cp),
            Err(SignatureError::Invalid)
        );
        for changed in [
            Checkpoint {
                seq: 6,
                ..cp.clone()
            },
            Checkpoint {
                digest: [2; 32],
                ..cp.clone()
            },
        ] {
            assert!(verify_checkpoint(&key, &set, &changed).is_err());
        }
        let stranger = [SigningKey::from_bytes(&[8; 32]).verifying_key()];
        assert!(verify_checkpoint(&stranger, &set, &cp).is_err());
    }

    #[test]
    fn signed_info_round_trips_and_refuses_changes() {
        let s = signer();
        let mut info = SetInfo::new(SetId::new("hotline-a", "x").unwrap());
        info.policy.reshare = false;
        let signed = s.info(&info, 3).unwrap();
        assert_eq!(signed.verify(s.public_keys()).unwrap(), info);
        let widened = SignedInfo {
            json: signed.json.replace("\"reshare\":false", "\"reshare\":true"),
            ..signed.clone()
        };
        assert_ne!(widened.json, signed.json);
        assert_eq!(
            widened.verify(s.public_keys()),
            Err(SignatureError::Invalid)
        );
        let replayed = SignedInfo {
            version: 4,
            ..signed.clone()
        };
        assert!(replayed.verify(s.public_keys()).is_err());
        assert!(format!("{s:?}").contains("hotline-a"));
    }

    #[test]
    fn feedback_notes_are_signed_by_their_reporter() {
        let s = signer();
        let note = s.feedback(FeedbackNote {
            set: SetId::new("hotline-b", "x").unwrap(),
            entry: crate::model::EntryId([3; 16]),
            verdict: crate::model::Verdict::FalsePositive,
            reason: "BENIGN_COLLISION".into(),
            time_ms: 9,
            reporter: String::new(),
            signature: String::new(),
        });
        assert_eq!(note.reporter, "node-a");
        assert!(note.verify(s.public_keys()).is_ok());
        let changed = FeedbackNote {
            verdict: crate::model::Verdict::Confirmed,
            ..note.clone()
        };
        assert!(changed.verify(s.public_keys()).is_err());
    }

    #[test]
    fn what_an_old_key_signed_verifies_after_a_rotation() {
        let old = signer();
        let set = SetId::new("hotline-a", "x").unwrap();
        let before = old.checkpoint(&set, 1, [1; 32]);
        let rotated = Signer::new("hotline-a", "node-a", SigningKey::from_bytes(&[9; 32]))
            .with_history(old.public_keys());
        assert_eq!(rotated.public_keys().len(), 2);
        let after = rotated.checkpoint(&set, 2, [2; 32]);
        for cp in [&before, &after] {
            assert!(verify_checkpoint(rotated.public_keys(), &set, cp).is_ok());
        }
        // A receiver that knows only the old key cannot take the new one's
        // word for it: it must learn the chain first.
        assert!(verify_checkpoint(old.public_keys(), &set, &after).is_err());
    }

    #[test]
    fn a_leaked_old_key_cannot_extend_a_set_or_re_sign_its_policy() {
        use crate::model::keychain::{rotate, walk, KeyBound};
        let old = signer();
        let set = SetId::new("hotline-a", "x").unwrap();
        let new_key = SigningKey::from_bytes(&[9; 32]);
        let bounds = vec![KeyBound {
            set: set.to_string(),
            seq: 5,
            info_version: 2,
        }];
        let r = rotate("node-a", &old.key, 1, &new_key.verifying_key(), 1, bounds);
        let chain = walk("node-a", &old.public_key(), &[r]).unwrap();
        let rotated = Signer::new("hotline-a", "node-a", new_key).with_history(old.public_keys());

        // What the old key signed before the rotation still holds.
        assert!(verify_checkpoint_in(&chain, &set, &old.checkpoint(&set, 5, [1; 32])).is_ok());
        // Past it, only the new key.
        let leaked = old.checkpoint(&set, 6, [2; 32]);
        assert!(matches!(
            verify_checkpoint_in(&chain, &set, &leaked),
            Err(SignatureError::Retired(_))
        ));
        assert!(verify_checkpoint(chain.keys(), &set, &leaked).is_ok());
        assert!(verify_checkpoint_in(&chain, &set, &rotated.checkpoint(&set, 6, [2; 32])).is_ok());
        // A set the old key never signed for.
        let other = SetId::new("hotline-a", "y").unwrap();
        assert!(verify_checkpoint_in(&chain, &other, &old.checkpoint(&other, 1, [3; 32])).is_err());

        let mut info = SetInfo::new(set.clone());
        assert!(old.info(&info, 2).unwrap().verify_in(&chain, &set).is_ok());
        info.policy.reshare = true;
        let widened = old.info(&info, 3).unwrap();
        assert!(matches!(
            widened.verify_in(&chain, &set),
            Err(SignatureError::Retired(_))
        ));
        assert!(rotated
            .info(&info, 3)
            .unwrap()
            .verify_in(&chain, &set)
            .is_ok());
    }

    #[test]
    fn a_retired_key_cannot_sign_feedback_dated_after_its_rotation() {
        use crate::model::keychain::{rotate, walk};
        let old = signer();
        let new_key = SigningKey::from_bytes(&[9; 32]);
        let r = rotate("node-a", &old.key, 1, &new_key.verifying_key(), 100, vec![]);
        let chain = walk("node-a", &old.public_key(), &[r]).unwrap();
        let note = |time_ms| FeedbackNote {
            set: SetId::new("hotline-b", "x").unwrap(),
            entry: crate::model::EntryId([3; 16]),
            verdict: crate::model::Verdict::FalsePositive,
            reason: "benign_collision".into(),
            time_ms,
            reporter: String::new(),
            signature: String::new(),
        };
        assert!(old.feedback(note(100)).verify_in(&chain).is_ok());
        assert!(matches!(
            old.feedback(note(101)).verify_in(&chain),
            Err(SignatureError::Retired(_))
        ));
        let rotated = Signer::new("hotline-a", "node-a", new_key).with_history(old.public_keys());
        assert!(rotated.feedback(note(101)).verify_in(&chain).is_ok());
    }
}
