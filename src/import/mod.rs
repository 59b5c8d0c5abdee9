//! Reading hash lists that other systems publish.
//!
//! Hotlines and platforms already exchange hashes through a handful of
//! formats: python-threatexchange's dataset dumps (`te-csv`, `te-lines`),
//! NCMEC's Hash Sharing API (`ncmec-xml`), StopNCII.org's FetchHashes API
//! (`stopncii-json`), and our own export (`jsonl`). This module turns each of
//! them into one stream of [`ImportItem`]s so the rest of hashfed sees a single
//! shape: add this hash, withdraw this hash, withdraw everything that came with
//! this source record.
//!
//! Why the design is what it is:
//!
//! * **Streaming.** Real lists run to millions of records and several GB, so
//!   every parser reads from a [`BufRead`] and yields one item at a time; no
//!   parser holds more than one record (or one line) in memory.
//! * **Bad records do not stop an import.** A list with one mangled line out of
//!   ten million is normal; refusing the whole file would leave an operator
//!   with nothing. A malformed record becomes an [`ImportError`] carrying its
//!   [`Position`] and parsing carries on with the next record. Only a read
//!   error, or damage that leaves nothing after it parseable (XML that is not
//!   well-formed, a broken JSON document), ends the stream, and that error is
//!   marked [`ImportError::fatal`].
//! * **Pure.** Parsers do not validate hash values (the signal layer does that
//!   with its own, better messages) and do not touch storage. They only
//!   enforce what the format itself requires: that a type and a value are
//!   present, quoting is closed, and so on.
//! * **No panics.** Input is hostile by assumption: no indexing, `unwrap` or
//!   recursion on input-derived data, and every buffer has a cap.

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// The format read.
    pub format: String,
    /// Records read (good and bad).
    pub records: u64,
    /// New entries.
    pub added: u64,
    /// Entries changed or brought back.
    pub updated: u64,
    /// Records that changed nothing.
    pub unchanged: u64,
    /// Entries withdrawn.
    pub retracted: u64,
    /// Withdrawals that found nothing.
    pub not_found: u64,
    /// Records refused.
    pub refused: u64,
    /// The first refused records, in words (the operation keeps at most
    /// a hundred).
    pub problems: Vec<String>,
    /// Why the input stopped before its end ("" if it did not).
    pub stopped: String,
    /// The set's log head afterwards.
    pub head_seq: u64,
}

mod jsonl;
mod lines;
pub mod load;
pub(crate) mod ncmec_xml;
pub(crate) mod stopncii;
mod te_csv;
mod te_lines;

use std::fmt;
use std::io::BufRead;
use std::str::FromStr;

pub use te_csv::{write_te_csv_header, write_te_csv_row};
pub use te_lines::write_te_line;

/// The UTF-8 byte order mark, which Windows tools like to put at the start of
/// text files. Every parser skips it at the very start of the input.
pub(crate) const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Where in the input a record was.
///
/// Line-based formats set `line` (1-based) and `byte` (0-based offset of the
/// line start); XML sets `byte` (offset of the element's `<`) and `line`;
/// records inside a JSON array also set `record` (1-based index in the
/// array). Every field is optional so that each format can say what it knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Position {
    /// 1-based line number.
    pub line: Option<u64>,
    /// 0-based byte offset from the start of the input (a leading byte order
    /// mark counts).
    pub byte: Option<u64>,
    /// 1-based index of the record within its JSON array (`hashRecords`).
    pub record: Option<u64>,
}

impl Position {
    /// A position given by line number and the byte offset of that line.
    pub fn at_line(line: u64, byte: u64) -> Self {
        Position {
            line: Some(line),
            byte: Some(byte),
            record: None,
        }
    }
}

impl fmt::Display for Position {
    /// `line 12`, `byte 3456`, `line 12 (byte 3456)`,
    /// `record 17 (line 1, byte 3456)`: the most human part first, the rest
    /// in parentheses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            self.record.map(|r| format!("record {r}")),
            self.line.map(|l| format!("line {l}")),
            self.byte.map(|b| format!("byte {b}")),
        ];
        let mut parts = parts.into_iter().flatten();
        match parts.next() {
            None => f.write_str("unknown position"),
            Some(first) => {
                f.write_str(&first)?;
                let rest: Vec<String> = parts.collect();
                if !rest.is_empty() {
                    write!(f, " ({})", rest.join(", "))?;
                }
                Ok(())
            }
        }
    }
}

