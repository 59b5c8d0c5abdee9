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
//! Chains only grow. Two different statements for the same `n` (a fork:
//! only someone holding the old key can make one) are refused, never
//! resolved silently: a fork means the old key leaked, and operators must
//! hear of it.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::signal::decode_hex;
use super::signed::{verify, verifying_key};

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

/// The bytes a rotation statement signs.
pub fn statement(node_id: &str, n: u32, key: &VerifyingKey, time_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(96 + node_id.len());
    m.extend_from_slice(b"hashfed key rotation v1\0");
    m.extend_from_slice(&(node_id.len() as u32).to_be_bytes());
    m.extend_from_slice(node_id.as_bytes());
    m.extend_from_slice(&n.to_be_bytes());
    m.extend_from_slice(key.as_bytes());
    m.extend_from_slice(&time_ms.to_be_bytes());
    m
}

/// Signs the rotation from `current` (key `n - 1` of node `node_id`) to
/// `next`.
pub fn rotate(
    node_id: &str,
    current: &SigningKey,
    n: u32,
    next: &VerifyingKey,
    time_ms: u64,
) -> KeyRotation {
    let signature = current.sign(&statement(node_id, n, next, time_ms));
    KeyRotation {
        n,
        key: crate::signal::exact::to_hex(next.as_bytes()),
        time_ms,
        signature: crate::signal::exact::to_hex(&signature.to_bytes()),
    }
}

/// Checks `rotations` from `first` and returns every key of the chain,
/// oldest first (so the current key is the last).
pub fn walk(
    node_id: &str,
    first: &VerifyingKey,
    rotations: &[KeyRotation],
) -> Result<Vec<VerifyingKey>, ChainError> {
    if rotations.len() > MAX_ROTATIONS {
        return Err(ChainError::Malformed(format!(
            "{} rotations, at most {MAX_ROTATIONS}",
            rotations.len()
        )));
    }
    let mut keys = vec![*first];
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
        let previous = keys[i];
        verify(
            &previous,
            &statement(node_id, r.n, &key, r.time_ms),
            &signature,
        )
        .map_err(|_| ChainError::BadSignature(r.n))?;
        keys.push(key);
    }
    Ok(keys)
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
        assert_eq!(walked, want);
        assert_eq!(walk("n", &keys[0].verifying_key(), &[]).unwrap().len(), 1);
    }

    #[test]
    fn forged_reordered_or_foreign_statements_are_refused() {
        let keys = [key(1), key(2), key(3)];
        let first = keys[0].verifying_key();
        let rotations = chain("n", &keys);
        // Signed by someone else than the key it replaces.
        let forged = vec![rotate("n", &key(9), 1, &key(2).verifying_key(), 5)];
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
}
