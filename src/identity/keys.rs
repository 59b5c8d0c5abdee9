//! The node's signing key and the node id derived from it.
//!
//! The node id is the only name a node has: peers pin it, set ids start
//! with it, and it is derived from the signing key, so nobody can claim an
//! id without holding the key.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

use super::IdentityError;

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
        .map_err(|e| IdentityError::Key(e.to_string()))
}

/// Reads a PKCS#8 PEM signing key.
pub fn from_pem(pem: &str) -> Result<SigningKey, IdentityError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| IdentityError::Key(e.to_string()))
}

/// The signing key of the node in `dir` (`DIR/keys/signing.pem`).
pub fn read(dir: &std::path::Path) -> Result<SigningKey, IdentityError> {
    let path = dir.join("keys/signing.pem");
    let pem = std::fs::read_to_string(&path).map_err(|source| IdentityError::Io {
        path: path.clone(),
        source,
    })?;
    from_pem(&pem)
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
}