/// A hash as the source wrote it: type name and value text, both unvalidated.
///
/// Type names are the source's own (`pdq`, `md5`, `video_md5`, `pdna`, ...);
/// mapping them to hashfed's signal types is the caller's job. Both strings
/// are trimmed of surrounding whitespace, which is never part of a hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawSignal {
    /// The signal type as the source names it.
    pub type_name: String,
    /// The hash value as text.
    pub value: String,
}

/// What one record asks the importer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOp {
    /// Add (or update) one hash.
    Add {
        /// The hash.
        signal: RawSignal,
        /// Labels from the source, trimmed, empty ones dropped, otherwise as
        /// written (case is kept).
        labels: Vec<String>,
        /// The source's id for the record this hash came with, if the format
        /// has one (NCMEC: `ncmec:<member>:<entry>`).
        external_id: Option<String>,
    },
    /// Withdraw the hash with this value.
    RetractValue {
        /// The hash being withdrawn.
        signal: RawSignal,
    },
    /// Withdraw every hash that came with this source record id (NCMEC deleted
    /// entries carry only the id).
    RetractExternal {
        /// The same id that the record's [`ImportOp::Add`]s carried.
        external_id: String,
    },
}

/// One parsed record and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportItem {
    /// Where the record was in the input.
    pub position: Position,
    /// What to do.
    pub op: ImportOp,
}

/// A record that could not be parsed, or a failure that ended parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {message}")]
pub struct ImportError {
    /// Where the problem was found.
    pub position: Position,
    /// What is wrong, for a human.
    pub message: String,
    /// `true` if parsing stopped here: the iterator yields nothing after a
    /// fatal error. `false` means only this record was skipped.
    pub fatal: bool,
}

impl ImportError {
    /// A bad record; parsing continues after it.
    pub fn new(position: Position, message: impl Into<String>) -> Self {
        ImportError {
            position,
            message: message.into(),
            fatal: false,
        }
    }

    /// A failure that ends parsing (read error, unrecoverable structure).
    pub fn fatal(position: Position, message: impl Into<String>) -> Self {
        ImportError {
            position,
            message: message.into(),
            fatal: true,
        }
    }
}

/// The import formats hashfed understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// hashfed's own JSON lines: `{"type","value","labels","external_id","op"}`.
    Jsonl,
    /// python-threatexchange `dataset -P --csv`:
    /// `signal_type,signal_str,collab,category,tags`.
    TeCsv,
    /// python-threatexchange `dataset -P` / `hash` output:
    /// `<signal_type> <signal_str> ['<collab>'] [<CATEGORY> [<tag>,<tag>]]`.
    TeLines,
    /// NCMEC Hash Sharing API v2 `entries` response (`<queryResult>`).
    NcmecXml,
    /// StopNCII.org FetchHashes response, or one hash record per line.
    StopnciiJson,
}

impl Format {
    /// Every format, in the order they are listed to users.
    pub const ALL: [Format; 5] = [
        Format::Jsonl,
        Format::TeCsv,
        Format::TeLines,
        Format::NcmecXml,
        Format::StopnciiJson,
    ];

    /// The name used on the command line (`jsonl`, `te-csv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::TeCsv => "te-csv",
            Format::TeLines => "te-lines",
            Format::NcmecXml => "ncmec-xml",
            Format::StopnciiJson => "stopncii-json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name that [`Format::from_str`] does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown import format {0:?} (expected one of: jsonl, te-csv, te-lines, ncmec-xml, stopncii-json)")]
pub struct UnknownFormat(
    /// The name that was given.
    pub String,
);

impl FromStr for Format {
    type Err = UnknownFormat;

    /// Parses the names [`Format::name`] gives, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// The stream of records a parser yields.
pub type ImportIter<'a> = Box<dyn Iterator<Item = Result<ImportItem, ImportError>> + 'a>;

/// Parses `input` as `format`, one record at a time.
///
/// The iterator yields `Ok` for every good record and `Err` for every bad one
/// (with [`ImportError::fatal`] `false`), and ends after yielding a fatal
/// error. Nothing beyond the current record is held in memory.
pub fn parse<'a, R: BufRead + 'a>(format: Format, input: R) -> ImportIter<'a> {
    match format {
        Format::Jsonl => Box::new(jsonl::parser(input)),
        Format::TeCsv => Box::new(te_csv::parser(input)),
        Format::TeLines => Box::new(te_lines::parser(input)),
        Format::NcmecXml => Box::new(ncmec_xml::NcmecXmlParser::new(input)),
        Format::StopnciiJson => Box::new(stopncii::StopnciiParser::new(input)),
    }
}

