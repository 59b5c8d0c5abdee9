//! `ncmec-xml`: the NCMEC Hash Sharing API v2 `entries` response.
//!
//! The shape, as python-threatexchange reads it
//! (`threatexchange/exchanges/clients/ncmec/hash_api.py`, samples in
//! `ncmec/tests/data.py`):
//!
//! ```text
//! <queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
//!   <images count="2" maxTimestamp="2017-10-24T15:10:00Z">
//!     <image>
//!       <member id="42">Example Member</member>
//!       <timestamp>2017-10-24T15:00:00Z</timestamp>
//!       <id>image1</id>
//!       <classification>A1</classification>
//!       <fingerprints>
//!         <md5>...</md5> <sha1>...</sha1> <pdna>...</pdna> <pdq>...</pdq>
//!         <tmk-pdqf rel="self" href="/v2/entries/1/fingerprints/TMK_PDQF"/>
//!       </fingerprints>
//!       <feedback>...</feedback>
//!     </image>
//!     <deletedImage> <member id="43">...</member> <id>image4</id> ... </deletedImage>
//!   </images>
//!   <videos ...> <video>...</video> <deletedVideo>...</deletedVideo> </videos>
//!   <paging><next>/v2/entries?...</next></paging>
//! </queryResult>
//! ```
//!
//! Each fingerprint of an `<image>`/`<video>` becomes one
//! [`ImportOp::Add`] whose type name is the element's name as NCMEC wrote it
//! (`md5`, `sha1`, `pdna`, `pdq`, `netclean`, `videntifier`, ...; new kinds
//! pass through for the caller to accept or reject). Fingerprints without
//! text are skipped: large ones (`tmk-pdqf`, `videntifier`) come as links to
//! be fetched separately, not as values. Labels: `classification:<A1|A2|B1|B2>`
//! when present, and `media:image` or `media:video`. Feedback and
//! timestamps are ignored; the paging link (`<paging><next>`) and the root
//! element's name are kept for the live client (`crate::exchange::ncmec`,
//! through [`NcmecXmlParser::next_link`] and [`NcmecXmlParser::root`]), which
//! also takes each skipped entry's external id
//! ([`NcmecXmlParser::next_with_id`]).
//!
//! Why deletions are by id: a `<deletedImage>`/`<deletedVideo>` tombstone
//! carries only the member and the entry id, not the hashes, because NCMEC
//! deletes entries, not hashes. So every `Add` carries
//! `external_id = "ncmec:<member id>:<entry id>"` (entry ids are only unique
//! per member: python-threatexchange keys entries by `"{member_id}-{id}"`),
//! or `"ncmec:<entry id>"` when there is no member, and a tombstone becomes
//! [`ImportOp::RetractExternal`] with the same id. A later `<image>` with the
//! same ids is an update that replaces the whole entry (python-threatexchange
//! keeps only the newest version), so the importer should drop hashes of
//! that external id the update no longer lists.
//!
//! Parsing streams with quick-xml; namespaces are ignored by matching local
//! names, so a default namespace or any prefix works, and the root may be
//! `<queryResult>` or just `<images>`/`<videos>`. An entry that is missing
//! its id, has no fingerprint, or has bad text is one non-fatal error at the
//! entry's byte offset; XML that is not well-formed, or ends inside an
//! element (truncated download), is fatal, since nothing after it can be
//! trusted.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::{self, BufRead, Read};

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::{snippet, ImportError, ImportItem, ImportOp, Position, RawSignal};

/// Longest text kept for one id, classification or fingerprint. Real values
/// are under 1 KiB (PhotoDNA is 144 bytes base64-ish, ~200 characters).
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// Most fingerprints kept for one entry; NCMEC has nine kinds.
const MAX_FINGERPRINTS: usize = 256;

/// Event buffers larger than this are freed after use rather than kept.
const KEEP_BUFFER_BYTES: usize = 1 << 20;

/// One parsed result and the external id of the entry it came from (if the
/// entry had an id).
pub(crate) type WithId = (Result<ImportItem, ImportError>, Option<String>);

