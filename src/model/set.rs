//! Hash sets, their names and policies, entry ids and labels.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::signal::Signal;
use crate::signal::pdq::DEFAULT_MATCH_THRESHOLD;

/// Why a name, id or label was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// A set id is not `<origin>/<name>` with both parts valid.
    #[error("set id {0:?} must be <origin>/<name>, each 1-64 of A-Z a-z 0-9 _ . - and not starting with '.'")]
    BadSetId(String),
    /// An entry id is not 32 hexadecimal digits.
    #[error("entry id {0:?} must be 32 hexadecimal digits")]
    BadEntryId(String),
    /// A label is empty, too long or has control characters.
    #[error("label {0:?} must be 1-{MAX_LABEL} characters without control characters")]
    BadLabel(String),
    /// More labels than [`MAX_LABELS`].
    #[error("an entry may carry at most {MAX_LABELS} labels, got {0}")]
    TooManyLabels(usize),
    /// A label outside the set's vocabulary.
    #[error("label {0:?} is not in the set's vocabulary")]
    NotInVocabulary(String),
}

/// A hash set's globally unique id: `<origin>/<name>`.
///
/// Both parts are restricted to a file-name-safe alphabet so an id can
/// never smuggle a path, a control character or a second separator into
/// logs, file names or keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SetId(String);

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 64
        && !part.starts_with('.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

impl SetId {
    /// `<origin>/<name>` from its parts.
    pub fn new(origin: &str, name: &str) -> Result<Self, NameError> {
        format!("{origin}/{name}").parse()
    }

    /// The origin: the node that owns the set.
    pub fn origin(&self) -> &str {
        self.0.split_once('/').map_or("", |(o, _)| o)
    }

    /// The name within the origin.
    pub fn name(&self) -> &str {
        self.0.split_once('/').map_or("", |(_, n)| n)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for SetId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        match s.split_once('/') {
            Some((o, n)) if valid_part(o) && valid_part(n) => Ok(SetId(s.to_owned())),
            _ => Err(NameError::BadSetId(s.chars().take(140).collect())),
        }
    }
}

impl TryFrom<String> for SetId {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        s.parse()
    }
}

impl From<SetId> for String {
    fn from(id: SetId) -> String {
        id.0
    }
}

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An entry's id: the first 16 bytes of a BLAKE3 digest of its set and signal.
///
/// Deriving the id from content (instead of numbering entries) makes
/// imports idempotent and lets every node that receives the set compute the
/// same id on its own: the same hash in the same set is the same entry
/// everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub [u8; 16]);

impl EntryId {
    /// The id of `signal` in `set`.
    pub fn derive(set: &SetId, signal: &Signal) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"hashfed entry id v1\0");
        h.update(set.as_str().as_bytes());
        h.update(b"\0");
        h.update(&signal.key());
        let mut id = [0; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        EntryId(id)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::signal::exact::to_hex(&self.0))
    }
}

impl FromStr for EntryId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        crate::model::signal::decode_hex(s)
            .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
            .map(EntryId)
            .ok_or_else(|| NameError::BadEntryId(s.chars().take(40).collect()))
    }
}

/// Entry ids travel in JSON (match records, exports) as their hex string.
impl Serialize for EntryId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EntryId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest label, in bytes.
pub const MAX_LABEL: usize = 128;
/// Most labels on one entry.
pub const MAX_LABELS: usize = 32;

/// Trims, validates, sorts and de-duplicates labels, so two sources that
/// list the same labels in another order describe the same entry.
pub fn normalize_labels(labels: Vec<String>) -> Result<Vec<String>, NameError> {
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        let label = label.trim();
        if label.is_empty() {
            continue;
        }
        if label.len() > MAX_LABEL || label.chars().any(char::is_control) {
            return Err(NameError::BadLabel(label.chars().take(40).collect()));
        }
        out.push(label.to_owned());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_LABELS {
        return Err(NameError::TooManyLabels(out.len()));
    }
    Ok(out)
}

/// Who may receive a set and what they may do with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetPolicy {
    /// Node ids of peers that may receive the set (`*`: every peer).
    #[serde(default)]
    pub share_with: Vec<String>,
    /// Whether receivers may pass the set on to their own peers.
    #[serde(default)]
    pub reshare: bool,
}

/// Why a set's policy does not let it pass between two nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShareRefusal {
    /// Only the origin may pass the set on: its policy forbids re-sharing.
    #[error("the origin does not allow re-sharing")]
    NoReshare,
    /// The origin's list of receivers does not name the receiver.
    #[error("the origin's policy does not list the receiving node")]
    NotListed,
}

