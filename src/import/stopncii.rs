//! `stopncii-json`: StopNCII.org hash records.
//!
//! The FetchHashes response, as python-threatexchange reads it
//! (`threatexchange/exchanges/clients/stopncii/api.py`, samples in
//! `stopncii/tests/test_api.py`):
//!
//! ```text
//! {"count": 2, "nextSetTimestamp": 1625175071, "nextPageToken": "...",
//!  "hasMoreRecords": true,
//!  "hashRecords": [
//!    {"lastModtimestamp": 1625167804, "signalType": "ImagePDQ",
//!     "hashValue": "2afc...aa82", "hashStatus": "Received",
//!     "caseNumbers": {"27664732-76e1-...": "Received"},
//!     "hashRegions": ["UK"],
//!     "CSPFeedbacks": [{"source": "Facebook", "feedbackValue": "Blocked",
//!                       "tags": ["Nude"]}]}]}
//! ```
//!
//! `signalType` is one of `ImagePDQ`, `VideoMD5`, `VideoTMK`, `Text`, `URL`,
//! `Unknown`; we map the first four to python-threatexchange's signal names
//! (`pdq`, `video_md5`, `raw_text`, `url`; `exchanges/impl/stop_ncii_api.py`)
//! and lower-case anything else (`PDQ` becomes `pdq`), leaving the caller to
//! accept or reject it. `hashStatus` is `Received`, `Active`, `Unknown`
//! (imported) or `Withdrawn`, `Deleted` (client should delete:
//! [`ImportOp::RetractValue`]); any other value is a bad record, as it is for
//! python-threatexchange, whose enum rejects it. A missing status counts as
//! active. (python-threatexchange means to drop withdrawn hashes too, but its
//! `_get_delta_mapping` compares `hashValue`, not `hashStatus`, against the
//! statuses, so it never does; we go by `hashStatus`.) Labels: `stopncii` and `region:<r>` for each `hashRegions` entry.
//! Case numbers are *not* imported: they identify the person who submitted
//! the image, and labels travel to every peer the set is shared with.
//! Feedback and timestamps are not imported either.
//!
//! Accepted input: one response object (typically minified into one huge
//! line), several of them one after another (pages saved one per line), a
//! bare array of records, or one record object per line. Records are keyed
//! by type and value, not by id, so there is no external id.
//!
//! Why a hand-written scanner: the iterator must hand out records one at a
//! time, but serde drives parsing from the top (a `Visitor` over
//! `hashRecords` would need a thread or a buffer of every record to turn
//! into a pull-based iterator). So a small structural scanner walks the
//! outer object, finds each record's bytes (tracking strings and brackets
//! only, with capped memory and an explicit depth limit instead of
//! recursion), and serde_json parses each record on its own. That gives the
//! error policy we want: a record that is not valid JSON, or lacks
//! `hashValue`, is one non-fatal error; a broken *structure* inside a
//! response (unclosed string, mismatched bracket, truncated file) is fatal,
//! because the record boundaries after it are unknowable. For one record per
//! line, a broken structure is non-fatal: the scanner reports it and resumes
//! at the next line. Input that ends in the middle of a value is a truncated
//! file and always fatal.

use std::io::{self, BufRead};

use serde_json::{Map, Value};

use super::{
    json_error_message, snippet, ImportError, ImportItem, ImportOp, Position, RawSignal, UTF8_BOM,
};

/// Largest record kept, in bytes; real records are well under 1 KiB.
const MAX_RECORD_BYTES: usize = 1 << 20;

/// Longest object key kept.
const MAX_KEY_BYTES: usize = 4096;

/// Deepest nesting the scanner follows (serde_json itself stops at 128).
const MAX_DEPTH: usize = 128;

/// Streaming parser for [`super::Format::StopnciiJson`].
pub(crate) struct StopnciiParser<R> {
    src: Source<R>,
    state: State,
    /// The top-level object being read, in [`State::Object`] and while a
    /// response's `hashRecords` array is being read.
    obj: Option<Obj>,
    done: bool,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Between top-level values.
    Top,
    /// Inside a top-level object, between its members.
    Object,
    /// Inside an array of records: a response's `hashRecords` (`in_response`)
    /// or a top-level array.
    Records {
        in_response: bool,
        /// Records read so far.
        count: u64,
    },
}

/// A top-level object: a response, or a record on a line of its own.
struct Obj {
    position: Position,
    /// The object's bytes so far, in case it turns out to be a record.
    raw: Capture,
    /// It has a `hashRecords` key: a response, not a record.
    response: bool,
    /// No member read yet.
    first: bool,
}

