//! The match API: exact lookups and PDQ radius queries, with the answer in
//! terms operators and providers use (entry, set, origin, labels, distance).
//!
//! Queries touch only memory and, for the (rare) hits, a few store reads;
//! nothing about a query is written anywhere.
//!
//! Allowlists are applied here, under every door: a query (or an image)
//! that matches an entry of an allowlist within its threshold gets no hit
//! from the block lists, and the answer names the allowlists instead
//! ([`Answer::allowlisted`]). A batch of hash queries is screened query by
//! query (its queries may be of different images); an image as a whole.

use std::collections::HashMap;

use super::Database;
use crate::model::{EntryId, SetId, SetKind, Signal, SignalType};
use crate::signal::content::ImageHashes;
use crate::signal::pdq::{PdqHash, DEFAULT_QUALITY_FLOOR};
use crate::store::StoreError;

/// Largest PDQ radius a query may ask for.
pub const MAX_RADIUS: u32 = 128;

/// Most hashes in one PDQ query (the original and its 7 dihedral variants).
pub const MAX_VARIANTS: usize = 8;

/// One entry that matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Match {
    /// The entry.
    pub entry: EntryId,
    /// Its set.
    pub set: SetId,
    /// The node that published the set.
    pub origin: String,
    /// Its signal type.
    pub signal_type: SignalType,
    /// Its labels.
    pub labels: Vec<String>,
    /// The source record it came from, if imported from one.
    pub external_id: Option<String>,
    /// Hamming distance (0 for exact types).
    pub distance: u32,
    /// Which of the query's hashes matched nearest (0: the first).
    pub variant: usize,
    /// Its set's kind: an allowlist's matches are never returned as hits
    /// (see [`Answer`]).
    pub kind: SetKind,
}

/// What a query (or an image) matched, allowlists applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// The block lists' hits: empty when an allowlist matched.
    pub hits: Vec<Match>,
    /// The allowlists that matched (each once, in order): the query is
    /// known benign here, so the block lists' hits were withheld.
    pub allowlisted: Vec<SetId>,
}

impl Answer {
    /// Splits raw matches: any allowlist match withholds every block hit.
    fn screen(matches: Vec<Match>) -> Answer {
        let mut allowlisted: Vec<SetId> = Vec::new();
        for m in matches.iter().filter(|m| m.kind == SetKind::Allow) {
            if !allowlisted.contains(&m.set) {
                allowlisted.push(m.set.clone());
            }
        }
        if allowlisted.is_empty() {
            return Answer {
                hits: matches,
                allowlisted,
            };
        }
        allowlisted.sort();
        Answer {
            hits: Vec::new(),
            allowlisted,
        }
    }
}

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum MatchError {
    /// The PDQ hash's quality is under the floor; it was not looked up,
    /// because low-quality hashes (flat or tiny images) match unrelated
    /// content.
    #[error("PDQ quality {quality} is below the floor {floor}; not matched")]
    LowQuality {
        /// The query's quality.
        quality: u32,
        /// The floor.
        floor: u32,
    },
    /// A radius over [`MAX_RADIUS`].
    #[error("radius {0} is over the maximum {MAX_RADIUS}")]
    RadiusTooLarge(u32),
    /// No hashes, or more than [`MAX_VARIANTS`].
    #[error("a PDQ query carries 1 to {MAX_VARIANTS} hashes, got {0}")]
    BadVariantCount(usize),
    /// The store failed while reading a hit.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A PDQ query.
#[derive(Clone, Debug)]
pub struct PdqQuery<'a> {
    /// The hash, optionally followed by its dihedral variants (rotations and
    /// flips of the same image); an entry matches if any of them is close.
    pub hashes: &'a [PdqHash],
    /// The hash's quality, if the caller knows it.
    pub quality: Option<u32>,
    /// Hashes under this quality are refused (Meta's default: 50).
    pub quality_floor: u32,
    /// Match radius; `None` uses each set's own threshold (default 31).
    pub radius: Option<u32>,
}

impl<'a> PdqQuery<'a> {
    /// A query with the default floor and the sets' thresholds.
    pub fn new(hashes: &'a [PdqHash]) -> Self {
        PdqQuery {
            hashes,
            quality: None,
            quality_floor: u32::from(DEFAULT_QUALITY_FLOOR),
            radius: None,
        }
    }
}

