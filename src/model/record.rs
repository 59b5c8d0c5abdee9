//! Log records: what a set's append-only log holds, and their byte form.
//!
//! A record's bytes are canonical (one encoding per record, length-prefixed,
//! no optional padding, trailing bytes refused), because the set's chain
//! digest is computed over them: the bytes stored are the bytes chained, and
//! later the bytes peers receive and verify. No general-purpose serializer
//! promises that, so the format is written out here.

use super::set::{EntryId, SetId};
use super::signal::{Signal, SignalType};

/// Format version written in the first byte.
const VERSION: u8 = 1;
const TAG_ADD: u8 = 1;
const TAG_RETRACT: u8 = 2;

/// A reviewer's confirmation of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    /// Who confirmed (an operator identity).
    pub reviewer: String,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
}

/// An entry's content as its origin publishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryData {
    /// The hash.
    pub signal: Signal,
    /// Normalised labels (see [`super::normalize_labels`]).
    pub labels: Vec<String>,
    /// The id of the record this hash came from in an outside source (e.g.
    /// `ncmec:<id>`), so that source's deletions can find it.
    pub external_id: Option<String>,
    /// Who vetted it.
    pub vetting: Vec<Attestation>,
}

/// What a record does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordBody {
    /// Adds an entry, or replaces the content of one already there (its id
    /// is derived from set and signal, so it is not written).
    Add(EntryData),
    /// Withdraws an entry.
    Retract {
        /// The entry.
        entry: EntryId,
        /// Why, for operators (free text).
        reason: String,
    },
}

/// One record of a set's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Position in the set's log, from 1, contiguous.
    pub seq: u64,
    /// When the origin appended it, ms since the Unix epoch.
    pub time_ms: u64,
    /// What it does.
    pub body: RecordBody,
}

/// Why record bytes could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    /// The bytes end early.
    #[error("record truncated")]
    Truncated,
    /// Unknown version or tag, or bytes after the end.
    #[error("record malformed: {0}")]
    Malformed(&'static str),
    /// The signal inside is invalid.
    #[error("record carries an invalid signal: {0}")]
    Signal(#[from] super::signal::SignalError),
}

impl Record {
    /// The canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(96);
        w.push(VERSION);
        w.extend_from_slice(&self.seq.to_be_bytes());
        w.extend_from_slice(&self.time_ms.to_be_bytes());
        match &self.body {
            RecordBody::Add(data) => {
                w.push(TAG_ADD);
                encode_entry(&mut w, data);
            }
            RecordBody::Retract { entry, reason } => {
                w.push(TAG_RETRACT);
                w.extend_from_slice(&entry.0);
                put_str16(&mut w, reason);
            }
        }
        w
    }

    /// Reads canonical bytes back.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(CodecError::Malformed("unknown version"));
        }
        let seq = r.u64()?;
        let time_ms = r.u64()?;
        let body = match r.u8()? {
            TAG_ADD => RecordBody::Add(decode_entry(&mut r)?),
            TAG_RETRACT => RecordBody::Retract {
                entry: EntryId(r.array()?),
                reason: r.str16()?,
            },
            _ => return Err(CodecError::Malformed("unknown record kind")),
        };
        r.end()?;
        Ok(Record { seq, time_ms, body })
    }
}

/// Appends an entry's canonical bytes to `w` (also used for stored entry state).
pub fn encode_entry(w: &mut Vec<u8>, data: &EntryData) {
    let kind = data.signal.kind();
    w.push(kind.code());
    if let SignalType::Opaque(name) = kind {
        put_str8(w, name);
    }
    put_bytes16(w, data.signal.value());
    w.push(data.labels.len() as u8);
    for label in &data.labels {
        put_str16(w, label);
    }
    match &data.external_id {
        Some(ext) => {
            w.push(1);
            put_str16(w, ext);
        }
        None => w.push(0),
    }
    w.push(data.vetting.len() as u8);
    for a in &data.vetting {
        put_str8(w, &a.reviewer);
        w.extend_from_slice(&a.time_ms.to_be_bytes());
    }
}

