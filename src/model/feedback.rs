//! Feedback vocabulary: what a node says about a match.
//!
//! A [`Verdict`] is written as `confirmed` or `false_positive` everywhere it
//! leaves the process as text: stored JSON (match records, received and
//! queued feedback notes), the federation's `FeedbackItem`, the admin
//! service's listings and the bytes a reporter signs
//! ([`FeedbackNote::statement`](super::signed::FeedbackNote::statement)).
//! Those strings are fixed: nodes of older versions wrote and signed them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whether a match was right.
///
/// Serialises as [`Verdict::as_str`] (`"confirmed"`, `"false_positive"`),
/// the strings older versions stored, so their JSON still reads and what
/// is written now is byte-identical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The content is what the entry says.
    Confirmed,
    /// It is not.
    FalsePositive,
}

impl Verdict {
    /// Every verdict.
    pub const ALL: [Verdict; 2] = [Verdict::Confirmed, Verdict::FalsePositive];

    /// The verdict's name: `confirmed` or `false_positive`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::FalsePositive => "false_positive",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest part of a refused value an [`UnknownVerdict`] keeps (the value
/// comes from outside and is echoed back in messages).
const SHOWN: usize = 64;

/// A string that is not a verdict's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown verdict {0:?}: expected confirmed or false_positive")]
pub struct UnknownVerdict(
    /// The value given (its first 64 characters, if longer).
    pub String,
);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVerdict(s.chars().take(SHOWN).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_serde_writes_the_same_strings() {
        for v in Verdict::ALL {
            assert_eq!(v.as_str().parse::<Verdict>(), Ok(v));
            assert_eq!(v.to_string(), v.as_str());
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.as_str()));
            assert_eq!(serde_json::from_str::<Verdict>(&json).unwrap(), v);
        }
        assert_eq!(Verdict::Confirmed.as_str(), "confirmed");
        assert_eq!(Verdict::FalsePositive.as_str(), "false_positive");
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        for bad in ["", "Confirmed", "FALSE_POSITIVE", "false-positive", "maybe"] {
            let e = bad.parse::<Verdict>().unwrap_err();
            assert_eq!(e, UnknownVerdict(bad.to_owned()));
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
            assert!(serde_json::from_str::<Verdict>(&format!("\"{bad}\"")).is_err());
        }
        let long = "x".repeat(10_000);
        let e = long.parse::<Verdict>().unwrap_err();
        assert_eq!(e.0.len(), SHOWN);
    }

    use crate::model::signed::FeedbackNote;
    use crate::model::{EntryId, SetId};
    use ed25519_dalek::{Signer as _, SigningKey};

    fn note(verdict: Verdict) -> FeedbackNote {
        FeedbackNote {
            set: SetId::new("hotline-a", "list").unwrap(),
            entry: EntryId([0xab; 16]),
            verdict,
            reason: "benign_collision".into(),
            time_ms: 1_700_000_000_123,
            reporter: "node-c".into(),
            signature: String::new(),
        }
    }

    /// The statement as versions with a string verdict built it, from the
    /// literal strings.
    fn statement_from_strings(verdict: &str) -> Vec<u8> {
        let mut m = b"hashfed feedback v1\0".to_vec();
        for field in ["hotline-a/list", verdict, "benign_collision", "node-c"] {
            m.extend_from_slice(&(field.len() as u32).to_be_bytes());
            m.extend_from_slice(field.as_bytes());
        }
        m.extend_from_slice(&[0xab; 16]);
        m.extend_from_slice(&1_700_000_000_123u64.to_be_bytes());
        m
    }

    #[test]
    fn the_signed_statement_is_byte_identical_to_the_string_verdicts() {
        for (v, name) in [
            (Verdict::Confirmed, "confirmed"),
            (Verdict::FalsePositive, "false_positive"),
        ] {
            assert_eq!(note(v).statement(), statement_from_strings(name));
        }
        // So a signature an older node made over those bytes still verifies.
        let key = SigningKey::from_bytes(&[5; 32]);
        let signature = key.sign(&statement_from_strings("false_positive"));
        let signed = FeedbackNote {
            signature: crate::signal::exact::to_hex(&signature.to_bytes()),
            ..note(Verdict::FalsePositive)
        };
        assert!(signed.verify(&[key.verifying_key()]).is_ok());
        let flipped = FeedbackNote {
            verdict: Verdict::Confirmed,
            ..signed
        };
        assert!(flipped.verify(&[key.verifying_key()]).is_err());
    }

    #[test]
    fn notes_stored_by_older_versions_read_and_write_back_the_same_json() {
        let old = format!(
            r#"{{"set":"hotline-a/list","entry":"{}","verdict":"false_positive","reason":"benign_collision","time_ms":1700000000123,"reporter":"node-c","signature":""}}"#,
            "ab".repeat(16)
        );
        let read: FeedbackNote = serde_json::from_str(&old).unwrap();
        assert_eq!(read, note(Verdict::FalsePositive));
        assert_eq!(serde_json::to_string(&read).unwrap(), old);
        let confirmed = old.replace("false_positive", "confirmed");
        let read: FeedbackNote = serde_json::from_str(&confirmed).unwrap();
        assert_eq!(read.verdict, Verdict::Confirmed);
        let bad = old.replace("false_positive", "wrong");
        let e = serde_json::from_str::<FeedbackNote>(&bad).unwrap_err();
        assert!(e.to_string().contains("wrong"), "{e}");
    }
}