type Item = Result<ImportItem, ImportError>;

impl<R: BufRead> StopnciiParser<R> {
    pub(crate) fn new(input: R) -> Self {
        StopnciiParser {
            src: Source {
                inner: input,
                offset: 0,
                line: 1,
                line_has_content: false,
            },
            state: State::Top,
            obj: None,
            done: false,
        }
    }

    fn top_step(&mut self) -> Result<Option<Item>, ScanError> {
        if self.src.offset == 0 {
            self.src.skip_bom()?;
        }
        self.src.skip_ws(None)?;
        let position = self.src.here();
        match self.src.peek()? {
            None => {
                self.done = true;
                Ok(None)
            }
            Some(b'{') => {
                self.src.bump(b'{');
                let mut raw = Capture::new(MAX_RECORD_BYTES);
                raw.push(b'{');
                self.obj = Some(Obj {
                    position,
                    raw,
                    response: false,
                    first: true,
                });
                self.state = State::Object;
                Ok(None)
            }
            Some(b'[') => {
                self.src.bump(b'[');
                self.state = State::Records {
                    in_response: false,
                    count: 0,
                };
                Ok(None)
            }
            Some(b) => Err(syntax(
                position,
                format!("expected '{{' or '[', found {}", describe(b)),
            )),
        }
    }

    /// Reads one member of the current top-level object, or its end.
    fn object_step(&mut self) -> Result<Option<Item>, ScanError> {
        let Some(obj) = self.obj.as_mut() else {
            self.state = State::Top;
            return Ok(None);
        };
        let src = &mut self.src;
        src.skip_ws(Some(&mut obj.raw))?;
        let here = src.here();
        let first = std::mem::replace(&mut obj.first, false);
        match src.peek()? {
            Some(b'}') => {
                src.bump(b'}');
                obj.raw.push(b'}');
                return Ok(self.finish_object());
            }
            Some(b'"') if first => {}
            Some(b',') if !first => {
                src.bump(b',');
                obj.raw.push(b',');
                src.skip_ws(Some(&mut obj.raw))?;
                if src.peek()? != Some(b'"') {
                    return Err(syntax(src.here(), "expected a key after ','"));
                }
            }
            None => return Err(truncated(here, "input ends inside an object; truncated?")),
            Some(b) if first => {
                return Err(syntax(
                    here,
                    format!("expected a key or '}}', found {}", describe(b)),
                ))
            }
            Some(b) => {
                return Err(syntax(
                    here,
                    format!("expected ',' or '}}', found {}", describe(b)),
                ))
            }
        }

        let key_at = src.here();
        let mut key = Capture::new(MAX_KEY_BYTES);
        src.scan_string(&mut key)?;
        if key.overflow {
            return Err(syntax(key_at, "object key is too long"));
        }
        obj.raw.extend(&key.buf);
        src.skip_ws(Some(&mut obj.raw))?;
        match src.peek()? {
            Some(b':') => {
                src.bump(b':');
                obj.raw.push(b':');
            }
            Some(b) => {
                return Err(syntax(
                    src.here(),
                    format!("expected ':' after a key, found {}", describe(b)),
                ))
            }
            None => return Err(truncated(src.here(), "input ends after a key; truncated?")),
        }
        src.skip_ws(Some(&mut obj.raw))?;

        if !key_is(&key.buf, "hashRecords") {
            src.scan_value(&mut obj.raw)?;
            return Ok(None);
        }
        // A response: its other members are not needed, and the records
        // stream one by one.
        obj.response = true;
        obj.raw = Capture::new(0);
        if src.peek()? == Some(b'[') {
            src.bump(b'[');
            self.state = State::Records {
                in_response: true,
                count: 0,
            };
            return Ok(None);
        }
        let at = src.here();
        let mut value = Capture::new(16);
        src.scan_value(&mut value)?;
        if value.buf == b"null" {
            Ok(None)
        } else {
            Ok(Some(Err(ImportError::new(
                at,
                "\"hashRecords\" is not an array",
            ))))
        }
    }

    /// The current top-level object has ended.
    fn finish_object(&mut self) -> Option<Item> {
        self.state = State::Top;
        let obj = self.obj.take()?;
        if obj.response {
            return None;
        }
        if obj.raw.overflow {
            return Some(Err(ImportError::new(
                obj.position,
                format!("record is larger than {MAX_RECORD_BYTES} bytes"),
            )));
        }
        Some(record(&obj.raw.buf, obj.position))
    }

