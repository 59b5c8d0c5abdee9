//! The node's signing key, the node id derived from it, and the key's
//! rotations.
//!
//! The node id is the only name a node has: peers pin it and it is derived
//! from the node's first signing key, so nobody can claim an id without
//! holding that key. A rotated node keeps its id: `DIR/keys/rotations.json`
//! (public) holds its first key and the signed statements that lead from
//! it to the key in `DIR/keys/signing.pem` (see
//! [`crate::model::keychain`]).
//!
//! A rotation is staged ([`stage_rotation`]: the new key beside the old,
//! `signing.next.pem`, and the new history beside the old,
//! `rotations.json.tmp`), then, once its caller has recorded it (the
//! store's journal, with its audit record), committed
//! ([`commit_rotation`]: `rotations.json` replaced by rename, then the new
//! key moved over the old). [`recover`] finishes a journalled rotation a
//! crash interrupted and drops one that was not; a crash after the rename
//! is finished by the next [`read`]. The old private key is gone
//! afterwards: a rotation made because a key may have leaked must not
//! leave it on disk.

use std::fmt;

use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{io, remove_if_there, sync_dir, IdentityError};
use crate::model::keychain::{self, KeyRotation};

/// Bytes of the BLAKE3 digest of the public key kept in a node id (160
/// bits: collisions need 2^80 work).
const ID_BYTES: usize = 20;

/// A node id: lower-case base32 (RFC 4648 alphabet, no padding) of the
/// first 20 bytes of BLAKE3 over the node's Ed25519 public key; 32
/// characters, usable in set ids and file names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// The id of the node whose public key this is.
    pub fn of(key: &VerifyingKey) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"hashfed node id v1\0");
        h.update(key.as_bytes());
        NodeId(base32(&h.finalize().as_bytes()[..ID_BYTES]))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Lower-case RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = acc << 8 | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[(acc >> bits & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[(acc << (5 - bits) & 31) as usize] as char);
    }
    out
}

/// A fresh signing key from the operating system's random source.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// The key as PKCS#8 PEM (what `keys/signing.pem` holds).
pub fn to_pem(key: &SigningKey) -> Result<String, IdentityError> {
    key.to_pkcs8_pem(Default::default())
        .map(|pem| pem.to_string())
        .map_err(super::key_error("encoding as PKCS#8"))
}

/// Reads a PKCS#8 PEM signing key.
pub fn from_pem(pem: &str) -> Result<SigningKey, IdentityError> {
    SigningKey::from_pkcs8_pem(pem).map_err(super::key_error("not a PKCS#8 Ed25519 key"))
}

const SIGNING: &str = "keys/signing.pem";
const NEXT: &str = "keys/signing.next.pem";
const ROTATIONS: &str = "keys/rotations.json";

fn read_pem(path: &Path) -> Result<SigningKey, IdentityError> {
    from_pem(&std::fs::read_to_string(path).map_err(io(path))?)
}

/// A node's keys over time: its first public key (which its id derives
/// from) and the rotations since. What `DIR/keys/rotations.json` holds;
/// public, and what peer cards and manifests carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyHistory {
    /// The node id.
    pub node_id: String,
    /// The first Ed25519 public key, hex.
    pub first_key: String,
    /// Rotations, oldest first.
    #[serde(default)]
    pub rotations: Vec<KeyRotation>,
}

impl KeyHistory {
    /// Every key, oldest first, after checking that the id derives from
    /// the first key and that each rotation is signed by the key before.
    pub fn keys(&self) -> Result<Vec<VerifyingKey>, IdentityError> {
        self.chain().map(keychain::KeyChain::into_keys)
    }

    /// The checked chain: every key with the bounds its rotation put on it
    /// (what a receiver holds the node's signatures to).
    pub fn chain(&self) -> Result<keychain::KeyChain, IdentityError> {
        let first = crate::model::signal::decode_hex(&self.first_key)
            .and_then(|b| crate::model::signed::verifying_key(&b).ok())
            .ok_or_else(|| IdentityError::Key("first key must be 64 hex digits".into()))?;
        let derived = NodeId::of(&first);
        if derived.as_str() != self.node_id {
            return Err(IdentityError::Key(format!(
                "node id {} does not derive from the first key (which gives {derived})",
                self.node_id
            )));
        }
        keychain::walk(&self.node_id, &first, &self.rotations)
            .map_err(super::key_error("key rotations"))
    }
}