/// Guesses the format from the first bytes of the input (a few KiB is plenty)
/// and, when the content is inconclusive, the file name's extension.
///
/// Content wins over the extension: `<` means NCMEC XML; `{` or `[` with
/// `"hashRecords"` (anywhere in `first_bytes`) or `"hashValue"` /
/// `"signalType"` on the first line means StopNCII; any other `{` means our
/// JSON lines; a first line of five CSV fields whose first field is one word
/// means te-csv; `<word> <token>` means te-lines. Extensions: `.xml`, `.csv`,
/// `.jsonl`/`.ndjson`, `.json` (StopNCII), `.txt`/`.te` (te-lines). Returns
/// `None` when nothing fits.
pub fn detect(first_bytes: &[u8], file_name: Option<&str>) -> Option<Format> {
    let by_extension = file_name.and_then(extension_hint);
    let bytes = first_bytes.strip_prefix(UTF8_BOM).unwrap_or(first_bytes);
    let bytes = bytes.trim_ascii_start();
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    match bytes.first() {
        None => by_extension,
        Some(b'<') => Some(Format::NcmecXml),
        Some(b'{') | Some(b'[') => {
            if contains(bytes, b"\"hashRecords\"")
                || contains(first_line, b"\"hashValue\"")
                || contains(first_line, b"\"signalType\"")
            {
                Some(Format::StopnciiJson)
            } else if bytes.first() == Some(&b'[') {
                // Our JSON lines never start with an array; StopNCII records
                // may come as a bare array.
                Some(Format::StopnciiJson)
            } else if contains(first_line, b"\"type\"") || contains(first_line, b"\"value\"") {
                Some(Format::Jsonl)
            } else {
                match by_extension {
                    Some(f @ (Format::Jsonl | Format::StopnciiJson)) => Some(f),
                    _ => Some(Format::Jsonl),
                }
            }
        }
        Some(_) => detect_text(bytes).or(by_extension),
    }
}

/// The te-csv / te-lines half of [`detect`]: looks at the first line that is
/// neither blank nor a `#` comment.
fn detect_text(bytes: &[u8]) -> Option<Format> {
    // `first_bytes` may end in the middle of a UTF-8 sequence.
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => std::str::from_utf8(bytes.get(..e.valid_up_to())?).ok()?,
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    if let Ok(fields) = te_csv::split_csv_line(line) {
        if fields.len() == 5 && fields.first().is_some_and(|f| is_word(f.trim())) {
            return Some(Format::TeCsv);
        }
    }
    let mut tokens = line.split_whitespace();
    match (tokens.next(), tokens.next()) {
        (Some(word), Some(_)) if is_word(word) => Some(Format::TeLines),
        _ => None,
    }
}

fn extension_hint(file_name: &str) -> Option<Format> {
    let (_, ext) = file_name.rsplit_once('.')?;
    match ext.to_ascii_lowercase().as_str() {
        "xml" => Some(Format::NcmecXml),
        "csv" => Some(Format::TeCsv),
        "jsonl" | "ndjson" => Some(Format::Jsonl),
        "json" => Some(Format::StopnciiJson),
        "txt" | "te" => Some(Format::TeLines),
        _ => None,
    }
}

/// A signal type name as python-threatexchange writes them: `pdq`,
/// `video_md5`, `url_md5`, ...
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Appends `label` trimmed, unless that leaves it empty: the one label rule
/// all formats share.
pub(crate) fn push_label(labels: &mut Vec<String>, label: &str) {
    let label = label.trim();
    if !label.is_empty() {
        labels.push(label.to_string());
    }
}

/// Cuts `s` to at most `max` characters for quoting in an error message, so a
/// 1 MiB garbage field does not become a 1 MiB message.
pub(crate) fn snippet(s: &str, max: usize) -> String {
    let mut chars = s.chars();
    let cut: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{cut}...")
    } else {
        cut
    }
}

