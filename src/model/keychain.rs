//! A node's signing keys over time.
//!
//! A node id is derived from the node's **first** signing key and never
//! changes: peers pin it, their registries name it, their TLS expects it.
//! To change keys the node signs a rotation statement with its current key
//! naming the next one:
//!
//! ```text
//! "hashfed key rotation v1\0" ‖ len ‖ node id ‖ n (u32) ‖ next key (32 bytes) ‖ time (u64 ms)
//! ```
//!
//! Whoever knows the first key (the one the node id derives from) can walk
//! the statements to the current key, so a chain needs no third party and
//! any node may pass it on: a relay can withhold statements but not forge
//! or alter them. Records signed before a rotation stay valid; a receiver
//! accepts a signature by any key of the chain (see
//! [`super::signed::verify_any`]).
//!
//! Each rotation also **bounds the key it retires**: it lists, set by set,
//! the last sequence number and configuration version the old key signed
//! (read under the store's writer lock, so nothing was signed in
//! between). A receiver takes a checkpoint or a configuration signed by a
//! retired key only within those bounds, so a leaked old key cannot extend
//! a set, nor re-sign its policy, nor start a new set in the node's name
//! ([`KeyChain`]). Statements of the first format (`v1`, no bounds) leave
//! their key unbounded, as before.
//!
//! Chains only grow. Two different statements for the same `n` (a fork:
//! only someone holding the old key can make one) are refused, never
//! resolved silently: a fork means the old key leaked, and operators must
//! hear of it.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::signal::decode_hex;
use super::signed::{verify, verifying_key};

/// Most sets one rotation may bound (a hostile statement cannot make us
/// hold without bound either).
pub const MAX_BOUNDS: usize = 1 << 20;

/// Most rotations a chain may hold (a hostile chain cannot make us verify
/// without bound; a key rotated monthly for five years needs 60).
pub const MAX_ROTATIONS: usize = 256;

/// One rotation: key `n` (1 for the first rotation), signed by key `n - 1`
/// (key 0 being the node's first key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The position of the new key in the chain, from 1.
    pub n: u32,
    /// The new Ed25519 public key, hex.
    pub key: String,
    /// When the node rotated, ms since the epoch.
    pub time_ms: u64,
    /// Ed25519 by the previous key over [`statement`], hex.
    pub signature: String,
    /// What the retired key signed, set by set (sorted by set, each once):
    /// it may sign nothing beyond. `None` in statements of the first
    /// format, whose key stays unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounds: Option<Vec<KeyBound>>,
}

/// How far a retired key went in one of its node's sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBound {
    /// The set, `<origin>/<name>`.
    pub set: String,
    /// Its head when the key was retired: the last seq it may checkpoint.
    pub seq: u64,
    /// Its signed configuration's version then (0: none).
    pub info_version: u64,
}

/// Why a key chain was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// A key or signature that is not hex of the right length, or
    /// statements out of order.
    #[error("key chain malformed: {0}")]
    Malformed(String),
    /// A statement whose signature does not verify with the key before it.
    #[error("key rotation {0} is not signed by the key it replaces")]
    BadSignature(u32),
    /// Two different statements for the same position.
    #[error("key rotation {0} differs from the one already known: the node's key forked (was an old key leaked?)")]
    Fork(u32),
}