    /// Reads one record of an array, or the array's end.
    fn records_step(&mut self, in_response: bool, count: u64) -> Result<Option<Item>, ScanError> {
        self.src.skip_ws(None)?;
        let here = self.src.here();
        match self.src.peek()? {
            None => {
                return Err(truncated(
                    here,
                    "input ends inside the record array; truncated?",
                ))
            }
            Some(b']') => {
                self.src.bump(b']');
                self.state = if in_response {
                    State::Object
                } else {
                    State::Top
                };
                return Ok(None);
            }
            Some(b',') if count > 0 => {
                self.src.bump(b',');
                self.src.skip_ws(None)?;
            }
            Some(b) if count > 0 => {
                return Err(syntax(
                    here,
                    format!("expected ',' or ']' between records, found {}", describe(b)),
                ))
            }
            Some(_) => {}
        }
        let count = count.saturating_add(1);
        let position = Position {
            record: Some(count),
            ..self.src.here()
        };
        let mut raw = Capture::new(MAX_RECORD_BYTES);
        self.src.scan_value(&mut raw)?;
        self.state = State::Records { in_response, count };
        if raw.overflow {
            return Ok(Some(Err(ImportError::new(
                position,
                format!("record is larger than {MAX_RECORD_BYTES} bytes"),
            ))));
        }
        Ok(Some(record(&raw.buf, position)))
    }

    /// Turns a scanning failure into the error to yield, and decides whether
    /// parsing can go on.
    ///
    /// Inside a response, or when the input ends mid-value (truncated), it
    /// cannot. A record on a line of its own that is broken is reported at
    /// its start, and parsing resumes at the next line, or right where the
    /// scanner stopped if the damage was a missing end and the next record
    /// already starts there.
    fn fail(&mut self, error: ScanError) -> ImportError {
        let (at, message, eof) = match error {
            ScanError::Io(e) => {
                self.done = true;
                return ImportError::fatal(self.src.here(), format!("read error: {e}"));
            }
            ScanError::Syntax {
                position,
                message,
                eof,
            } => (position, message, eof),
        };
        let in_response = match self.state {
            State::Top => false,
            State::Object => self.obj.as_ref().is_some_and(|o| o.response),
            State::Records { .. } => true,
        };
        if in_response {
            self.done = true;
            return ImportError::fatal(at, format!("malformed JSON: {message}"));
        }
        let start = self.obj.take().map_or(at, |o| o.position);
        self.state = State::Top;
        let message = if start == at {
            format!("malformed JSON: {message}")
        } else {
            format!("malformed JSON at {at}: {message}")
        };
        if eof {
            self.done = true;
            return ImportError::fatal(start, message);
        }
        let resync = match self.src.peek() {
            Ok(Some(b'{')) if !self.src.line_has_content => Ok(()),
            Ok(Some(_)) => self.src.skip_line(),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = resync {
            self.done = true;
            return ImportError::fatal(self.src.here(), format!("read error: {e}"));
        }
        ImportError::new(start, format!("{message}; skipped to the next line"))
    }
}

impl<R: BufRead> Iterator for StopnciiParser<R> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        while !self.done {
            let step = match self.state {
                State::Top => self.top_step(),
                State::Object => self.object_step(),
                State::Records { in_response, count } => self.records_step(in_response, count),
            };
            match step {
                Ok(Some(item)) => return Some(item),
                Ok(None) => {}
                Err(e) => return Some(Err(self.fail(e))),
            }
        }
        None
    }
}

/// Parses one record's bytes.
fn record(raw: &[u8], position: Position) -> Item {
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        let mut message = json_error_message(&e);
        if e.line() > 1 {
            message.push_str(&format!(" on line {} of the record", e.line()));
        }
        ImportError::new(position, message)
    })?;
    convert(value)
        .map(|op| ImportItem { position, op })
        .map_err(|message| ImportError::new(position, message))
}

/// One record of a FetchHashes answer, already parsed as JSON, to what it
/// asks for, by the same rules as a record read from a file (the live
/// exchange, `crate::exchange::stopncii`, reads its pages whole and takes
/// each record through here). The error says what is wrong, never the
/// record's values.
pub(crate) fn record_op(value: Value) -> Result<ImportOp, String> {
    convert(value)
}