/// Streaming parser for [`super::Format::NcmecXml`].
pub(crate) struct NcmecXmlParser<R: BufRead> {
    reader: Reader<LineCounter<R>>,
    buf: Vec<u8>,
    /// Results of the last finished entry, waiting to be yielded.
    pending: VecDeque<WithId>,
    /// Depth of the element being read; 0 outside the root.
    depth: u64,
    entry: Option<Entry>,
    done: bool,
    /// The root element's local name, once seen.
    root: Option<String>,
    /// Depth of the `<paging>` element being read, if any.
    paging_depth: Option<u64>,
    /// The `<next>` link's text being read (at this depth), then kept.
    next_capture: Option<Capture>,
    next: Option<String>,
    /// What is wrong with the paging part (more than one `<next>`, bad
    /// text): the page as a whole cannot be trusted.
    paging_problem: Option<String>,
}

impl<R: BufRead> NcmecXmlParser<R> {
    pub(crate) fn new(input: R) -> Self {
        NcmecXmlParser {
            reader: Reader::from_reader(LineCounter {
                inner: input,
                newlines: 0,
            }),
            buf: Vec::new(),
            pending: VecDeque::new(),
            depth: 0,
            entry: None,
            done: false,
            root: None,
            paging_depth: None,
            next_capture: None,
            next: None,
            paging_problem: None,
        }
    }