/// The bytes a rotation statement signs: the first format without
/// `bounds`, the second with them.
pub fn statement(
    node_id: &str,
    n: u32,
    key: &VerifyingKey,
    time_ms: u64,
    bounds: Option<&[KeyBound]>,
) -> Vec<u8> {
    let mut m = Vec::with_capacity(96 + node_id.len());
    m.extend_from_slice(match bounds {
        None => b"hashfed key rotation v1\0",
        Some(_) => b"hashfed key rotation v2\0",
    });
    m.extend_from_slice(&(node_id.len() as u32).to_be_bytes());
    m.extend_from_slice(node_id.as_bytes());
    m.extend_from_slice(&n.to_be_bytes());
    m.extend_from_slice(key.as_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    if let Some(bounds) = bounds {
        m.extend_from_slice(&(bounds.len() as u32).to_be_bytes());
        for b in bounds {
            m.extend_from_slice(&(b.set.len() as u32).to_be_bytes());
            m.extend_from_slice(b.set.as_bytes());
            m.extend_from_slice(&b.seq.to_be_bytes());
            m.extend_from_slice(&b.info_version.to_be_bytes());
        }
    }
    m
}

/// Signs the rotation from `current` (key `n - 1` of node `node_id`) to
/// `next`, bounding `current` to what it signed (`bounds`, in any order).
pub fn rotate(
    node_id: &str,
    current: &SigningKey,
    n: u32,
    next: &VerifyingKey,
    time_ms: u64,
    mut bounds: Vec<KeyBound>,
) -> KeyRotation {
    bounds.sort_by(|a, b| a.set.cmp(&b.set));
    bounds.dedup_by(|a, b| a.set == b.set);
    let signature = current.sign(&statement(node_id, n, next, time_ms, Some(&bounds)));
    KeyRotation {
        n,
        key: crate::signal::exact::to_hex(next.as_bytes()),
        time_ms,
        signature: crate::signal::exact::to_hex(&signature.to_bytes()),
        bounds: Some(bounds),
    }
}

/// A node's keys, oldest first (the last signs now), each retired key with
/// the bounds its rotation put on it: what a receiver checks what the node
/// signed against. Made by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyChain {
    keys: Vec<VerifyingKey>,
    /// `retired[i]`: the bounds on key `i`, from rotation `i + 1`; `None`
    /// for a first-format statement (unbounded). One shorter than `keys`.
    retired: Vec<Option<std::collections::BTreeMap<String, KeyBound>>>,
    /// `retired_ms[i]`: when key `i` was retired (rotation `i + 1`'s
    /// time, ms since the epoch, on the node's own clock).
    retired_ms: Vec<u64>,
}

/// Where in a set a signed statement falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    /// A checkpoint at this seq.
    Checkpoint(u64),
    /// A configuration at this version.
    Info(u64),
}

impl KeyChain {
    /// A chain of one key, never rotated.
    pub fn single(key: VerifyingKey) -> Self {
        KeyChain {
            keys: vec![key],
            retired: Vec::new(),
            retired_ms: Vec::new(),
        }
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// Every key, oldest first.
    pub fn into_keys(self) -> Vec<VerifyingKey> {
        self.keys
    }

    /// Whether key `i` may sign something its node dated `time_ms` (a
    /// feedback note): the current key always; a retired key of a bounded
    /// rotation only up to the rotation's time (the node dates both with
    /// its own clock). `Err` says when the key was retired.
    pub fn may_sign_at(&self, i: usize, time_ms: u64) -> Result<(), String> {
        match (self.retired.get(i), self.retired_ms.get(i)) {
            (Some(Some(_)), Some(&at)) if time_ms > at => Err(format!(
                "key {i} was retired at {at} ms, yet signs something dated {time_ms} ms"
            )),
            _ => Ok(()),
        }
    }

    /// Whether key `i` may sign `what` of `set`: the current key always;
    /// a retired key within its bounds (a set it did not bound, nothing).
    /// `Err` names the bound it oversteps.
    pub fn may_sign(&self, i: usize, set: &str, what: Signed) -> Result<(), String> {
        let Some(Some(bounds)) = self.retired.get(i) else {
            return Ok(());
        };
        let (seq, version) = bounds.get(set).map_or((0, 0), |b| (b.seq, b.info_version));
        match what {
            Signed::Checkpoint(s) if s > seq => Err(format!(
                "key {i} was retired at seq {seq} of this set, yet signs seq {s}"
            )),
            Signed::Info(v) if v > version => Err(format!(
                "key {i} was retired at version {version} of this set's configuration, yet signs version {v}"
            )),
            _ => Ok(()),
        }
    }
}

/// Checks `rotations` from `first` and returns the chain: every key,
/// oldest first (so the current key is the last), with its bounds.
pub fn walk(
    node_id: &str,
    first: &VerifyingKey,
    rotations: &[KeyRotation],
) -> Result<KeyChain, ChainError> {
    if rotations.len() > MAX_ROTATIONS {
        return Err(ChainError::Malformed(format!(
            "{} rotations, at most {MAX_ROTATIONS}",
            rotations.len()
        )));
    }
    let mut keys = vec![*first];
    let mut retired = Vec::with_capacity(rotations.len());
    let mut retired_ms = Vec::with_capacity(rotations.len());
    for (i, r) in rotations.iter().enumerate() {
        if r.n as usize != i + 1 {
            return Err(ChainError::Malformed(format!(
                "rotation {} where {} was next",
                r.n,
                i + 1
            )));
        }
        let key = decode_hex(&r.key)
            .and_then(|b| verifying_key(&b).ok())
            .ok_or_else(|| ChainError::Malformed(format!("rotation {}: bad key", r.n)))?;
        if keys.contains(&key) {
            return Err(ChainError::Malformed(format!(
                "rotation {} brings back a key already used",
                r.n
            )));
        }
        let signature: [u8; 64] = decode_hex(&r.signature)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChainError::Malformed(format!("rotation {}: bad signature", r.n)))?;
        let bounds = r.bounds.as_deref().map(|b| bound_map(r.n, b)).transpose()?;
        let previous = keys[i];
        verify(
            &previous,
            &statement(node_id, r.n, &key, r.time_ms, r.bounds.as_deref()),
            &signature,
        )
        .map_err(|_| ChainError::BadSignature(r.n))?;
        keys.push(key);
        retired.push(bounds);
        retired_ms.push(r.time_ms);
    }
    Ok(KeyChain {
        keys,
        retired,
        retired_ms,
    })
}

