//! Signal types and values: which hashes a node stores and how they are
//! written as text.
//!
//! Every value that enters the node (from an import file, a peer or a
//! query) passes through [`Signal::parse`] or [`Signal::from_bytes`], so the
//! rest of the code can rely on lengths being right and names canonical.

use std::fmt;

use crate::signal::pdq::PdqHash;

/// The kind of a hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SignalType {
    /// Meta's PDQ, 256 bits, matched by Hamming distance.
    Pdq,
    /// MD5 of the file bytes.
    Md5,
    /// SHA-1 of the file bytes.
    Sha1,
    /// SHA-256 of the file bytes.
    Sha256,
    /// BLAKE3 of the file bytes.
    Blake3,
    /// An exact value of a type known only by name (e.g. `photodna`, computed
    /// by a licensed library we never implement), matched byte for byte.
    Opaque(String),
}

/// Longest name of an opaque signal type.
pub const MAX_TYPE_NAME: usize = 32;

/// Longest opaque value, in bytes (PhotoDNA is 144).
pub const MAX_OPAQUE_VALUE: usize = 1024;

/// Why a type name or value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignalError {
    /// The type name is empty, too long or has characters outside `[a-z0-9_.-]`.
    #[error("signal type name {0:?} is not valid (1-32 of a-z 0-9 _ . -)")]
    BadTypeName(String),
    /// The value has the wrong length for its type.
    #[error("{kind} value must be {expected} bytes ({hex} hex digits), got {got} bytes")]
    WrongLength {
        /// The signal type.
        kind: String,
        /// Bytes the type needs.
        expected: usize,
        /// Hex digits that makes.
        hex: usize,
        /// Bytes found.
        got: usize,
    },
    /// The text is not hexadecimal (or, for opaque types, neither hex nor base64).
    #[error("{kind} value is not {encoding}")]
    BadEncoding {
        /// The signal type.
        kind: String,
        /// What was expected.
        encoding: &'static str,
    },
    /// An opaque value is empty or longer than [`MAX_OPAQUE_VALUE`].
    #[error("{kind} value must be 1 to {MAX_OPAQUE_VALUE} bytes, got {got}")]
    BadOpaqueLength {
        /// The signal type.
        kind: String,
        /// Bytes found.
        got: usize,
    },
}

impl SignalType {
    /// Parses a type name, case-insensitively, accepting the names other
    /// tools use for the same thing (`sha-1`, python-threatexchange's
    /// `video_md5`/`photo_md5`, NCMEC's `pdna` for PhotoDNA).
    pub fn parse(name: &str) -> Result<Self, SignalError> {
        let lower = name.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "pdq" => SignalType::Pdq,
            "md5" | "photo_md5" | "video_md5" => SignalType::Md5,
            "sha1" | "sha-1" => SignalType::Sha1,
            "sha256" | "sha-256" => SignalType::Sha256,
            "blake3" => SignalType::Blake3,
            "pdna" | "photodna" => SignalType::Opaque("photodna".into()),
            _ => {
                let ok = !lower.is_empty()
                    && lower.len() <= MAX_TYPE_NAME
                    && lower.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b)
                    });
                if !ok {
                    return Err(SignalError::BadTypeName(name.chars().take(40).collect()));
                }
                SignalType::Opaque(lower)
            }
        })
    }

    /// The canonical name (`pdq`, `md5`, …, or the opaque type's name).
    pub fn name(&self) -> &str {
        match self {
            SignalType::Pdq => "pdq",
            SignalType::Md5 => "md5",
            SignalType::Sha1 => "sha1",
            SignalType::Sha256 => "sha256",
            SignalType::Blake3 => "blake3",
            SignalType::Opaque(name) => name,
        }
    }

    /// The fixed value length in bytes, or `None` for opaque types.
    pub fn value_len(&self) -> Option<usize> {
        match self {
            SignalType::Pdq | SignalType::Sha256 | SignalType::Blake3 => Some(32),
            SignalType::Md5 => Some(16),
            SignalType::Sha1 => Some(20),
            SignalType::Opaque(_) => None,
        }
    }

    /// A one-byte code used in keys and records (stable on disk and wire).
    pub fn code(&self) -> u8 {
        match self {
            SignalType::Pdq => 1,
            SignalType::Md5 => 2,
            SignalType::Sha1 => 3,
            SignalType::Sha256 => 4,
            SignalType::Blake3 => 5,
            SignalType::Opaque(_) => 6,
        }
    }
}

impl fmt::Display for SignalType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One hash value of a known type, with a length the type allows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal {
    kind: SignalType,
    value: Vec<u8>,
}

impl Signal {
    /// Checks `value`'s length against `kind`.
    pub fn from_bytes(kind: SignalType, value: Vec<u8>) -> Result<Self, SignalError> {
        match kind.value_len() {
            Some(expected) if value.len() != expected => Err(SignalError::WrongLength {
                kind: kind.name().into(),
                expected,
                hex: expected * 2,
                got: value.len(),
            }),
            None if value.is_empty() || value.len() > MAX_OPAQUE_VALUE => {
                Err(SignalError::BadOpaqueLength {
                    kind: kind.name().into(),
                    got: value.len(),
                })
            }
            _ => Ok(Signal { kind, value }),
        }
    }