    /// The next result with its entry's external id (`ncmec:<member>:<id>`)
    /// when the entry had an id, so a skipped entry can be named.
    pub(crate) fn next_with_id(&mut self) -> Option<WithId> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            self.step();
        }
    }

    /// The root element's local name (`queryResult`, ...), once read.
    pub(crate) fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    /// The text of `<paging><next>`, entities resolved and trimmed, once
    /// read (`None` if the page has none, or an empty one).
    pub(crate) fn next_link(&self) -> Option<&str> {
        self.next.as_deref().filter(|n| !n.is_empty())
    }

    /// Why the paging part cannot be trusted, if it cannot.
    pub(crate) fn paging_problem(&self) -> Option<&str> {
        self.paging_problem.as_deref()
    }

    /// Where the reader is: the start of the next event.
    fn here(&self) -> Position {
        Position {
            line: Some(self.reader.get_ref().newlines.saturating_add(1)),
            byte: Some(self.reader.buffer_position()),
            record: None,
        }
    }

    /// Reads one event and acts on it.
    fn step(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let position = self.here();
        match self.reader.read_event_into(&mut buf) {
            Err(e) => {
                let at = Position {
                    byte: Some(self.reader.error_position()),
                    ..self.here()
                };
                self.fail(at, format!("malformed XML: {e}"));
            }
            Ok(Event::Start(e)) => {
                self.depth = self.depth.saturating_add(1);
                self.start(&e, position);
            }
            Ok(Event::Empty(e)) => {
                self.depth = self.depth.saturating_add(1);
                self.start(&e, position);
                self.end();
                self.depth = self.depth.saturating_sub(1);
            }
            Ok(Event::End(_)) => {
                self.end();
                self.depth = self.depth.saturating_sub(1);
            }
            Ok(Event::Text(t)) => self.text(&t, position),
            Ok(Event::CData(t)) => self.text(&t, position),
            Ok(Event::GeneralRef(r)) => self.reference(&r, position),
            Ok(Event::Eof) => {
                if self.depth > 0 {
                    self.fail(
                        position,
                        format!(
                            "input ends inside {} open element(s); truncated?",
                            self.depth
                        ),
                    );
                }
                self.done = true;
            }
            // Declarations, comments, processing instructions, DOCTYPE.
            Ok(_) => {}
        }
        if buf.capacity() <= KEEP_BUFFER_BYTES {
            self.buf = buf;
        }
    }

    /// Ends parsing with a fatal error; the entry being read is dropped.
    fn fail(&mut self, position: Position, message: String) {
        self.pending
            .push_back((Err(ImportError::fatal(position, message)), None));
        self.entry = None;
        self.done = true;
    }

    fn start(&mut self, e: &BytesStart<'_>, position: Position) {
        let depth = self.depth;
        let local = e.local_name();
        let name = local.as_ref();
        let Some(entry) = &mut self.entry else {
            if depth == 1 && self.root.is_none() {
                self.root = Some(String::from_utf8_lossy(name).into_owned());
            }
            if let Some((media, deleted)) = entry_kind(name) {
                self.entry = Some(Entry::new(media, deleted, depth, position));
            } else if name.eq_ignore_ascii_case(b"paging") && self.paging_depth.is_none() {
                self.paging_depth = Some(depth);
            } else if name.eq_ignore_ascii_case(b"next")
                && self.paging_depth == depth.checked_sub(1)
            {
                if self.next.is_some() || self.next_capture.is_some() {
                    self.paging_problem
                        .get_or_insert_with(|| "more than one <next>".into());
                } else {
                    self.next_capture = Some(Capture::new(Target::Id, depth));
                }
            }
            return;
        };
        let rel = depth.saturating_sub(entry.depth);
        if rel == 1 {
            if name == b"id" {
                if entry.seen_id {
                    entry.problem("more than one <id>");
                }
                entry.seen_id = true;
                entry.capture = Some(Capture::new(Target::Id, depth));
            } else if name == b"classification" {
                if entry.classification.is_none() {
                    entry.capture = Some(Capture::new(Target::Classification, depth));
                }
            } else if name == b"member" {
                if entry.seen_member {
                    entry.problem("more than one <member>");
                }
                entry.seen_member = true;
                match member_id(e) {
                    Ok(id) => entry.member = id,
                    Err(message) => entry.problem(message),
                }
            } else if name == b"fingerprints" {
                entry.in_fingerprints = true;
            }
        } else if rel == 2 && entry.in_fingerprints {
            match std::str::from_utf8(name) {
                Ok(type_name) => {
                    entry.capture = Some(Capture::new(
                        Target::Fingerprint(type_name.to_string(), position),
                        depth,
                    ));
                }
                Err(_) => entry.problem("fingerprint element name is not UTF-8"),
            }
        }
    }

    fn end(&mut self) {
        let depth = self.depth;
        let Some(entry) = &mut self.entry else {
            if self.next_capture.as_ref().is_some_and(|c| c.depth == depth) {
                if let Some(capture) = self.next_capture.take() {
                    self.next = Some(capture.text.trim().to_string());
                }
            }
            if self.paging_depth == Some(depth) {
                self.paging_depth = None;
            }
            return;
        };
        if entry.capture.as_ref().is_some_and(|c| c.depth == depth) {
            if let Some(capture) = entry.capture.take() {
                entry.finish_capture(capture);
            }
        }
        if depth == entry.depth.saturating_add(1) {
            entry.in_fingerprints = false;
        }
        if depth == entry.depth {
            if let Some(entry) = self.entry.take() {
                entry.finish(&mut self.pending);
            }
        }
    }

    fn text(&mut self, raw: &[u8], position: Position) {
        if self.depth == 0 && raw.trim_ascii().is_empty() {
            return;
        }
        let text = std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| "text is not valid UTF-8".to_string());
        self.capture(text, position);
    }

    fn reference(&mut self, r: &BytesRef<'_>, position: Position) {
        let resolved = match r.resolve_char_ref() {
            Ok(Some(c)) => Ok(Cow::Owned(c.to_string())),
            Ok(None) => {
                let name = String::from_utf8_lossy(r);
                resolve_predefined_entity(&name)
                    .map(Cow::Borrowed)
                    .ok_or_else(|| format!("unknown entity &{};", snippet(&name, 40)))
            }
            Err(e) => Err(format!("bad character reference: {e}")),
        };
        self.capture(resolved, position);
    }

    /// Appends character data (text or a resolved reference) to the value
    /// being captured, if any; outside the root element it is an error.
    fn capture(&mut self, text: Result<Cow<'_, str>, String>, position: Position) {
        if self.depth == 0 {
            self.fail(
                position,
                "text outside the root element; not XML?".to_string(),
            );
            return;
        }
        let depth = self.depth;
        let Some(entry) = &mut self.entry else {
            if let Some(capture) = self.next_capture.as_mut().filter(|c| c.depth == depth) {
                if let Err(message) = text.and_then(|t| capture.push(&t)) {
                    self.paging_problem
                        .get_or_insert_with(|| format!("<next>: {message}"));
                }
            }
            return;
        };
        let Some(capture) = entry.capture.as_mut().filter(|c| c.depth == depth) else {
            return;
        };
        if let Err(message) = text.and_then(|t| capture.push(&t)) {
            entry.problem(message);
        }
    }
}