/// serde_json's message without its " at line 1 column 7" suffix, which is
/// relative to the record and would clash with our own position.
pub(crate) fn json_error_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    if e.line() > 0 {
        format!("invalid JSON (column {}): {msg}", e.column())
    } else {
        format!("invalid JSON: {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_display() {
        assert_eq!(
            Position::at_line(12, 3456).to_string(),
            "line 12 (byte 3456)"
        );
        let only_line = Position {
            line: Some(12),
            ..Position::default()
        };
        assert_eq!(only_line.to_string(), "line 12");
        let only_byte = Position {
            byte: Some(3456),
            ..Position::default()
        };
        assert_eq!(only_byte.to_string(), "byte 3456");
        let record = Position {
            record: Some(17),
            line: Some(1),
            byte: Some(3456),
        };
        assert_eq!(record.to_string(), "record 17 (line 1, byte 3456)");
        assert_eq!(Position::default().to_string(), "unknown position");
        let e = ImportError::new(Position::at_line(3, 10), "bad");
        assert_eq!(e.to_string(), "line 3 (byte 10): bad");
        assert!(!e.fatal);
        assert!(ImportError::fatal(Position::default(), "x").fatal);
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
            assert_eq!(f.to_string(), f.name());
        }
        assert_eq!("TE-CSV".parse::<Format>().unwrap(), Format::TeCsv);
        let err = "csv".parse::<Format>().unwrap_err();
        assert!(err.to_string().contains("te-csv"));
    }

    #[test]
    fn detect_by_content() {
        let xml = b"\xEF\xBB\xBF<?xml version=\"1.0\"?><queryResult/>";
        assert_eq!(detect(xml, None), Some(Format::NcmecXml));
        let ncii = br#"{"count":2,"nextSetTimestamp":1,"hashRecords":[{"#;
        assert_eq!(detect(ncii, None), Some(Format::StopnciiJson));
        let ncii_lines = br#"{"lastModtimestamp":1,"hashValue":"ab","signalType":"ImagePDQ"}"#;
        assert_eq!(detect(ncii_lines, None), Some(Format::StopnciiJson));
        assert_eq!(detect(b"[{}]", None), Some(Format::StopnciiJson));
        let ours = br#"{"type":"pdq","value":"ab"}"#;
        assert_eq!(detect(ours, Some("list.json")), Some(Format::Jsonl));
        assert_eq!(detect(b"{}", Some("x.json")), Some(Format::StopnciiJson));
        assert_eq!(detect(b"{}", None), Some(Format::Jsonl));
        let csv = b"signal_type,signal_str,collab,category,tags\r\npdq,ab,c,d,e\r\n";
        assert_eq!(detect(csv, None), Some(Format::TeCsv));
        assert_eq!(detect(b"pdq,ab,,,\n", None), Some(Format::TeCsv));
        let lines = b"# comment\n\npdq 3a5b 'Sample Signals' POSITIVE_CLASS a,b\n";
        assert_eq!(detect(lines, None), Some(Format::TeLines));
        // Commas in a te-lines tail do not make it CSV.
        let tricky = b"pdq 3a5b 'A, B' POSITIVE_CLASS a,b,c\n";
        assert_eq!(detect(tricky, None), Some(Format::TeLines));
        assert_eq!(detect(b"hello", None), None);
        assert_eq!(detect(b"\xff\xfe", None), None);
    }

    #[test]
    fn detect_by_extension() {
        assert_eq!(detect(b"", Some("a.XML")), Some(Format::NcmecXml));
        assert_eq!(detect(b"", Some("a.csv")), Some(Format::TeCsv));
        assert_eq!(detect(b"  \n", Some("a.jsonl")), Some(Format::Jsonl));
        assert_eq!(detect(b"", Some("a.json")), Some(Format::StopnciiJson));
        assert_eq!(detect(b"hello", Some("a.txt")), Some(Format::TeLines));
        assert_eq!(detect(b"", Some("noext")), None);
        assert_eq!(detect(b"", None), None);
        // Content beats the extension.
        assert_eq!(detect(b"<x/>", Some("a.csv")), Some(Format::NcmecXml));
    }

    #[test]
    fn parse_dispatches() {
        let input: &[u8] = b"pdq,ab,,,\n";
        let items: Vec<_> = parse(Format::TeCsv, input).collect();
        assert_eq!(items.len(), 1);
        assert!(items.iter().all(Result::is_ok));
        for f in Format::ALL {
            assert_eq!(parse(f, &b""[..]).count(), 0, "{f}");
        }
    }

    #[test]
    fn helpers() {
        let mut labels = Vec::new();
        push_label(&mut labels, "  a ");
        push_label(&mut labels, "   ");
        assert_eq!(labels, vec!["a"]);
        assert_eq!(snippet("abcdef", 3), "abc...");
        assert_eq!(snippet("ab", 3), "ab");
        let e = serde_json::from_str::<serde_json::Value>("{\"a\": tru}").unwrap_err();
        let m = json_error_message(&e);
        assert!(m.starts_with("invalid JSON (column"), "{m}");
        assert!(!m.contains("line 1"), "{m}");
    }

    proptest::proptest! {
        #[test]
        fn detect_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
            name in proptest::option::of("[a-z.]{0,8}"),
        ) {
            let _ = detect(&bytes, name.as_deref());
        }
    }
}