/// The key history of the node in `dir`: `keys/rotations.json`, or for a
/// node never rotated, its signing key alone. Checked (see
/// [`KeyHistory::keys`]).
pub fn history(dir: &Path) -> Result<KeyHistory, IdentityError> {
    let path = dir.join(ROTATIONS);
    let history = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str::<KeyHistory>(&text)
            .map_err(super::key_error(path.display().to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = read_pem(&dir.join(SIGNING))?.verifying_key();
            KeyHistory {
                node_id: NodeId::of(&key).to_string(),
                first_key: crate::signal::exact::to_hex(key.as_bytes()),
                rotations: Vec::new(),
            }
        }
        Err(e) => return Err(io(&path)(e)),
    };
    history.keys()?;
    Ok(history)
}

/// The current signing key of the node in `dir` (`DIR/keys/signing.pem`),
/// checked against its key history; finishes a rotation a crash
/// interrupted after its commit.
pub fn read(dir: &Path) -> Result<SigningKey, IdentityError> {
    read_with_history(dir).map(|(key, _)| key)
}

/// As [`read`], with the key history it was checked against (read once).
pub fn read_with_history(dir: &Path) -> Result<(SigningKey, KeyHistory), IdentityError> {
    let path = dir.join(SIGNING);
    let key = read_pem(&path)?;
    let history = history(dir)?;
    let current = history.keys()?.last().copied();
    if current == Some(key.verifying_key()) {
        return Ok((key, history));
    }
    let next_path = dir.join(NEXT);
    if next_path.is_file() {
        let next = read_pem(&next_path)?;
        if current == Some(next.verifying_key()) {
            tracing::warn!("finishing a key rotation interrupted after its commit");
            std::fs::rename(&next_path, &path).map_err(io(&path))?;
            sync_dir(&dir.join("keys"));
            return Ok((next, history));
        }
    }
    Err(IdentityError::Key(format!(
        "{} is not the current key of keys/rotations.json",
        path.display()
    )))
}

/// A rotation written beside the node's key files, not yet in place.
pub struct StagedRotation {
    /// The new key.
    pub key: SigningKey,
    /// The history with the new rotation.
    pub history: KeyHistory,
}

const STAGED_HISTORY: &str = "keys/rotations.json.tmp";

/// Stages a rotation of the signing key of the node in `dir`: a new key
/// and the statement signed by the current one, written durably beside
/// the node's files (see the module's notes); [`commit_rotation`] puts
/// them in place. `bounds` is what the current key signed, set by set (it
/// may sign nothing beyond: see [`keychain`]); the caller reads them under
/// the store's writer lock and holds it until the new key signs. The
/// caller makes sure one rotation runs at a time.
pub fn stage_rotation(
    dir: &Path,
    now_ms: u64,
    bounds: Vec<keychain::KeyBound>,
) -> Result<StagedRotation, IdentityError> {
    let (current, mut history) = read_with_history(dir)?;
    let next = generate();
    let n = history.rotations.len() as u32 + 1;
    let rotation = keychain::rotate(
        &history.node_id,
        &current,
        n,
        &next.verifying_key(),
        now_ms,
        bounds,
    );
    history.rotations.push(rotation);
    history.keys()?;

    let next_path = dir.join(NEXT);
    remove_if_there(&next_path)?;
    super::write_file(&next_path, &to_pem(&next)?, true)?;
    let json = serde_json::to_string_pretty(&history).map_err(super::key_error("key history"))?;
    let tmp = dir.join(STAGED_HISTORY);
    remove_if_there(&tmp)?;
    super::write_file(&tmp, &json, false)?;
    sync_dir(&dir.join("keys"));
    Ok(StagedRotation { key: next, history })
}

/// Puts a staged rotation in place: the new history replaces the old (the
/// commit), then the new key the old, which is gone afterwards.
pub fn commit_rotation(dir: &Path) -> Result<(), IdentityError> {
    let tmp = dir.join(STAGED_HISTORY);
    let path = dir.join(ROTATIONS);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    sync_dir(&dir.join("keys"));
    // Committed: the new key is the node's from here on.
    let next_path = dir.join(NEXT);
    std::fs::rename(&next_path, dir.join(SIGNING)).map_err(io(&next_path))?;
    sync_dir(&dir.join("keys"));
    Ok(())
}

