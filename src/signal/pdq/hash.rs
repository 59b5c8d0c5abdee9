//! The 256-bit PDQ hash value: bit layout, hex text form and Hamming distance.
//!
//! Meta's reference stores a hash as sixteen 16-bit words, sets bit `k` in word
//! `k / 16` at position `k % 16`, and prints the words from the last to the first
//! as `%04hx`. Reading that text as one big-endian 256-bit number therefore puts
//! bit `k` of the hash at bit `k` of the number. We keep the 32 bytes in exactly
//! that printed (big-endian) order, so formatting and parsing are plain hex and
//! bit `k` lives in byte `31 - k / 8`.

use std::fmt;
use std::str::FromStr;

/// Number of bits in a PDQ hash.
pub const PDQ_BITS: u32 = 256;

/// Length of a PDQ hash in hexadecimal text.
pub const PDQ_HEX_LEN: usize = 64;

/// A 256-bit PDQ hash in the reference's bit order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PdqHash([u8; 32]);

/// Why a PDQ hash string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePdqError {
    /// The text does not have exactly 64 characters.
    #[error("a PDQ hash has 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character is not a hexadecimal digit.
    #[error("a PDQ hash has only hex digits, found {found:?} at position {position}")]
    Digit {
        /// Offending character.
        found: char,
        /// Zero-based character position.
        position: usize,
    },
}

impl PdqHash {
    /// The all-zero hash (what the reference returns for images too small to hash).
    pub const ZERO: PdqHash = PdqHash([0; 32]);

    /// Builds a hash from its 32 bytes in printed (big-endian) order.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PdqHash(bytes)
    }

    /// The 32 bytes in printed (big-endian) order.
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Borrows the 32 bytes in printed (big-endian) order.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as four 64-bit words, most significant first: the form the
    /// match index stores, because popcount over `u64` is the fast path.
    pub fn to_words(self) -> [u64; 4] {
        let mut words = [0u64; 4];
        for (word, chunk) in words.iter_mut().zip(self.0.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *word = u64::from_be_bytes(b);
        }
        words
    }

    /// Inverse of [`PdqHash::to_words`].
    pub fn from_words(words: [u64; 4]) -> Self {
        let mut bytes = [0u8; 32];
        for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        PdqHash(bytes)
    }

    /// Whether bit `k` (0..256, the reference's numbering) is set.
    pub fn bit(&self, k: usize) -> bool {
        let k = k & 255;
        self.0[31 - k / 8] >> (k % 8) & 1 == 1
    }

    /// Sets bit `k` (0..256, the reference's numbering).
    pub fn set_bit(&mut self, k: usize) {
        let k = k & 255;
        self.0[31 - k / 8] |= 1 << (k % 8);
    }

    /// Number of bits that differ between two hashes (0..=256).
    pub fn distance(&self, other: &PdqHash) -> u32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a ^ b).count_ones())
            .sum()
    }

    /// Number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.0.iter().map(|b| b.count_ones()).sum()
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdqHash({self})")
    }
}

impl FromStr for PdqHash {
    type Err = ParsePdqError;

    /// Parses 64 hex digits (either case), as the reference prints them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars = s.chars().count();
        if chars != PDQ_HEX_LEN || s.len() != PDQ_HEX_LEN {
            return Err(ParsePdqError::Length(chars));
        }
        let mut bytes = [0u8; 32];
        let digits = s.as_bytes();
        for (i, byte) in bytes.iter_mut().enumerate() {
            let hi = hex_digit(digits[2 * i], 2 * i)?;
            let lo = hex_digit(digits[2 * i + 1], 2 * i + 1)?;
            *byte = hi << 4 | lo;
        }
        Ok(PdqHash(bytes))
    }
}

fn hex_digit(c: u8, position: usize) -> Result<u8, ParsePdqError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParsePdqError::Digit {
            found: c as char,
            position,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_bit_numbering() {
        let text = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
        let h: PdqHash = text.parse().unwrap();
        assert_eq!(h.to_string(), text);
        // Last hex digit '2' = 0b0010: bit 1 set, bit 0 clear.
        assert!(h.bit(1));
        assert!(!h.bit(0));
        // First hex digit 'd' = 0b1101: bits 255, 254 and 252.
        assert!(h.bit(255) && h.bit(254) && !h.bit(253) && h.bit(252));
        assert_eq!(PdqHash::from_words(h.to_words()), h);
    }

    #[test]
    fn distance_counts_differing_bits() {
        let mut a = PdqHash::ZERO;
        let b = PdqHash::ZERO;
        a.set_bit(0);
        a.set_bit(200);
        assert_eq!(a.distance(&b), 2);
        assert_eq!(a.count_ones(), 2);
    }

    #[test]
    fn malformed_text_is_refused() {
        assert_eq!("abc".parse::<PdqHash>(), Err(ParsePdqError::Length(3)));
        let bad = format!("{}g", "0".repeat(63));
        assert_eq!(
            bad.parse::<PdqHash>(),
            Err(ParsePdqError::Digit {
                found: 'g',
                position: 63
            })
        );
        // A multi-byte character must not be sliced or counted as 2 digits.
        let wide = format!("{}é", "0".repeat(62));
        assert!(wide.parse::<PdqHash>().is_err());
    }
}