impl<R: BufRead> Iterator for NcmecXmlParser<R> {
    type Item = Result<ImportItem, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_id().map(|(item, _)| item)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Media {
    Image,
    Video,
}

/// `<image>`, `<video>`, `<deletedImage>`, `<deletedVideo>` (any case, as
/// python-threatexchange lower-cases tags before matching).
fn entry_kind(local_name: &[u8]) -> Option<(Media, bool)> {
    let is = |s: &[u8]| local_name.eq_ignore_ascii_case(s);
    if is(b"image") {
        Some((Media::Image, false))
    } else if is(b"video") {
        Some((Media::Video, false))
    } else if is(b"deletedImage") {
        Some((Media::Image, true))
    } else if is(b"deletedVideo") {
        Some((Media::Video, true))
    } else {
        None
    }
}

/// The `id` attribute of `<member id="42">`, trimmed; `None` if absent or
/// empty.
fn member_id(e: &BytesStart<'_>) -> Result<Option<String>, String> {
    for attr in e.attributes() {
        let attr = attr.map_err(|e| format!("bad attribute on <member>: {e}"))?;
        if attr.key.local_name().as_ref() == b"id" {
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| format!("bad member id: {e}"))?;
            let value = value.trim();
            return Ok((!value.is_empty()).then(|| value.to_string()));
        }
    }
    Ok(None)
}

/// What a captured text belongs to.
enum Target {
    Id,
    Classification,
    /// A fingerprint: its element name and position.
    Fingerprint(String, Position),
}

/// Text being collected for one element.
struct Capture {
    target: Target,
    /// Depth of the element whose direct text this is.
    depth: u64,
    text: String,
}

impl Capture {
    fn new(target: Target, depth: u64) -> Self {
        Capture {
            target,
            depth,
            text: String::new(),
        }
    }