/// Finishes a staged rotation a crash interrupted if it was `journalled`
/// (its audit record landed), and drops it otherwise. Call before reading
/// the key, with the node directory owned by this process.
pub fn recover(dir: &Path, journalled: bool) -> Result<(), IdentityError> {
    let tmp = dir.join(STAGED_HISTORY);
    if !tmp.is_file() {
        return Ok(());
    }
    if journalled {
        tracing::warn!("finishing a key rotation interrupted after it was recorded");
        commit_rotation(dir)
    } else {
        remove_if_there(&tmp)?;
        remove_if_there(&dir.join(NEXT))
    }
}

/// Rotates the signing key of the node in `dir` at once (stage, then
/// commit; for callers with no journal, such as tests). Returns the new
/// key and the history now on disk.
pub fn rotate(
    dir: &Path,
    now_ms: u64,
    bounds: Vec<keychain::KeyBound>,
) -> Result<(SigningKey, KeyHistory), IdentityError> {
    let staged = stage_rotation(dir, now_ms, bounds)?;
    commit_rotation(dir)?;
    Ok((staged.key, staged.history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "my");
        assert_eq!(base32(b"fo"), "mzxq");
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn ids_are_stable_and_keys_round_trip() {
        let key = generate();
        let id = NodeId::of(&key.verifying_key());
        assert_eq!(id.as_str().len(), 32);
        let back = from_pem(&to_pem(&key).unwrap()).unwrap();
        assert_eq!(NodeId::of(&back.verifying_key()), id);
        assert_ne!(NodeId::of(&generate().verifying_key()), id);
        assert!(from_pem("not a key").is_err());
    }

    #[test]
    fn a_staged_rotation_is_finished_if_journalled_and_dropped_if_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        crate::identity::init(&dir, "n").unwrap();
        let first = read(&dir).unwrap();
        stage_rotation(&dir, 1, Vec::new()).unwrap();
        // Not journalled: as if it never began.
        recover(&dir, false).unwrap();
        assert_eq!(read(&dir).unwrap().verifying_key(), first.verifying_key());
        assert!(history(&dir).unwrap().rotations.is_empty());
        // Journalled: put in place.
        let staged = stage_rotation(&dir, 2, Vec::new()).unwrap();
        recover(&dir, true).unwrap();
        assert_eq!(
            read(&dir).unwrap().verifying_key(),
            staged.key.verifying_key()
        );
        assert_eq!(history(&dir).unwrap(), staged.history);
        // Nothing staged: nothing to do.
        recover(&dir, true).unwrap();
        assert_eq!(history(&dir).unwrap().rotations.len(), 1);
    }

    #[test]
    fn a_rotated_node_keeps_its_id_and_a_crash_after_the_commit_is_finished() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        let made = crate::identity::init(&dir, "a").unwrap();
        let first = read(&dir).unwrap();
        let (second, history) = rotate(&dir, 1, Vec::new()).unwrap();
        assert_eq!(history.node_id, made.config.node_id);
        assert_eq!(read(&dir).unwrap().verifying_key(), second.verifying_key());
        assert_eq!(
            history.keys().unwrap(),
            vec![first.verifying_key(), second.verifying_key()]
        );
        assert!(crate::identity::load_config(&dir).is_ok());
        assert!(!dir.join(NEXT).exists());

        // A crash between the commit and the last rename.
        let (third, _) = rotate(&dir, 2, Vec::new()).unwrap();
        std::fs::rename(dir.join(SIGNING), dir.join(NEXT)).unwrap();
        write_over(&dir.join(SIGNING), &to_pem(&second).unwrap());
        assert_eq!(read(&dir).unwrap().verifying_key(), third.verifying_key());
        assert!(!dir.join(NEXT).exists());

        // A crash before the commit: the stray key is not used.
        write_over(&dir.join(NEXT), &to_pem(&generate()).unwrap());
        assert_eq!(read(&dir).unwrap().verifying_key(), third.verifying_key());
        let (fourth, history) = rotate(&dir, 3, Vec::new()).unwrap();
        assert_eq!(history.rotations.len(), 3);
        assert_eq!(read(&dir).unwrap().verifying_key(), fourth.verifying_key());

        // A key that belongs to no history is refused.
        write_over(&dir.join(SIGNING), &to_pem(&generate()).unwrap());
        assert!(read(&dir).is_err());
    }

    fn write_over(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }
}

/// What a key rotation did.
#[derive(Clone, Debug, Default)]
pub struct Rotated {
    /// The node's id (unchanged by rotations).
    pub node_id: String,
    /// The signing key's number in the node's history (0: the first).
    pub key_number: u32,
    /// The signing key now in use.
    pub signing_key: String,
    /// The certificates renewed.
    pub certificates: Vec<String>,
}
