//! Exact (cryptographic) hashes of raw bytes: MD5, SHA-1, SHA-256, BLAKE3.
//!
//! Lists in the field carry MD5 and SHA-1 values (NCMEC, Project Arachnid), so
//! we compute them even though they are broken as cryptographic hashes: here
//! they only identify byte-identical files. All four are fed the same chunks
//! in one pass, so a file is read from memory once, while it is in cache.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The four exact digests of one byte string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExactDigests {
    /// MD5 (16 bytes).
    pub md5: [u8; 16],
    /// SHA-1 (20 bytes).
    pub sha1: [u8; 20],
    /// SHA-256 (32 bytes).
    pub sha256: [u8; 32],
    /// BLAKE3 (32 bytes).
    pub blake3: [u8; 32],
}

/// Incremental computation of [`ExactDigests`] for streamed input.
#[derive(Clone, Default)]
pub struct ExactHasher {
    md5: Md5,
    sha1: Sha1,
    sha256: Sha256,
    blake3: blake3::Hasher,
}

/// Chunk size for the one-pass loop: large enough to amortise the per-call
/// cost, small enough to stay in L2 while four hashers read it.
const CHUNK: usize = 64 * 1024;

impl ExactHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes to all four hashes.
    pub fn update(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(CHUNK) {
            self.md5.update(chunk);
            self.sha1.update(chunk);
            self.sha256.update(chunk);
            self.blake3.update(chunk);
        }
    }

    /// The digests of everything fed so far.
    pub fn finalize(self) -> ExactDigests {
        ExactDigests {
            md5: self.md5.finalize().into(),
            sha1: self.sha1.finalize().into(),
            sha256: self.sha256.finalize().into(),
            blake3: *self.blake3.finalize().as_bytes(),
        }
    }
}

impl ExactDigests {
    /// Digests of `bytes` in one pass.
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = ExactHasher::new();
        h.update(bytes);
        h.finalize()
    }
}

/// Lower-case hexadecimal of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers_for_abc() {
        let d = ExactDigests::of(b"abc");
        assert_eq!(to_hex(&d.md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(to_hex(&d.sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(
            to_hex(&d.sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            to_hex(&d.blake3),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }

    #[test]
    fn streaming_equals_one_shot_across_chunk_boundaries() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 256) as u8).collect();
        let mut h = ExactHasher::new();
        for part in data.chunks(70_001) {
            h.update(part);
        }
        assert_eq!(h.finalize(), ExactDigests::of(&data));
    }
}