    /// Parses a type name and its text value: hexadecimal (either case) for
    /// the known types; for opaque types hexadecimal if the text is even-length
    /// hex, otherwise standard base64 (NCMEC writes PhotoDNA in base64).
    pub fn parse(type_name: &str, text: &str) -> Result<Self, SignalError> {
        let kind = SignalType::parse(type_name)?;
        let text = text.trim();
        let value = match &kind {
            SignalType::Opaque(_) => match decode_hex(text) {
                Some(bytes) => bytes,
                None => decode_base64(text).ok_or_else(|| SignalError::BadEncoding {
                    kind: kind.name().into(),
                    encoding: "hexadecimal or base64",
                })?,
            },
            _ => {
                let expected = kind.value_len().unwrap_or(0);
                if text.len() != expected * 2 {
                    return Err(SignalError::WrongLength {
                        kind: kind.name().into(),
                        expected,
                        hex: expected * 2,
                        got: text.len() / 2,
                    });
                }
                decode_hex(text).ok_or_else(|| SignalError::BadEncoding {
                    kind: kind.name().into(),
                    encoding: "hexadecimal",
                })?
            }
        };
        Signal::from_bytes(kind, value)
    }

    /// A PDQ signal.
    pub fn pdq(hash: PdqHash) -> Self {
        Signal {
            kind: SignalType::Pdq,
            value: hash.to_bytes().to_vec(),
        }
    }

    /// The type.
    pub fn kind(&self) -> &SignalType {
        &self.kind
    }

    /// The raw value.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The value as a PDQ hash, if this is one.
    pub fn as_pdq(&self) -> Option<PdqHash> {
        match self.kind {
            SignalType::Pdq => <[u8; 32]>::try_from(self.value.as_slice())
                .ok()
                .map(PdqHash::from_bytes),
            _ => None,
        }
    }

    /// The value as lower-case hexadecimal (how every format of ours writes it).
    pub fn value_hex(&self) -> String {
        crate::signal::exact::to_hex(&self.value)
    }

    /// A byte string that identifies type and value unambiguously, for keys
    /// and hash maps: type code, opaque name (length-prefixed), value length
    /// (u16, big-endian) and value. The length prefixes keep a prefix scan
    /// for one value from reaching longer values that start the same way.
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(4 + self.value.len());
        key.push(self.kind.code());
        if let SignalType::Opaque(name) = &self.kind {
            key.push(name.len() as u8);
            key.extend_from_slice(name.as_bytes());
        }
        key.extend_from_slice(&(self.value.len() as u16).to_be_bytes());
        key.extend_from_slice(&self.value);
        key
    }
}

/// Decodes even-length hexadecimal in either case.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.is_empty() || bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// Decodes standard base64 (`+/`, `=` padding optional).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn sextet(b: u8) -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let body = text.trim_end_matches('=').as_bytes();
    if body.is_empty() || body.len() % 4 == 1 || text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for &b in chunk {
            acc = acc << 6 | sextet(b)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_types_and_aliases() {
        let md5 = Signal::parse("MD5", "D41D8CD98F00B204E9800998ECF8427E").unwrap();
        assert_eq!(md5.kind(), &SignalType::Md5);
        assert_eq!(md5.value_hex(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(SignalType::parse("video_md5").unwrap(), SignalType::Md5);
        assert_eq!(SignalType::parse("SHA-1").unwrap(), SignalType::Sha1);
        assert_eq!(
            SignalType::parse("pdna").unwrap(),
            SignalType::Opaque("photodna".into())
        );
        let pdq = Signal::parse("pdq", &"f".repeat(64)).unwrap();
        assert_eq!(pdq.as_pdq().unwrap().count_ones(), 256);
    }

    #[test]
    fn refuses_wrong_lengths_and_encodings() {
        assert!(matches!(
            Signal::parse("pdq", &"0".repeat(63)),
            Err(SignalError::WrongLength { .. })
        ));
        assert!(matches!(
            Signal::parse("sha1", &"g".repeat(40)),
            Err(SignalError::BadEncoding { .. })
        ));
        assert!(matches!(
            Signal::parse("no spaces", "00"),
            Err(SignalError::BadTypeName(_))
        ));
        assert!(Signal::parse("photodna", "***").is_err());
        assert!(Signal::parse("photodna", "").is_err());
    }

    #[test]
    fn opaque_values_in_hex_or_base64() {
        let hex = Signal::parse("photodna", "00ff10").unwrap();
        assert_eq!(hex.value(), &[0, 255, 16]);
        let b64 = Signal::parse("pdna", "AP8Q").unwrap();
        assert_eq!(b64.value(), &[0, 255, 16]);
        let padded = Signal::parse("pdna", "AP8=").unwrap();
        assert_eq!(padded.value(), &[0, 255]);
        assert_eq!(decode_base64("aGVsbG8"), Some(b"hello".to_vec()));
    }

    #[test]
    fn keys_separate_types_and_prefixes() {
        let a = Signal::parse("photodna", "0011").unwrap();
        let b = Signal::parse("photodna", "001122").unwrap();
        assert!(!b.key().starts_with(&a.key()));
        let md5 = Signal::from_bytes(SignalType::Md5, vec![0; 16]).unwrap();
        let opaque = Signal::from_bytes(SignalType::Opaque("x".into()), vec![0; 16]).unwrap();
        assert_ne!(md5.key(), opaque.key());
    }
}