/// A parsed record to an operation.
fn convert(value: Value) -> Result<ImportOp, String> {
    let Value::Object(obj) = value else {
        return Err("record is not a JSON object".to_string());
    };
    let value = required_str(&obj, "hashValue")?;
    let type_name = signal_type_name(&required_str(&obj, "signalType")?);
    let signal = RawSignal { type_name, value };
    let retract = match obj.get("hashStatus") {
        None | Some(Value::Null) => false,
        Some(Value::String(status)) => {
            let status = status.trim();
            let is = |s: &str| status.eq_ignore_ascii_case(s);
            if is("Active") || is("Received") || is("Unknown") {
                false
            } else if is("Withdrawn") || is("Deleted") {
                true
            } else {
                return Err(format!(
                    "unknown hashStatus {:?} (expected Received, Active, Unknown, Withdrawn or Deleted)",
                    snippet(status, 40)
                ));
            }
        }
        Some(_) => return Err("\"hashStatus\" must be a string".to_string()),
    };
    if retract {
        return Ok(ImportOp::RetractValue { signal });
    }
    let mut labels = vec!["stopncii".to_string()];
    if let Some(Value::Array(regions)) = obj.get("hashRegions") {
        for region in regions.iter().filter_map(Value::as_str).map(str::trim) {
            if !region.is_empty() {
                labels.push(format!("region:{region}"));
            }
        }
    }
    Ok(ImportOp::Add {
        signal,
        labels,
        external_id: None,
    })
}

/// StopNCII's signal type to python-threatexchange's name for it.
fn signal_type_name(signal_type: &str) -> String {
    let t = signal_type.trim();
    let known = [
        ("ImagePDQ", "pdq"),
        ("VideoMD5", "video_md5"),
        ("URL", "url"),
        ("Text", "raw_text"),
    ];
    known
        .iter()
        .find(|(stopncii, _)| t.eq_ignore_ascii_case(stopncii))
        .map_or_else(|| t.to_lowercase(), |(_, ours)| (*ours).to_string())
}

/// `obj[key]` as a non-empty trimmed string.
fn required_str(obj: &Map<String, Value>, key: &str) -> Result<String, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        Some(Value::String(_)) => Err(format!("empty \"{key}\"")),
        None | Some(Value::Null) => Err(format!("missing \"{key}\"")),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

/// Whether the raw JSON string `raw` (with quotes) decodes to `name`.
fn key_is(raw: &[u8], name: &str) -> bool {
    let plain = raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\""));
    if plain == Some(name.as_bytes()) {
        return true;
    }
    raw.contains(&b'\\') && serde_json::from_slice::<String>(raw).is_ok_and(|k| k == name)
}