impl SetPolicy {
    /// The one share rule, asked by the sender before it offers a set and
    /// by the receiver before it takes one (so a relay that ignores it
    /// gains nothing): a set passes from its origin (`from_origin`) or,
    /// if the origin allows re-sharing, from any node that holds it, to a
    /// node the origin lists by id (`*` or an empty list: any node the
    /// sender grants it to).
    pub fn allows(&self, from_origin: bool, receiver: &str) -> Result<(), ShareRefusal> {
        if !from_origin && !self.reshare {
            return Err(ShareRefusal::NoReshare);
        }
        let listed =
            self.share_with.is_empty() || self.share_with.iter().any(|n| n == "*" || n == receiver);
        if !listed {
            return Err(ShareRefusal::NotListed);
        }
        Ok(())
    }
}

/// A hash set's configuration, as its origin defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetInfo {
    /// `<origin>/<name>`.
    pub id: SetId,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
    /// Distribution policy.
    #[serde(default)]
    pub policy: SetPolicy,
    /// Allowed labels; empty means any.
    #[serde(default)]
    pub vocabulary: Vec<String>,
    /// Match threshold per signal type name (today only `pdq` has a
    /// distance); absent types use the default (31 for PDQ).
    #[serde(default)]
    pub thresholds: BTreeMap<String, u32>,
    /// Reviewers (other than the submitter) who must confirm each new
    /// entry before it enters the set's log; 0: entries are added directly
    /// (e.g. an import of a list vetted at its source).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub vetting: u32,
    /// The set's head when the vetting rule last changed: entries added
    /// after it carry `vetting` attestations; those before were added
    /// under an earlier rule (see [`SetInfo::check_vetted`]).
    #[serde(default, skip_serializing_if = "is_zero64")]
    pub vetting_since: u64,
    /// What the origin does when peers dispute an entry.
    #[serde(default, skip_serializing_if = "DisputePolicy::is_off")]
    pub disputes: DisputePolicy,
    /// What a match of its entries means: a block list (the default) or an
    /// allowlist. Absent from a block list's JSON, so configurations
    /// signed before kinds existed verify unchanged.
    #[serde(default, skip_serializing_if = "SetKind::is_block")]
    pub kind: SetKind,
}

/// What a match of a set's entries means.
///
/// Why allowlists: a benign image that collides with a listed hash (a
/// logo, a stock photo, a meme the list caught by mistake) can be listed
/// once as known benign, and every query that comes within its threshold
/// stops hitting the block lists, on this node, until someone decides.
/// Allowlists are sets like any other: local unless shared, signed and
/// audited the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetKind {
    /// Its entries are material to find: a match is a hit.
    #[default]
    Block,
    /// Its entries are known benign: a query that matches one gets no hit
    /// from the block lists (and is counted as allowlisted).
    Allow,
}

impl SetKind {
    /// Whether this is the default kind (a block list).
    pub fn is_block(&self) -> bool {
        *self == SetKind::Block
    }

    /// Its name: `block` or `allow`.
    pub fn name(&self) -> &'static str {
        match self {
            SetKind::Block => "block",
            SetKind::Allow => "allow",
        }
    }
}

impl std::fmt::Display for SetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an origin does with false-positive reports from peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputePolicy {
    /// Distinct nodes reporting a false positive (since the entry's last
    /// review) that raise the entry for review; 0: off.
    #[serde(default)]
    pub threshold: u32,
    /// Also suspend the entry network-wide (a retraction record) until an
    /// operator reviews it.
    #[serde(default)]
    pub suspend: bool,
}