    fn push(&mut self, s: &str) -> Result<(), String> {
        if self.text.len().saturating_add(s.len()) > MAX_TEXT_BYTES {
            return Err(format!(
                "element text is longer than {MAX_TEXT_BYTES} bytes"
            ));
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// One `<image>`/`<video>`/`<deleted...>` being read.
struct Entry {
    media: Media,
    deleted: bool,
    /// Depth of the entry element itself.
    depth: u64,
    position: Position,
    id: Option<String>,
    member: Option<String>,
    classification: Option<String>,
    /// (type name, value, position) in document order.
    fingerprints: Vec<(String, String, Position)>,
    /// Names of fingerprints without a value (large ones come as links).
    linked: Vec<String>,
    in_fingerprints: bool,
    capture: Option<Capture>,
    seen_id: bool,
    seen_member: bool,
    /// The first thing found wrong; the entry is then reported, not imported.
    first_problem: Option<String>,
}

impl Entry {
    fn new(media: Media, deleted: bool, depth: u64, position: Position) -> Self {
        Entry {
            media,
            deleted,
            depth,
            position,
            id: None,
            member: None,
            classification: None,
            fingerprints: Vec::new(),
            linked: Vec::new(),
            in_fingerprints: false,
            capture: None,
            seen_id: false,
            seen_member: false,
            first_problem: None,
        }
    }

    fn problem(&mut self, message: impl Into<String>) {
        if self.first_problem.is_none() {
            self.first_problem = Some(message.into());
        }
    }

    fn finish_capture(&mut self, capture: Capture) {
        let text = capture.text.trim();
        if text.is_empty() {
            if let Target::Fingerprint(type_name, _) = capture.target {
                if self.linked.len() < MAX_FINGERPRINTS {
                    self.linked.push(snippet(&type_name, 40));
                }
            }
            return;
        }
        match capture.target {
            Target::Id => self.id = Some(text.to_string()),
            Target::Classification => self.classification = Some(text.to_string()),
            Target::Fingerprint(type_name, position) => {
                if self.fingerprints.len() >= MAX_FINGERPRINTS {
                    self.problem(format!("more than {MAX_FINGERPRINTS} fingerprints"));
                } else {
                    self.fingerprints
                        .push((type_name, text.to_string(), position));
                }
            }
        }
    }

    /// Queues this entry's items, or one error saying why it was skipped.
    fn finish(self, out: &mut VecDeque<WithId>) {
        let kind = match (self.deleted, self.media) {
            (false, Media::Image) => "image",
            (false, Media::Video) => "video",
            (true, Media::Image) => "deleted image",
            (true, Media::Video) => "deleted video",
        };
        let name = match &self.id {
            Some(id) => format!("{kind} entry {:?}", snippet(id, 60)),
            None => format!("{kind} entry"),
        };
        let external_id = self.id.as_ref().map(|id| match &self.member {
            Some(member) => format!("ncmec:{member}:{id}"),
            None => format!("ncmec:{id}"),
        });
        let error = |message: String| {
            (
                Err(ImportError::new(self.position, message)),
                external_id.clone(),
            )
        };
        if let Some(problem) = &self.first_problem {
            out.push_back(error(format!("{name}: {problem}")));
            return;
        }
        let Some(external_id) = external_id.clone() else {
            out.push_back(error(format!("{name} has no <id>")));
            return;
        };
        if self.deleted {
            out.push_back((
                Ok(ImportItem {
                    position: self.position,
                    op: ImportOp::RetractExternal {
                        external_id: external_id.clone(),
                    },
                }),
                Some(external_id),
            ));
            return;
        }
        if self.fingerprints.is_empty() {
            let message = if self.linked.is_empty() {
                format!("{name} has no fingerprints")
            } else {
                format!(
                    "{name} has no fingerprints with a value (only links: {})",
                    self.linked.join(", ")
                )
            };
            out.push_back(error(message));
            return;
        }
        let mut labels = Vec::with_capacity(2);
        if let Some(classification) = &self.classification {
            labels.push(format!("classification:{classification}"));
        }
        labels.push(
            match self.media {
                Media::Image => "media:image",
                Media::Video => "media:video",
            }
            .to_string(),
        );
        for (type_name, value, position) in self.fingerprints {
            out.push_back((
                Ok(ImportItem {
                    position,
                    op: ImportOp::Add {
                        signal: RawSignal { type_name, value },
                        labels: labels.clone(),
                        external_id: Some(external_id.clone()),
                    },
                }),
                Some(external_id.clone()),
            ));
        }
    }
}

/// Counts the newlines quick-xml consumes, so positions can carry a line
/// number as well as the byte offset quick-xml tracks.
///
/// quick-xml reads only through `fill_buf`/`consume`; `consume` looks at the
/// bytes it is about to drop by calling `fill_buf` again, which returns the
/// already-buffered data without I/O when `amt > 0`. If that ever failed,
/// only the line numbers would be off.
struct LineCounter<R> {
    inner: R,
    newlines: u64,
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        self.newlines = self
            .newlines
            .saturating_add(count_newlines(out.get(..n).unwrap_or_default()));
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if amt > 0 {
            if let Ok(buf) = self.inner.fill_buf() {
                let n = count_newlines(buf.get(..amt).unwrap_or(buf));
                self.newlines = self.newlines.saturating_add(n);
            }
        }
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Vec<Result<ImportItem, ImportError>> {
        NcmecXmlParser::new(input).collect()
    }

    fn add(type_name: &str, value: &str, labels: &[&str], external_id: &str) -> ImportOp {
        ImportOp::Add {
            signal: RawSignal {
                type_name: type_name.into(),
                value: value.into(),
            },
            labels: labels.iter().map(|s| s.to_string()).collect(),
            external_id: Some(external_id.into()),
        }
    }

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
    <images count="3" maxTimestamp="2017-10-24T15:10:00Z">
        <image>
            <member id="42">Example Member</member>
            <timestamp>2017-10-24T15:00:00Z</timestamp>
            <id>image1</id>
            <classification>A1</classification>
            <fingerprints>
                <md5>a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1</md5>
                <sha1>
                    a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1
                </sha1>
                <pdq>f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22</pdq>
            </fingerprints>
            <feedback lastUpdateTimestamp="2023-06-01T12:48:14Z">
                <affirmativeFeedback type="Md5" lastUpdateTimestamp="2023-06-01T12:48:14Z">
                    <members timestamp="2023-06-01T12:48:14Z">
                        <member id="99">Someone Else</member>
                    </members>
                </affirmativeFeedback>
            </feedback>
        </image>
        <image>
            <member id="42">Example Member</member>
            <id>image2</id>
            <fingerprints>
                <tmk-pdqf rel="self" href="/v2/entries/1/fingerprints/TMK_PDQF"/>
            </fingerprints>
        </image>
        <deletedImage>
            <member id="43">Example Member2</member>
            <id>image4</id>
            <timestamp>2017-10-24T15:10:00Z</timestamp>
        </deletedImage>
    </images>
    <videos count="2" maxTimestamp="2017-10-24T15:20:00Z">
        <video>
            <member id="42">Example Member</member>
            <timestamp>2017-10-24T15:00:00Z</timestamp>
            <id>vid&#x65;o1</id>
            <classification>B2</classification>
            <fingerprints>
                <md5><![CDATA[b1b1b1b1b1b1b1b1]]>b1b1b1b1b1b1b1b1</md5>
                <tmk-pdqf rel="self" href="/v2/entries/1/fingerprints/TMK_PDQF"/>
                <videntifier rel="self" href="/v2/entries/1/fingerprints/VIDENTIFIER"/>
            </fingerprints>
        </video>
        <deletedVideo>
            <member id="42">Example Member</member>
            <id>video4</id>
        </deletedVideo>
    </videos>
    <paging>
        <next>/v2/entries?from=2017-10-20T00%3A00%3A00.000Z&amp;start=2001&amp;size=1000&amp;max=3000</next>
    </paging>
</queryResult>
"#;

    #[test]
    fn parses_entries_response() {
        let got = run(SAMPLE.as_bytes());
        assert_eq!(got.len(), 7, "{got:#?}");
        let image1 = "ncmec:42:image1";
        let ok: Vec<&ImportItem> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(
            ok[0].op,
            add(
                "md5",
                "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                &["classification:A1", "media:image"],
                image1
            )
        );
        let md5_at = SAMPLE.find("<md5>").unwrap() as u64;
        assert_eq!(ok[0].position.byte, Some(md5_at));
        assert_eq!(ok[0].position.line, Some(10));
        assert_eq!(
            ok[1].op,
            add(
                "sha1",
                "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1",
                &["classification:A1", "media:image"],
                image1
            )
        );
        assert!(matches!(&ok[2].op, ImportOp::Add { signal, .. } if signal.type_name == "pdq"));
        // image2 only has a link-style fingerprint: reported, not imported.
        let e = got[3].as_ref().unwrap_err();
        assert!(!e.fatal);
        assert!(
            e.message
                .contains("image entry \"image2\" has no fingerprints"),
            "{e}"
        );
        let image2_at = SAMPLE.find("<image>\n            <member id=\"42\">Example Member</member>\n            <id>image2").unwrap() as u64;
        assert_eq!(e.position.byte, Some(image2_at));
        assert_eq!(e.position.line, Some(24));
        assert_eq!(
            ok[3].op,
            ImportOp::RetractExternal {
                external_id: "ncmec:43:image4".into()
            }
        );
        assert_eq!(
            ok[4].op,
            add(
                "md5",
                "b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1b1",
                &["classification:B2", "media:video"],
                "ncmec:42:video1"
            )
        );
        assert_eq!(
            ok[5].op,
            ImportOp::RetractExternal {
                external_id: "ncmec:42:video4".into()
            }
        );
    }

    #[test]
    fn keeps_root_next_link_and_ids() {
        let mut parser = NcmecXmlParser::new(SAMPLE.as_bytes());
        let mut got = Vec::new();
        while let Some(item) = parser.next_with_id() {
            got.push(item);
        }
        assert_eq!(got.len(), 7);
        assert_eq!(got[0].1.as_deref(), Some("ncmec:42:image1"));
        // The skipped entry is named by its id, and says why.
        assert!(got[3].0.is_err());
        assert_eq!(got[3].1.as_deref(), Some("ncmec:42:image2"));
        let why = got[3].0.as_ref().unwrap_err().message.clone();
        assert!(why.contains("only links: tmk-pdqf"), "{why}");
        assert_eq!(got[6].1.as_deref(), Some("ncmec:42:video4"));
        assert_eq!(parser.root(), Some("queryResult"));
        assert_eq!(
            parser.next_link(),
            Some("/v2/entries?from=2017-10-20T00%3A00%3A00.000Z&start=2001&size=1000&max=3000")
        );
        assert_eq!(parser.paging_problem(), None);

        let last = br#"<p:queryResult xmlns:p="urn:x"><p:images count="0"/><p:paging><p:next> </p:next></p:paging></p:queryResult>"#;
        let mut parser = NcmecXmlParser::new(&last[..]);
        assert!(parser.next_with_id().is_none());
        assert_eq!(parser.root(), Some("queryResult"));
        assert_eq!(parser.next_link(), None);

        let two = b"<queryResult><paging><next>/a</next><next>/b</next></paging></queryResult>";
        let mut parser = NcmecXmlParser::new(&two[..]);
        assert!(parser.next_with_id().is_none());
        assert_eq!(parser.paging_problem(), Some("more than one <next>"));

        // A <next> inside an entry is not the page's.
        let inner = b"<queryResult><images><image><id>1</id><next>/x</next><fingerprints><md5>aa</md5></fingerprints></image></images></queryResult>";
        let mut parser = NcmecXmlParser::new(&inner[..]);
        while parser.next_with_id().is_some() {}
        assert_eq!(parser.next_link(), None);
        let html = b"<html><body>Log in</body></html>";
        let mut parser = NcmecXmlParser::new(&html[..]);
        assert!(parser.next_with_id().is_none());
        assert_eq!(parser.root(), Some("html"));
    }

    #[test]
    fn prefixes_bare_roots_bom_and_crlf() {
        let input = "\u{feff}<?xml version=\"1.0\"?>\r\n<n:images xmlns:n=\"urn:x\">\r\n<n:image><n:id>7</n:id><n:fingerprints><n:pdna>AbC=</n:pdna></n:fingerprints></n:image>\r\n<n:Image><n:member/><n:id> 8 </n:id><n:fingerprints><n:md5>aa</n:md5></n:fingerprints></n:Image>\r\n</n:images>";
        let got = run(input.as_bytes());
        assert_eq!(got.len(), 2, "{got:#?}");
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.op, add("pdna", "AbC=", &["media:image"], "ncmec:7"));
        assert_eq!(first.position.line, Some(3));
        let second = got[1].as_ref().unwrap();
        assert_eq!(second.op, add("md5", "aa", &["media:image"], "ncmec:8"));
        assert_eq!(second.position.line, Some(4));
    }

    #[test]
    fn bad_entries_are_reported_and_parsing_continues() {
        let input = br#"<queryResult><images>
<image><member id="1"/><fingerprints><md5>aa</md5></fingerprints></image>
<image><id>a</id><id>b</id><fingerprints><md5>aa</md5></fingerprints></image>
<image><id>c</id><fingerprints><md5>&bogus;</md5></fingerprints></image>
<image><id>d</id><fingerprints><md5>&#0;</md5></fingerprints></image>
<deletedImage><member id="1"/></deletedImage>
<image><id>e</id><member id="5"/><member id="6"/><fingerprints><md5>aa</md5></fingerprints></image>
<video><member id="9"/><id>ok</id><fingerprints><md5>cc</md5></fingerprints></video>
</images></queryResult>"#;
        let got = run(input);
        assert_eq!(got.len(), 7, "{got:#?}");
        let expect = [
            (2, "image entry has no <id>"),
            (3, "more than one <id>"),
            (4, "unknown entity &bogus;"),
            (5, "bad character reference"),
            (6, "deleted image entry has no <id>"),
            (7, "more than one <member>"),
        ];
        for (got, (line, msg)) in got.iter().zip(expect) {
            let e = got.as_ref().unwrap_err();
            assert!(!e.fatal, "{e}");
            assert_eq!(e.position.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
        assert_eq!(
            got[6].as_ref().unwrap().op,
            add("md5", "cc", &["media:video"], "ncmec:9:ok")
        );
    }

    #[test]
    fn malformed_and_truncated_xml_is_fatal() {
        // Mismatched end tag after one good entry.
        let input = b"<images><image><id>1</id><fingerprints><md5>aa</md5></fingerprints></image><image></images>";
        let got = run(input);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        let e = got[1].as_ref().unwrap_err();
        assert!(e.fatal);
        assert!(e.message.contains("malformed XML"), "{e}");

        // Truncated mid-entry: the first entry is kept, then a fatal error.
        let full = SAMPLE.as_bytes();
        for cut in [10, 200, 500, 900, full.len() - 5] {
            let got = run(&full[..cut]);
            let last = got.last().unwrap().as_ref().unwrap_err();
            assert!(last.fatal, "cut {cut}: {last}");
            assert!(got[..got.len() - 1]
                .iter()
                .all(|r| r.as_ref().map_or_else(|e| !e.fatal, |_| true)));
        }

        let got = run(b"hello world");
        assert_eq!(got.len(), 1);
        assert!(got[0].as_ref().unwrap_err().fatal);

        assert!(run(b"").is_empty());
        assert!(run(b"  \n").is_empty());
        assert!(
            run(b"<queryResult><images count=\"0\"/><videos count=\"0\"/></queryResult>")
                .is_empty()
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut fatal = 0;
            for item in NcmecXmlParser::new(bytes.as_slice()) {
                if matches!(item, Err(ImportError { fatal: true, .. })) {
                    fatal += 1;
                }
            }
            proptest::prop_assert!(fatal <= 1);
        }

        #[test]
        fn xml_fragments_never_panic(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "<images>", "</images>", "<image>", "</image>", "<deletedImage>", "</deletedImage>",
                "<id>", "</id>", "x", "<member id=\"4\"/>", "<member id='&amp;'>", "</member>",
                "<fingerprints>", "</fingerprints>", "<md5>", "</md5>", "<p:pdq>", "</p:pdq>",
                "&amp;", "&#x41;", "&#xffffff;", "&foo;", "<![CDATA[a]]>", "<!-- c -->", " ", "\n",
                "<", ">", "/>", "\u{feff}", "<?xml version=\"1.0\"?>",
            ]),
            0..48,
        )) {
            let input = parts.concat();
            let mut fatal = 0;
            for item in NcmecXmlParser::new(input.as_bytes()) {
                if matches!(item, Err(ImportError { fatal: true, .. })) {
                    fatal += 1;
                }
            }
            proptest::prop_assert!(fatal <= 1);
        }
    }
}