/// A rotation's bounds by set, checked canonical (sorted, each set once,
/// at most [`MAX_BOUNDS`]): one statement has one byte form.
fn bound_map(
    n: u32,
    bounds: &[KeyBound],
) -> Result<std::collections::BTreeMap<String, KeyBound>, ChainError> {
    if bounds.len() > MAX_BOUNDS {
        return Err(ChainError::Malformed(format!(
            "rotation {n} bounds {} sets, at most {MAX_BOUNDS}",
            bounds.len()
        )));
    }
    if bounds.windows(2).any(|w| w[0].set >= w[1].set) {
        return Err(ChainError::Malformed(format!(
            "rotation {n}: bounds not sorted by set, or a set twice"
        )));
    }
    Ok(bounds.iter().map(|b| (b.set.clone(), b.clone())).collect())
}

/// What a chain offered by someone else adds to the one we know (both
/// already checked with [`walk`] from the same first key): `Some(longer)`
/// when it extends ours, `None` when it adds nothing; a fork is an error.
pub fn merge(
    known: &[KeyRotation],
    offered: &[KeyRotation],
) -> Result<Option<Vec<KeyRotation>>, ChainError> {
    if let Some(fork) = known.iter().zip(offered).find(|(a, b)| a != b) {
        return Err(ChainError::Fork(fork.0.n));
    }
    Ok((offered.len() > known.len()).then(|| offered.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn chain(node: &str, keys: &[SigningKey]) -> Vec<KeyRotation> {
        keys.windows(2)
            .enumerate()
            .map(|(i, w)| {
                rotate(
                    node,
                    &w[0],
                    i as u32 + 1,
                    &w[1].verifying_key(),
                    1000 + i as u64,
                    Vec::new(),
                )
            })
            .collect()
    }

    #[test]
    fn a_chain_walks_to_the_current_key() {
        let keys = [key(1), key(2), key(3)];
        let rotations = chain("n", &keys);
        let walked = walk("n", &keys[0].verifying_key(), &rotations).unwrap();
        let want: Vec<_> = keys.iter().map(SigningKey::verifying_key).collect();
        assert_eq!(walked.keys(), want);
        let alone = walk("n", &keys[0].verifying_key(), &[]).unwrap();
        assert_eq!(alone, KeyChain::single(keys[0].verifying_key()));
    }

    #[test]
    fn forged_reordered_or_foreign_statements_are_refused() {
        let keys = [key(1), key(2), key(3)];
        let first = keys[0].verifying_key();
        let rotations = chain("n", &keys);
        // Signed by someone else than the key it replaces.
        let forged = vec![rotate(
            "n",
            &key(9),
            1,
            &key(2).verifying_key(),
            5,
            Vec::new(),
        )];
        assert_eq!(walk("n", &first, &forged), Err(ChainError::BadSignature(1)));
        // Another node's statement does not carry over.
        assert_eq!(
            walk("m", &first, &rotations),
            Err(ChainError::BadSignature(1))
        );
        // Out of order, or skipping one.
        let swapped = vec![rotations[1].clone(), rotations[0].clone()];
        assert!(matches!(
            walk("n", &first, &swapped),
            Err(ChainError::Malformed(_))
        ));
        assert!(walk("n", &first, &rotations[1..]).is_err());
        // A changed time breaks the signature.
        let mut late = rotations.clone();
        late[1].time_ms += 1;
        assert_eq!(walk("n", &first, &late), Err(ChainError::BadSignature(2)));
        // Back to an old key.
        let back = chain("n", &[key(1), key(2), key(1)]);
        assert!(matches!(
            walk("n", &first, &back),
            Err(ChainError::Malformed(_))
        ));
        // Garbage.
        let mut bad = rotations.clone();
        bad[0].key = "zz".into();
        assert!(matches!(
            walk("n", &first, &bad),
            Err(ChainError::Malformed(_))
        ));
    }

    #[test]
    fn chains_grow_and_forks_are_refused() {
        let keys = [key(1), key(2), key(3)];
        let long = chain("n", &keys);
        assert_eq!(merge(&long[..1], &long).unwrap(), Some(long.clone()));
        assert_eq!(merge(&long, &long[..1]).unwrap(), None);
        assert_eq!(merge(&long, &long).unwrap(), None);
        let fork = chain("n", &[key(1), key(4)]);
        assert_eq!(merge(&long, &fork), Err(ChainError::Fork(1)));
    }

    fn bound(set: &str, seq: u64, info_version: u64) -> KeyBound {
        KeyBound {
            set: set.into(),
            seq,
            info_version,
        }
    }

    #[test]
    fn a_retired_key_signs_only_within_its_bounds() {
        let (old, new) = (key(1), key(2));
        let r = rotate(
            "n",
            &old,
            1,
            &new.verifying_key(),
            7,
            vec![bound("n/b", 3, 1), bound("n/a", 10, 2)],
        );
        // Sorted in the statement, whatever order they came in.
        let sets: Vec<_> = r.bounds.iter().flatten().map(|b| b.set.as_str()).collect();
        assert_eq!(sets, ["n/a", "n/b"]);
        let chain = walk("n", &old.verifying_key(), std::slice::from_ref(&r)).unwrap();
        assert!(chain.may_sign(0, "n/a", Signed::Checkpoint(10)).is_ok());
        assert!(chain.may_sign(0, "n/a", Signed::Checkpoint(11)).is_err());
        assert!(chain.may_sign(0, "n/a", Signed::Info(2)).is_ok());
        assert!(chain.may_sign(0, "n/a", Signed::Info(3)).is_err());
        // A set the old key never signed for: nothing.
        assert!(chain.may_sign(0, "n/new", Signed::Checkpoint(1)).is_err());
        assert!(chain.may_sign(0, "n/new", Signed::Info(1)).is_err());
        // The current key is unbounded.
        assert!(chain
            .may_sign(1, "n/a", Signed::Checkpoint(u64::MAX))
            .is_ok());

        // The bounds are signed: widening one breaks the statement.
        let mut widened = r.clone();
        widened.bounds.as_mut().unwrap()[0].seq = 1_000;
        assert_eq!(
            walk("n", &old.verifying_key(), &[widened]),
            Err(ChainError::BadSignature(1))
        );
        // Dropping them (passing it off as the first format) too.
        let dropped = KeyRotation {
            bounds: None,
            ..r.clone()
        };
        assert_eq!(
            walk("n", &old.verifying_key(), &[dropped]),
            Err(ChainError::BadSignature(1))
        );
        // Not canonical.
        let mut twice = r.clone();
        twice.bounds.as_mut().unwrap()[1].set = "n/a".into();
        assert!(matches!(
            walk("n", &old.verifying_key(), &[twice]),
            Err(ChainError::Malformed(_))
        ));
    }

    #[test]
    fn a_first_format_statement_still_verifies_and_leaves_its_key_unbounded() {
        let (old, new) = (key(1), key(2));
        let signature = old.sign(&statement("n", 1, &new.verifying_key(), 7, None));
        let r = KeyRotation {
            n: 1,
            key: crate::signal::exact::to_hex(new.verifying_key().as_bytes()),
            time_ms: 7,
            signature: crate::signal::exact::to_hex(&signature.to_bytes()),
            bounds: None,
        };
        let chain = walk("n", &old.verifying_key(), std::slice::from_ref(&r)).unwrap();
        assert!(chain
            .may_sign(0, "n/a", Signed::Checkpoint(u64::MAX))
            .is_ok());
        // Stored as before: no `bounds` field.
        assert!(!serde_json::to_string(&r).unwrap().contains("bounds"));
    }
}