/// What an image matched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageMatches {
    /// PDQ hits (nearest first), then exact hits; none when an allowlist
    /// matched any of the image's hashes.
    pub hits: Vec<Match>,
    /// The allowlists any of the image's hashes matched.
    pub allowlisted: Vec<SetId>,
    /// Why PDQ was not looked up (quality under the floor), if it was not.
    pub pdq_skipped: Option<String>,
}

impl Database {
    /// Every matchable entry that an image's hashes match: its PDQ hash
    /// (with its dihedral variants when they were computed) by distance,
    /// and its exact digests by value. A PDQ hash under the quality floor
    /// is skipped (and said so); the exact digests are still looked up.
    /// If any hash matches an allowlist, the image gets no hit at all.
    pub fn match_image(
        &self,
        hashes: &ImageHashes,
        radius: Option<u32>,
        quality_floor: u32,
    ) -> Result<ImageMatches, MatchError> {
        let pdq: Vec<PdqHash> = match &hashes.dihedral {
            Some(d) => d.hashes.to_vec(),
            None => vec![hashes.pdq.hash],
        };
        let query = PdqQuery {
            hashes: &pdq,
            quality: Some(u32::from(hashes.pdq.quality)),
            quality_floor,
            radius,
        };
        let mut out = ImageMatches::default();
        let mut raw = Vec::new();
        match self.raw_pdq(&query) {
            Ok(hits) => raw = hits,
            Err(e @ MatchError::LowQuality { .. }) => out.pdq_skipped = Some(e.to_string()),
            Err(e) => return Err(e),
        }
        let e = &hashes.exact;
        for (kind, value) in [
            (SignalType::Md5, &e.md5[..]),
            (SignalType::Sha1, &e.sha1[..]),
            (SignalType::Sha256, &e.sha256[..]),
            (SignalType::Blake3, &e.blake3[..]),
        ] {
            // The digests have the right lengths by construction.
            if let Ok(signal) = Signal::from_bytes(kind, value.to_vec()) {
                raw.extend(self.raw_exact(&signal)?);
            }
        }
        let answer = self.screened(raw);
        out.hits = answer.hits;
        out.allowlisted = answer.allowlisted;
        Ok(out)
    }

    /// Every matchable block-list entry with exactly this value, in any
    /// set; none if an allowlist has it (see [`Database::answer_exact`]).
    pub fn match_exact(&self, signal: &Signal) -> Result<Vec<Match>, MatchError> {
        Ok(self.answer_exact(signal)?.hits)
    }

    /// Every matchable block-list entry within the query's radius, nearest
    /// first; none if it matches an allowlist (see
    /// [`Database::answer_pdq`]).
    pub fn match_pdq(&self, query: &PdqQuery<'_>) -> Result<Vec<Match>, MatchError> {
        Ok(self.answer_pdq(query)?.hits)
    }

    /// An exact query's answer: the block lists' entries with exactly this
    /// value, or none and the allowlists that have it.
    pub fn answer_exact(&self, signal: &Signal) -> Result<Answer, MatchError> {
        let raw = self.raw_exact(signal)?;
        Ok(self.screened(raw))
    }

    /// A PDQ query's answer: the block lists' entries within its radius,
    /// or none and the allowlists it comes within the threshold of.
    pub fn answer_pdq(&self, query: &PdqQuery<'_>) -> Result<Answer, MatchError> {
        let raw = self.raw_pdq(query)?;
        Ok(self.screened(raw))
    }

    /// Applies allowlists to raw matches, counting a query they answered
    /// once per allowlist, under the signal type of its nearest entry that
    /// matched (for the report).
    fn screened(&self, raw: Vec<Match>) -> Answer {
        let mut counted: Vec<&SetId> = Vec::new();
        for m in raw.iter().filter(|m| m.kind == SetKind::Allow) {
            if !counted.contains(&&m.set) {
                counted.push(&m.set);
                self.records.count_allowlisted(&m.set, m.signal_type.name());
            }
        }
        Answer::screen(raw)
    }