/// A byte for an error message.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", char::from(b))
    } else {
        format!("byte 0x{b:02x}")
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_structural(b: u8) -> bool {
    matches!(b, b'{' | b'}' | b'[' | b']' | b',' | b':' | b'"')
}

enum ScanError {
    Io(io::Error),
    /// Malformed structure; `eof` if the input simply ended (truncated).
    Syntax {
        position: Position,
        message: String,
        eof: bool,
    },
}

impl From<io::Error> for ScanError {
    fn from(e: io::Error) -> Self {
        ScanError::Io(e)
    }
}

fn syntax(position: Position, message: impl Into<String>) -> ScanError {
    ScanError::Syntax {
        position,
        message: message.into(),
        eof: false,
    }
}

fn truncated(position: Position, message: impl Into<String>) -> ScanError {
    ScanError::Syntax {
        position,
        message: message.into(),
        eof: true,
    }
}

/// Bytes being collected, up to a limit; past it they are dropped and
/// `overflow` is set.
struct Capture {
    buf: Vec<u8>,
    limit: usize,
    overflow: bool,
}

impl Capture {
    fn new(limit: usize) -> Self {
        Capture {
            buf: Vec::new(),
            limit,
            overflow: false,
        }
    }

    fn push(&mut self, b: u8) {
        self.extend(&[b]);
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len().saturating_add(bytes.len()) > self.limit {
            self.overflow = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

/// The input, with position tracking and the scanning primitives.
struct Source<R> {
    inner: R,
    offset: u64,
    /// 1-based line of `offset`.
    line: u64,
    /// Something other than whitespace was consumed on the current line.
    line_has_content: bool,
}

impl<R: BufRead> Source<R> {
    fn here(&self) -> Position {
        Position {
            line: Some(self.line),
            byte: Some(self.offset),
            record: None,
        }
    }

    fn fill(&mut self) -> io::Result<&[u8]> {
        loop {
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }

    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(self.fill()?.first().copied())
    }

    /// Consumes `n` bytes that contain no newline.
    fn advance(&mut self, n: usize) {
        if n > 0 {
            self.inner.consume(n);
            self.offset = self.offset.saturating_add(n as u64);
            self.line_has_content = true;
        }
    }

    /// Consumes the byte `b` just peeked.
    fn bump(&mut self, b: u8) {
        if b == b'\n' {
            self.inner.consume(1);
            self.offset = self.offset.saturating_add(1);
            self.line = self.line.saturating_add(1);
            self.line_has_content = false;
        } else {
            self.advance(1);
        }
    }

    fn skip_bom(&mut self) -> io::Result<()> {
        if self.fill()?.starts_with(UTF8_BOM) {
            self.inner.consume(UTF8_BOM.len());
            self.offset = self.offset.saturating_add(UTF8_BOM.len() as u64);
        }
        Ok(())
    }

    /// Skips whitespace, copying it to `cap` if given.
    fn skip_ws(&mut self, mut cap: Option<&mut Capture>) -> io::Result<()> {
        loop {
            let (n, newlines, rest) = {
                let buf = self.fill()?;
                let n = buf.iter().take_while(|&&b| is_ws(b)).count();
                let ws = buf.get(..n).unwrap_or_default();
                if let Some(cap) = cap.as_deref_mut() {
                    cap.extend(ws);
                }
                let newlines = ws.iter().filter(|&&b| b == b'\n').count() as u64;
                (n, newlines, buf.len() > n)
            };
            if n == 0 {
                return Ok(());
            }
            self.inner.consume(n);
            self.offset = self.offset.saturating_add(n as u64);
            if newlines > 0 {
                self.line = self.line.saturating_add(newlines);
                self.line_has_content = false;
            }
            if rest {
                return Ok(());
            }
        }
    }

    /// Skips through the end of the current line.
    fn skip_line(&mut self) -> io::Result<()> {
        loop {
            let (n, found) = {
                let buf = self.fill()?;
                match buf.iter().position(|&b| b == b'\n') {
                    Some(i) => (i, true),
                    None => (buf.len(), false),
                }
            };
            if n == 0 && !found {
                return Ok(());
            }
            self.advance(n);
            if found {
                self.bump(b'\n');
                return Ok(());
            }
        }
    }

    /// Scans a string whose opening `"` is next, into `cap`.
    fn scan_string(&mut self, cap: &mut Capture) -> Result<(), ScanError> {
        self.bump(b'"');
        cap.push(b'"');
        loop {
            let (n, stop) = {
                let buf = self.fill()?;
                if buf.is_empty() {
                    return Err(truncated(
                        self.here(),
                        "input ends inside a string; truncated?",
                    ));
                }
                let stop = buf
                    .iter()
                    .position(|&b| b == b'"' || b == b'\\' || b == b'\n');
                let n = stop.unwrap_or(buf.len());
                cap.extend(buf.get(..n).unwrap_or_default());
                (n, stop.and_then(|i| buf.get(i).copied()))
            };
            self.advance(n);
            match stop {
                None => {}
                Some(b'"') => {
                    self.bump(b'"');
                    cap.push(b'"');
                    return Ok(());
                }
                Some(b'\\') => {
                    self.bump(b'\\');
                    cap.push(b'\\');
                    match self.peek()? {
                        None => {
                            return Err(truncated(
                                self.here(),
                                "input ends inside a string; truncated?",
                            ))
                        }
                        Some(b'\n') => {
                            return Err(syntax(self.here(), "line break inside a string"))
                        }
                        Some(b) => {
                            self.bump(b);
                            cap.push(b);
                        }
                    }
                }
                Some(_) => {
                    return Err(syntax(
                        self.here(),
                        "line break inside a string (unterminated string?)",
                    ))
                }
            }
        }
    }

    /// Scans a number or literal (`true`, `12.5e3`, ...; not validated here)
    /// whose first byte is next.
    fn scan_scalar(&mut self, cap: &mut Capture) -> io::Result<()> {
        loop {
            let (n, more) = {
                let buf = self.fill()?;
                let n = buf
                    .iter()
                    .take_while(|&&b| !is_ws(b) && !is_structural(b))
                    .count();
                cap.extend(buf.get(..n).unwrap_or_default());
                (n, n == buf.len() && n > 0)
            };
            self.advance(n);
            if !more {
                return Ok(());
            }
        }
    }

    /// Scans one JSON value into `cap`, checking only the structure (strings
    /// closed, brackets matched); serde_json checks the rest.
    fn scan_value(&mut self, cap: &mut Capture) -> Result<(), ScanError> {
        let mut closers: Vec<u8> = Vec::new();
        loop {
            self.skip_ws(Some(cap))?;
            let here = self.here();
            let Some(b) = self.peek()? else {
                return Err(truncated(here, "input ends inside a value; truncated?"));
            };
            match b {
                b'"' => self.scan_string(cap)?,
                b'{' | b'[' => {
                    if closers.len() >= MAX_DEPTH {
                        return Err(syntax(
                            here,
                            format!("nested deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    closers.push(if b == b'{' { b'}' } else { b']' });
                    self.bump(b);
                    cap.push(b);
                    continue;
                }
                b'}' | b']' => {
                    if closers.last() != Some(&b) {
                        return Err(syntax(here, format!("unexpected {}", describe(b))));
                    }
                    closers.pop();
                    self.bump(b);
                    cap.push(b);
                }
                b',' | b':' => {
                    if closers.is_empty() {
                        return Err(syntax(
                            here,
                            format!("expected a value, found {}", describe(b)),
                        ));
                    }
                    self.bump(b);
                    cap.push(b);
                    continue;
                }
                _ => self.scan_scalar(cap)?,
            }
            if closers.is_empty() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Vec<Item> {
        StopnciiParser::new(input).collect()
    }

    fn add(type_name: &str, value: &str, labels: &[&str]) -> ImportOp {
        ImportOp::Add {
            signal: RawSignal {
                type_name: type_name.into(),
                value: value.into(),
            },
            labels: labels.iter().map(|s| s.to_string()).collect(),
            external_id: None,
        }
    }

    fn retract(type_name: &str, value: &str) -> ImportOp {
        ImportOp::RetractValue {
            signal: RawSignal {
                type_name: type_name.into(),
                value: value.into(),
            },
        }
    }

    const H1: &str = "2afc4a5c09628a7961c14d436493bba66b89b831453baa1d556ba385554daa82";
    const H2: &str = "79e07de27d7295339435d63cd31cf35a7bfa29eb2885008500a588a5ea3ae75a";
    const H3: &str = "95d087d087f8f41cf00771c707f713c7675d07f8c618f00ef00f07f307e37087";

    fn response() -> String {
        format!(
            r#"{{"count":5,"nextSetTimestamp":1625175071,"nextPageToken":"W3siY29t\"x]}}","hasMoreRecords":true,"hashRecords":[{{"lastModtimestamp":1625167804,"hashValue":"{H1}","hashStatus":"Received","caseNumbers":{{"27664732-76e1-4a17-8099-455798e67022":"Received","a2696edf-1237-4eb8-a9c1-cd8ee6c055e5":"Received"}},"signalType":"ImagePDQ"}},{{"lastModtimestamp":1625167844,"signalType":"ImagePDQ","hashStatus":"Active","caseNumbers":{{}}}},{{"lastModtimestamp":1661426988,"hashValue":"{H3}","hashStatus":"Active","caseNumbers":{{"bce008ff":"Active"}},"signalType":"ImagePDQ","hashRegions":["UK"," Ünïcødé "],"CSPFeedbacks":[{{"source":"TikTok","feedbackValue":"Undefined","tags":["Tag-One"]}}]}},{{"hashValue":"x","signalType":"ImagePDQ","hashStatus":tru}},{{"lastModtimestamp":1625175071,"hashValue":"{H2}","hashStatus":"Withdrawn","caseNumbers":{{"cc592711":"Withdrawn"}},"signalType":"ImagePDQ"}},{{"hashValue":"d41d8cd98f00b204e9800998ecf8427e","signalType":"VideoMD5"}},{{"hashValue":"abc","signalType":"PDQ","hashStatus":"Closed"}}]}}"#
        )
    }

    #[test]
    fn parses_a_response() {
        let input = response();
        let got = run(input.as_bytes());
        assert_eq!(got.len(), 7, "{got:#?}");
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.op, add("pdq", H1, &["stopncii"]));
        let first_at = input.find("{\"lastModtimestamp\":1625167804").unwrap() as u64;
        assert_eq!(
            first.position,
            Position {
                record: Some(1),
                line: Some(1),
                byte: Some(first_at)
            }
        );
        let e = got[1].as_ref().unwrap_err();
        assert_eq!(e.position.record, Some(2));
        assert!(e.message.contains("missing \"hashValue\""), "{e}");
        assert!(!e.fatal);
        assert_eq!(
            got[2].as_ref().unwrap().op,
            add("pdq", H3, &["stopncii", "region:UK", "region:Ünïcødé"])
        );
        let e = got[3].as_ref().unwrap_err();
        assert_eq!(e.position.record, Some(4));
        assert!(e.message.contains("invalid JSON"), "{e}");
        assert_eq!(got[4].as_ref().unwrap().op, retract("pdq", H2));
        assert_eq!(got[4].as_ref().unwrap().position.record, Some(5));
        assert_eq!(
            got[5].as_ref().unwrap().op,
            add(
                "video_md5",
                "d41d8cd98f00b204e9800998ecf8427e",
                &["stopncii"]
            )
        );
        let e = got[6].as_ref().unwrap_err();
        assert!(e.message.contains("unknown hashStatus \"Closed\""), "{e}");
    }

    #[test]
    fn pretty_printed_with_bom_and_crlf() {
        let input = format!(
            "\u{feff}{{\r\n  \"count\": 2,\r\n  \"hashRecords\": [\r\n    {{\r\n      \"signalType\": \"ImagePDQ\",\r\n      \"hashValue\": \"{H1}\",\r\n      \"hashStatus\": \"Deleted\"\r\n    }},\r\n    {{\r\n      \"signalType\": \"URL\",\r\n      \"hashValue\": \"https://example.com/\"\r\n    }}\r\n  ],\r\n  \"hasMoreRecords\": false\r\n}}\r\n"
        );
        let got = run(input.as_bytes());
        assert_eq!(got.len(), 2, "{got:#?}");
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.op, retract("pdq", H1));
        assert_eq!(first.position.line, Some(4));
        assert_eq!(first.position.record, Some(1));
        let second = got[1].as_ref().unwrap();
        assert_eq!(second.op, add("url", "https://example.com/", &["stopncii"]));
        assert_eq!(second.position.line, Some(9));
    }

    #[test]
    fn pages_records_per_line_and_bare_arrays() {
        let input = format!(
            "{{\"hashRecords\":[{{\"signalType\":\"ImagePDQ\",\"hashValue\":\"{H1}\"}}],\"count\":1}}\n\
             {{\"count\":0,\"hashRecords\":[]}}\n\
             {{\"count\":0,\"hashRecords\":null}}\n\
             {{\"signalType\":\"ImagePDQ\",\"hashValue\":\"{H2}\",\"hashStatus\":\"Received\"}}\n\
             [{{\"signalType\":\"Text\",\"hashValue\":\"hi\"}}, {{\"signalType\":\"VideoTMK\",\"hashValue\":\"t\"}}]\n\
             {{}}\n"
        );
        let got = run(input.as_bytes());
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!(got[0].as_ref().unwrap().op, add("pdq", H1, &["stopncii"]));
        let line4 = got[1].as_ref().unwrap();
        assert_eq!(line4.op, add("pdq", H2, &["stopncii"]));
        assert_eq!(line4.position.line, Some(4));
        assert_eq!(line4.position.record, None);
        assert_eq!(
            got[2].as_ref().unwrap().op,
            add("raw_text", "hi", &["stopncii"])
        );
        assert_eq!(
            got[3].as_ref().unwrap().op,
            add("videotmk", "t", &["stopncii"])
        );
        let e = got[4].as_ref().unwrap_err();
        assert_eq!(e.position.line, Some(6));
        assert!(e.message.contains("missing \"hashValue\""));
    }

    #[test]
    fn broken_lines_are_skipped_in_records_per_line() {
        let good = |v: &str| format!("{{\"signalType\":\"ImagePDQ\",\"hashValue\":\"{v}\"}}");
        let input = [
            good("a1"),
            "{\"signalType\":\"ImagePDQ\",\"hashValue\":\"trunc".to_string(),
            good("a2"),
            "{\"signalType\":\"ImagePDQ\",\"hashValue\":\"nobrace\"".to_string(),
            good("a3"),
            "garbage here".to_string(),
            "{\"signalType\":\"ImagePDQ\" \"hashValue\":\"x\"}".to_string(),
            "{\"a\":[}".to_string(),
            good("a4"),
            "{\"signalType\":\"ImagePDQ\",\"hashValue\":\"last".to_string(),
        ]
        .join("\n");
        let got = run(input.as_bytes());
        let summary: Vec<(bool, u64)> = got
            .iter()
            .map(|r| match r {
                Ok(i) => (true, i.position.line.unwrap()),
                Err(e) => {
                    // Only the truncated last line ends parsing.
                    assert_eq!(e.fatal, e.position.line == Some(10), "{e}");
                    (false, e.position.line.unwrap())
                }
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (true, 1),
                (false, 2),
                (true, 3),
                (false, 4),
                (true, 5),
                (false, 6),
                (false, 7),
                (false, 8),
                (true, 9),
                (false, 10),
            ],
            "{got:#?}"
        );
        let nobrace = got[3].as_ref().unwrap_err();
        assert!(
            nobrace.message.contains("malformed JSON at line 5"),
            "{nobrace}"
        );
    }

    #[test]
    fn broken_response_structure_is_fatal() {
        let full = response();
        // Truncated at many points: whatever came before is yielded, the end
        // is one fatal error.
        for cut in [1, 30, 200, 400, 700, full.len() - 1] {
            let got = run(&full.as_bytes()[..cut]);
            let last = got.last().unwrap().as_ref().unwrap_err();
            assert!(last.fatal, "cut {cut}: {last}");
            for item in &got[..got.len() - 1] {
                assert!(item.as_ref().map_or_else(|e| !e.fatal, |_| true));
            }
        }
        let got =
            run(b"{\"hashRecords\":[{\"hashValue\":\"a\",\"signalType\":\"PDQ\"} {\"x\":1}]}");
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(got[1].as_ref().unwrap_err().fatal);
        let got = run(b"{\"hashRecords\":[{\"a\":]}]}");
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().fatal);
        let got = run(b"{\"hashRecords\":\"nope\",\"count\":1}");
        assert_eq!(got.len(), 1);
        assert!(got[0]
            .as_ref()
            .unwrap_err()
            .message
            .contains("not an array"));
    }

    #[test]
    fn empty_deep_and_odd_input() {
        assert!(run(b"").is_empty());
        assert!(run(b" \r\n\t").is_empty());
        assert!(run(b"\xEF\xBB\xBF").is_empty());
        let deep = format!(
            "{{\"hashRecords\":[{}{}]}}",
            "[".repeat(5000),
            "]".repeat(5000)
        );
        let got = run(deep.as_bytes());
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().fatal);
        let deep_line = format!(
            "{{\"a\":{}\n{{\"signalType\":\"PDQ\",\"hashValue\":\"ok\"}}",
            "[".repeat(5000)
        );
        let got = run(deep_line.as_bytes());
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[1].is_ok());
        let escaped_key = br#"{"hash\u0052ecords":[{"signalType":"PDQ","hashValue":"k"}]}"#;
        assert_eq!(run(escaped_key).len(), 1);
        assert!(run(escaped_key)[0].is_ok());
        let got = run(b"[1, \"x\", null]");
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|r| r.as_ref().is_err_and(|e| !e.fatal)));
    }

    #[test]
    fn big_records_are_refused_not_buffered() {
        let big = format!(
            "{{\"hashRecords\":[{{\"signalType\":\"PDQ\",\"hashValue\":\"{}\"}},{{\"signalType\":\"PDQ\",\"hashValue\":\"ok\"}}]}}",
            "a".repeat(MAX_RECORD_BYTES + 10)
        );
        let got = run(big.as_bytes());
        assert_eq!(got.len(), 2);
        assert!(got[0].as_ref().unwrap_err().message.contains("larger than"));
        assert!(got[1].is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut fatal = 0;
            for item in StopnciiParser::new(bytes.as_slice()) {
                if matches!(item, Err(ImportError { fatal: true, .. })) {
                    fatal += 1;
                }
            }
            proptest::prop_assert!(fatal <= 1);
        }

        #[test]
        fn json_fragments_never_panic(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"hashRecords\"", "\"hashValue\"", "\"signalType\"",
                "\"hashStatus\"", "\"Withdrawn\"", "\"ImagePDQ\"", "\"ab\"", "\"", "\\", "null", "1",
                "tru", " ", "\n", "\r\n", "\u{feff}", "\"caseNumbers\"", "\"hashRegions\"",
            ]),
            0..64,
        )) {
            let input = parts.concat();
            let mut fatal = 0;
            for item in StopnciiParser::new(input.as_bytes()) {
                if matches!(item, Err(ImportError { fatal: true, .. })) {
                    fatal += 1;
                }
            }
            proptest::prop_assert!(fatal <= 1);
        }
    }
}