/// Reads what [`encode_entry`] wrote.
pub fn decode_entry(r: &mut Reader<'_>) -> Result<EntryData, CodecError> {
    let kind = match r.u8()? {
        1 => SignalType::Pdq,
        2 => SignalType::Md5,
        3 => SignalType::Sha1,
        4 => SignalType::Sha256,
        5 => SignalType::Blake3,
        6 => SignalType::parse(&r.str8()?)?,
        _ => return Err(CodecError::Malformed("unknown signal type")),
    };
    let signal = Signal::from_bytes(kind, r.bytes16()?.to_vec())?;
    let labels = (0..r.u8()?).map(|_| r.str16()).collect::<Result<_, _>>()?;
    let external_id = match r.u8()? {
        0 => None,
        1 => Some(r.str16()?),
        _ => return Err(CodecError::Malformed("bad external id flag")),
    };
    let vetting = (0..r.u8()?)
        .map(|_| {
            Ok(Attestation {
                reviewer: r.str8()?,
                time_ms: r.u64()?,
            })
        })
        .collect::<Result<_, CodecError>>()?;
    Ok(EntryData {
        signal,
        labels,
        external_id,
        vetting,
    })
}

/// The chain digest before a set's first record: binds the chain to the set.
pub fn genesis_digest(set: &SetId) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"hashfed set log v1\0");
    h.update(set.as_str().as_bytes());
    *h.finalize().as_bytes()
}

/// The chain digest after appending `record` (its canonical bytes) to a log
/// whose digest was `prev`. Equal heads and digests mean equal logs.
pub fn chain_digest(prev: &[u8; 32], record: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(&(record.len() as u64).to_be_bytes());
    h.update(record);
    *h.finalize().as_bytes()
}

fn put_str8(w: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    w.push(b.len() as u8);
    w.extend_from_slice(b);
}

fn put_bytes16(w: &mut Vec<u8>, b: &[u8]) {
    let b = &b[..b.len().min(u16::MAX as usize)];
    w.extend_from_slice(&(b.len() as u16).to_be_bytes());
    w.extend_from_slice(b);
}

fn put_str16(w: &mut Vec<u8>, s: &str) {
    put_bytes16(w, s.as_bytes())
}

/// A bounds-checked cursor over record bytes.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u32.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian u64.
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// `N` bytes.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn bytes16(&mut self) -> Result<&'a [u8], CodecError> {
        let n = u16::from_be_bytes(self.array()?) as usize;
        self.take(n)
    }

    fn str8(&mut self) -> Result<String, CodecError> {
        let n = self.u8()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Malformed("text is not UTF-8"))
    }

    fn str16(&mut self) -> Result<String, CodecError> {
        let b = self.bytes16()?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Malformed("text is not UTF-8"))
    }

    /// Fails unless every byte was read.
    pub fn end(&self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            seq: 7,
            time_ms: 1_700_000_000_000,
            body: RecordBody::Add(EntryData {
                signal: Signal::parse("pdna", "AP8Q").unwrap(),
                labels: vec!["A1".into(), "tag:é".into()],
                external_id: Some("ncmec:42".into()),
                vetting: vec![Attestation {
                    reviewer: "alice".into(),
                    time_ms: 5,
                }],
            }),
        }
    }

    #[test]
    fn round_trips() {
        let rec = sample();
        assert_eq!(Record::decode(&rec.encode()).unwrap(), rec);
        let retract = Record {
            seq: 8,
            time_ms: 1,
            body: RecordBody::Retract {
                entry: EntryId([9; 16]),
                reason: "dispute".into(),
            },
        };
        assert_eq!(Record::decode(&retract.encode()).unwrap(), retract);
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let bytes = sample().encode();
        for n in 0..bytes.len() {
            assert!(Record::decode(&bytes[..n]).is_err(), "prefix {n} accepted");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::decode(&longer).is_err());
    }

    #[test]
    fn chain_depends_on_order_and_set() {
        let a = SetId::new("o", "a").unwrap();
        let g = genesis_digest(&a);
        assert_ne!(g, genesis_digest(&SetId::new("o", "b").unwrap()));
        let x = chain_digest(&chain_digest(&g, b"1"), b"2");
        let y = chain_digest(&chain_digest(&g, b"2"), b"1");
        assert_ne!(x, y);
    }
}