    /// Every matchable entry with exactly this value, in any set (block
    /// lists and allowlists alike).
    fn raw_exact(&self, signal: &Signal) -> Result<Vec<Match>, MatchError> {
        if signal.kind() == &SignalType::Pdq {
            let hash = signal.as_pdq().unwrap_or(PdqHash::ZERO);
            let mut query = PdqQuery::new(std::slice::from_ref(&hash));
            query.radius = Some(0);
            return self.raw_pdq(&query);
        }
        self.flood.query(super::now_ms() / 1000);
        self.records.count_query(signal.kind().name());
        let ids: Vec<EntryId> = self.indexes().exact.get(&signal.key()).to_vec();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(m) = self.resolve(id, 0, 0, None)? {
                out.push(m);
            }
        }
        out.sort_by(|a, b| (&a.set, a.entry).cmp(&(&b.set, b.entry)));
        Ok(out)
    }

    /// Every matchable PDQ entry within the radius of any of the query's
    /// hashes, nearest first (ties by set, then entry), each once, with the
    /// variant that came nearest (block lists and allowlists alike).
    fn raw_pdq(&self, query: &PdqQuery<'_>) -> Result<Vec<Match>, MatchError> {
        if query.hashes.is_empty() || query.hashes.len() > MAX_VARIANTS {
            return Err(MatchError::BadVariantCount(query.hashes.len()));
        }
        if let Some(quality) = query.quality {
            if quality < query.quality_floor {
                return Err(MatchError::LowQuality {
                    quality,
                    floor: query.quality_floor,
                });
            }
        }
        let radius = match query.radius {
            Some(r) if r > MAX_RADIUS => return Err(MatchError::RadiusTooLarge(r)),
            Some(r) => r,
            None => self.store.max_pdq_threshold(),
        };
        self.flood.query(super::now_ms() / 1000);
        self.records.count_query(SignalType::Pdq.name());
        // Slot -> (distance, variant), nearest variant kept.
        let mut nearest: HashMap<u32, (u32, usize)> = HashMap::new();
        {
            let indexes = self.indexes();
            for (variant, hash) in query.hashes.iter().enumerate() {
                for (slot, d) in indexes.pdq.search(&hash.to_words(), radius) {
                    let best = nearest.entry(slot).or_insert((d, variant));
                    if d < best.0 {
                        *best = (d, variant);
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(nearest.len());
        for (slot, (distance, variant)) in nearest {
            let Some(id) = self.store.entry_at_slot(slot)? else {
                continue; // removed since the search
            };
            let limit = query.radius;
            if let Some(m) = self.resolve(id, distance, variant, Some((query.hashes, limit)))? {
                out.push(m);
            }
        }
        out.sort_by(|a, b| (a.distance, &a.set, a.entry).cmp(&(b.distance, &b.set, b.entry)));
        Ok(out)
    }

    /// Reads a hit's entry and checks it still matches: the index is read
    /// without the writer's lock, so a slot may have changed hands between
    /// the search and this read. For PDQ, the distance is recomputed from
    /// the stored value and checked against the query radius or the set's
    /// threshold.
    fn resolve(
        &self,
        id: EntryId,
        distance: u32,
        variant: usize,
        pdq: Option<(&[PdqHash], Option<u32>)>,
    ) -> Result<Option<Match>, StoreError> {
        let Some(entry) = self.store.entry(&id)? else {
            return Ok(None);
        };
        if entry.retracted || entry.disabled || self.store.is_suppressed(&entry.set) {
            return Ok(None);
        }
        let kind = self.store.set_kind(&entry.set).unwrap_or_default();
        let mut distance = distance;
        if let Some((hashes, radius)) = pdq {
            let Some(stored) = entry.data.signal.as_pdq() else {
                return Ok(None);
            };
            let Some(hash) = hashes.get(variant) else {
                return Ok(None);
            };
            distance = hash.distance(&stored);
            let threshold = || self.store.set(&entry.set).map(|s| s.info.pdq_threshold());
            let limit = match (radius, kind) {
                (Some(r), SetKind::Block) => r,
                // An allowlist withholds hits only within its own
                // threshold, whatever radius the caller asked for.
                (Some(r), SetKind::Allow) => match threshold() {
                    Some(t) => r.min(t),
                    None => return Ok(None),
                },
                (None, _) => match threshold() {
                    Some(t) => t,
                    None => return Ok(None),
                },
            };
            if distance > limit {
                return Ok(None);
            }
        }
        // Allowlist entries are meant to match often (that is what they
        // are for); quarantining one would turn its block hits back on.
        if kind == SetKind::Block {
            if let Some(reason) = self.flood.hit(id, super::now_ms() / 1000) {
                self.quarantine(&id, &reason)?;
                return Ok(None);
            }
        }
        Ok(Some(Match {
            entry: id,
            origin: entry.set.origin().to_owned(),
            set: entry.set,
            signal_type: entry.data.signal.kind().clone(),
            labels: entry.data.labels,
            external_id: entry.data.external_id,
            distance,
            variant,
            kind,
        }))
    }
}
