//! A line reader for the line-based formats (`jsonl`, `te-csv`, `te-lines`).
//!
//! `BufRead::read_line` would do, except that it grows without limit: a file
//! with no newline in its first 4 GB would be read into memory whole. This
//! reader keeps at most [`MAX_LINE_BYTES`] of a line, reports a longer line as
//! one bad record and carries on with the next, and knows each line's number
//! and byte offset for error messages. It also strips `\n` / `\r\n` and a
//! byte order mark at the start of the input.

use std::io::{self, BufRead};

use super::{ImportError, ImportItem, ImportOp, Position, UTF8_BOM};

/// The longest line kept, in bytes, without its line ending. Real records are
/// well under 1 KiB; the cap exists only to bound memory on hostile input.
pub(crate) const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of input, without its line ending.
pub(crate) struct Line<'a> {
    /// Where the line starts.
    pub position: Position,
    /// The line's text.
    pub text: &'a str,
}

/// Splits a [`BufRead`] into lines; see the module documentation.
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_len: usize,
    /// 1-based number of the next line.
    next_line: u64,
    /// Byte offset where the next line starts.
    offset: u64,
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    /// Reads lines of at most [`MAX_LINE_BYTES`].
    pub(crate) fn new(inner: R) -> Self {
        Self::with_max_len(inner, MAX_LINE_BYTES)
    }

    /// Reads lines of at most `max_len` bytes (for tests).
    pub(crate) fn with_max_len(inner: R, max_len: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            max_len,
            next_line: 1,
            offset: 0,
            done: false,
        }
    }

    /// The next line; `Err` for a line that is too long or not UTF-8 (parsing
    /// may continue) or for a read error (fatal, and the last item).
    pub(crate) fn next_line(&mut self) -> Option<Result<Line<'_>, ImportError>> {
        if self.done {
            return None;
        }
        let line_no = self.next_line;
        let position = Position::at_line(line_no, self.offset);
        self.buf.clear();
        // Room for a maximal line plus "\r\n"; anything beyond is dropped.
        let keep = self.max_len.saturating_add(2);
        let mut total: u64 = 0;
        let mut overflow = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.done = true;
                    return Some(Err(ImportError::fatal(
                        position,
                        format!("read error: {e}"),
                    )));
                }
            };
            if available.is_empty() {
                break;
            }
            let newline = available.iter().position(|&b| b == b'\n');
            let take = newline.map_or(available.len(), |i| i + 1);
            let (chunk, _) = available.split_at(take.min(available.len()));
            let room = keep.saturating_sub(self.buf.len());
            if chunk.len() <= room {
                self.buf.extend_from_slice(chunk);
            } else {
                self.buf
                    .extend_from_slice(chunk.get(..room).unwrap_or_default());
                overflow = true;
            }
            let consumed = chunk.len();
            self.inner.consume(consumed);
            total = total.saturating_add(consumed as u64);
            if newline.is_some() {
                break;
            }
        }
        if total == 0 {
            self.done = true;
            return None;
        }
        self.offset = self.offset.saturating_add(total);
        self.next_line = self.next_line.saturating_add(1);

        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        if overflow || self.buf.len() > self.max_len {
            return Some(Err(ImportError::new(
                position,
                format!("line is longer than {} bytes; skipped", self.max_len),
            )));
        }
        let bytes = if line_no == 1 {
            self.buf.strip_prefix(UTF8_BOM).unwrap_or(&self.buf)
        } else {
            &self.buf
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(Ok(Line { position, text })),
            Err(e) => Some(Err(ImportError::new(
                position,
                format!(
                    "line is not valid UTF-8 (bad byte at column {})",
                    e.valid_up_to().saturating_add(1)
                ),
            ))),
        }
    }
}

/// A format with one record per line: the line reader plus the function
/// that turns one non-blank line into an operation (`Ok(None)`: a line to
/// skip, such as a header or a comment; `Err`: what is wrong with it).
pub(crate) struct LineRecords<R> {
    lines: LineReader<R>,
    parse: fn(&str) -> Result<Option<ImportOp>, String>,
}

impl<R: BufRead> LineRecords<R> {
    /// Records of `input`, each line given to `parse`.
    pub(crate) fn new(input: R, parse: fn(&str) -> Result<Option<ImportOp>, String>) -> Self {
        LineRecords {
            lines: LineReader::new(input),
            parse,
        }
    }
}

impl<R: BufRead> Iterator for LineRecords<R> {
    type Item = Result<ImportItem, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next_line()? {
                Ok(line) => line,
                Err(e) => return Some(Err(e)),
            };
            if line.text.trim().is_empty() {
                continue;
            }
            return Some(match (self.parse)(line.text) {
                Ok(None) => continue,
                Ok(Some(op)) => Ok(ImportItem {
                    position: line.position,
                    op,
                }),
                Err(message) => Err(ImportError::new(line.position, message)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<Result<(u64, u64, String), String>> {
        let mut r = LineReader::with_max_len(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line() {
            out.push(
                l.map(|l| {
                    (
                        l.position.line.unwrap(),
                        l.position.byte.unwrap(),
                        l.text.to_string(),
                    )
                })
                .map_err(|e| e.to_string()),
            );
        }
        out
    }

    #[test]
    fn splits_lines_with_positions() {
        let got = collect(b"\xEF\xBB\xBFa\r\nbc\n\nd", 100);
        assert_eq!(
            got,
            vec![
                Ok((1, 0, "a".to_string())),
                Ok((2, 6, "bc".to_string())),
                Ok((3, 9, String::new())),
                Ok((4, 10, "d".to_string())),
            ]
        );
        assert!(collect(b"", 10).is_empty());
        assert_eq!(collect(b"\n", 10), vec![Ok((1, 0, String::new()))]);
    }

    #[test]
    fn long_and_non_utf8_lines_are_errors_then_continue() {
        let got = collect(b"abcdefgh\nok\n\xff\xfe\nend", 4);
        assert_eq!(got.len(), 4);
        assert!(got[0].as_ref().unwrap_err().contains("longer than 4 bytes"));
        assert_eq!(got[1], Ok((2, 9, "ok".to_string())));
        let e = got[2].as_ref().unwrap_err();
        assert!(
            e.starts_with("line 3 (byte 12)") && e.contains("UTF-8"),
            "{e}"
        );
        assert_eq!(got[3], Ok((4, 15, "end".to_string())));
        // Exactly max, with CRLF, is fine.
        assert_eq!(
            collect(b"abcd\r\n", 4),
            vec![Ok((1, 0, "abcd".to_string()))]
        );
    }

    struct FailingReader;
    impl io::Read for FailingReader {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
    }

    #[test]
    fn read_error_is_fatal_and_last() {
        let mut r = LineReader::new(io::BufReader::new(FailingReader));
        let e = r.next_line().unwrap().err().unwrap();
        assert!(e.fatal);
        assert!(e.message.contains("disk on fire"));
        assert!(r.next_line().is_none());
    }
}