impl DisputePolicy {
    /// Whether disputes never raise anything.
    pub fn is_off(&self) -> bool {
        self.threshold == 0
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_zero64(n: &u64) -> bool {
    *n == 0
}

/// An entry added without the attestations its set's vetting rule asks
/// for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("an entry added at seq {seq} carries {got} distinct reviewers' attestations; the set's rule asks for {needed}")]
pub struct Unvetted {
    /// Where in the log.
    pub seq: u64,
    /// Distinct reviewers it carries.
    pub got: u32,
    /// Reviewers the rule asks for.
    pub needed: u32,
}

impl SetInfo {
    /// A set with the default policy (shared with nobody) and thresholds.
    pub fn new(id: SetId) -> Self {
        SetInfo {
            id,
            description: String::new(),
            policy: SetPolicy::default(),
            vocabulary: Vec::new(),
            thresholds: BTreeMap::new(),
            vetting: 0,
            vetting_since: 0,
            disputes: DisputePolicy::default(),
            kind: SetKind::Block,
        }
    }

    /// The vetting rule, one function for the origin (before it appends an
    /// entry) and for every node that receives the set's records (before
    /// it applies them, so an origin that skipped its own rule gains
    /// nothing): an entry added at `seq`, after the rule took effect
    /// (`vetting_since`), carries the attestations of `vetting` distinct
    /// reviewers.
    pub fn check_vetted(&self, seq: u64, entry: &super::record::EntryData) -> Result<(), Unvetted> {
        if self.vetting == 0 || seq <= self.vetting_since {
            return Ok(());
        }
        let mut reviewers: Vec<&str> = entry.vetting.iter().map(|a| a.reviewer.as_str()).collect();
        reviewers.sort_unstable();
        reviewers.dedup();
        let got = reviewers.len() as u32;
        if got < self.vetting {
            return Err(Unvetted {
                seq,
                got,
                needed: self.vetting,
            });
        }
        Ok(())
    }

    /// The PDQ match threshold for this set.
    pub fn pdq_threshold(&self) -> u32 {
        self.thresholds
            .get("pdq")
            .copied()
            .unwrap_or(DEFAULT_MATCH_THRESHOLD)
            .min(256)
    }

    /// Refuses labels outside the vocabulary (when there is one).
    pub fn check_labels(&self, labels: &[String]) -> Result<(), NameError> {
        if self.vocabulary.is_empty() {
            return Ok(());
        }
        match labels.iter().find(|l| !self.vocabulary.contains(l)) {
            Some(l) => Err(NameError::NotInVocabulary(l.clone())),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_lists_json_has_no_kind_so_configurations_signed_before_kinds_verify() {
        let id: SetId = "hotline-a/csam".parse().unwrap();
        let block = SetInfo::new(id.clone());
        let json = serde_json::to_string(&block).unwrap();
        assert!(!json.contains("kind"), "{json}");
        // JSON written before kinds existed reads as a block list.
        let old = r#"{"id":"hotline-a/csam","description":"","policy":{"share_with":[],"reshare":false},"vocabulary":[],"thresholds":{}}"#;
        let read: SetInfo = serde_json::from_str(old).unwrap();
        assert_eq!(read.kind, SetKind::Block);
        let mut allow = SetInfo::new(id);
        allow.kind = SetKind::Allow;
        let json = serde_json::to_string(&allow).unwrap();
        assert!(json.contains(r#""kind":"allow""#), "{json}");
        assert_eq!(serde_json::from_str::<SetInfo>(&json).unwrap(), allow);
    }

    #[test]
    fn set_ids_refuse_traversal_and_separators() {
        let id: SetId = "hotline-a/csam-confirmed".parse().unwrap();
        assert_eq!(id.origin(), "hotline-a");
        assert_eq!(id.name(), "csam-confirmed");
        for bad in [
            "a",
            "a/b/c",
            "../x",
            "a/..",
            "a/.hidden",
            "/b",
            "a/",
            "a b/c",
            "a/b\n",
        ] {
            assert!(bad.parse::<SetId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn entry_ids_round_trip_and_depend_on_set_and_value() {
        let a = SetId::new("o", "a").unwrap();
        let b = SetId::new("o", "b").unwrap();
        let s = Signal::parse("md5", &"1".repeat(32)).unwrap();
        let id = EntryId::derive(&a, &s);
        assert_ne!(id, EntryId::derive(&b, &s));
        assert_eq!(id.to_string().parse::<EntryId>().unwrap(), id);
        assert!("zz".parse::<EntryId>().is_err());
        assert!("é".repeat(16).parse::<EntryId>().is_err());
    }

    #[test]
    fn labels_are_normalised() {
        let l = normalize_labels(vec![" B1 ".into(), "A1".into(), "B1".into(), "".into()]).unwrap();
        assert_eq!(l, vec!["A1", "B1"]);
        assert!(normalize_labels(vec!["a\u{7}".into()]).is_err());
        assert!(normalize_labels((0..40).map(|i| i.to_string()).collect()).is_err());
        let mut info = SetInfo::new(SetId::new("o", "s").unwrap());
        info.vocabulary = vec!["A1".into()];
        assert!(info.check_labels(&l).is_err());
    }

    #[test]
    fn the_vetting_rule_counts_distinct_reviewers_after_it_took_effect() {
        use crate::model::record::{Attestation, EntryData};
        let mut info = SetInfo::new(SetId::new("o", "s").unwrap());
        let by = |names: &[&str]| EntryData {
            signal: Signal::parse("md5", &"1".repeat(32)).unwrap(),
            labels: vec![],
            external_id: None,
            vetting: names
                .iter()
                .map(|n| Attestation {
                    reviewer: (*n).into(),
                    time_ms: 1,
                })
                .collect(),
        };
        assert!(info.check_vetted(1, &by(&[])).is_ok());
        info.vetting = 2;
        info.vetting_since = 10;
        assert!(info.check_vetted(10, &by(&[])).is_ok());
        assert_eq!(
            info.check_vetted(11, &by(&["a", "a"])),
            Err(Unvetted {
                seq: 11,
                got: 1,
                needed: 2
            })
        );
        assert!(info.check_vetted(11, &by(&["a", "b"])).is_ok());
        // Stored as before when off.
        let plain = SetInfo::new(SetId::new("o", "s").unwrap());
        assert!(!serde_json::to_string(&plain).unwrap().contains("vetting"));
    }
}
