//! `te-csv`: python-threatexchange's dataset CSV, and a writer for it.
//!
//! `threatexchange dataset -P --csv` (python-threatexchange,
//! `threatexchange/cli/dataset_cmd.py`) writes a header and one row per
//! (signal, collaboration) pair with Python's `csv.DictWriter`:
//!
//! ```text
//! signal_type,signal_str,collab,category,tags
//! pdq,f8f8...9b22,Sample Signals,POSITIVE_CLASS,tag1 tag2
//! ```
//!
//! `category` is the aggregate opinion's name (`NEGATIVE_CLASS`,
//! `INVESTIGATION_SEED`, `POSITIVE_CLASS`, `DISPUTED`) and `tags` are joined
//! with single spaces. Python's CSV dialect is Excel's: comma separator,
//! fields quoted with `"` only when they contain a comma, a quote or a line
//! break, quotes doubled inside quotes, and `\r\n` line endings.
//!
//! We read that with an in-line CSV splitter rather than a CSV crate: the
//! format is five fields, and a line-at-a-time reader is what lets one bad
//! row be skipped without losing the rest. The cost is that a quoted field
//! spanning lines (python would write one for a `raw_text` signal containing
//! a newline) is reported as a bad row; hash values never contain newlines.
//!
//! Labels: the category, then each tag, then `collab:<collab>`, each only if
//! non-empty. A header row (first two fields `signal_type,signal_str`) is
//! skipped wherever it appears, so concatenated dumps import cleanly. Rows
//! with 2 to 5 fields are accepted (missing trailing fields are empty).

use std::io::{self, BufRead, Write};

use super::lines::LineRecords;
use super::{push_label, snippet, ImportOp, RawSignal};

/// The header python-threatexchange writes.
const HEADER: [&str; 5] = ["signal_type", "signal_str", "collab", "category", "tags"];

/// The prefix that marks a collaboration name among labels.
pub(crate) const COLLAB_PREFIX: &str = "collab:";

/// Streaming parser for [`super::Format::TeCsv`]: one record per line.
pub(crate) fn parser<R: BufRead>(input: R) -> LineRecords<R> {
    LineRecords::new(input, parse_row)
}

/// A row to an operation; `None` for a header row.
fn parse_row(line: &str) -> Result<Option<ImportOp>, String> {
    let fields = split_csv_line(line)?;
    if fields.len() < 2 || fields.len() > HEADER.len() {
        return Err(format!(
            "expected 5 comma-separated fields (signal_type,signal_str,collab,category,tags), found {}",
            fields.len()
        ));
    }
    let field = |i: usize| fields.get(i).map_or("", |f| f.trim());
    let (type_name, value) = (field(0), field(1));
    if type_name.eq_ignore_ascii_case(HEADER[0]) && value.eq_ignore_ascii_case(HEADER[1]) {
        return Ok(None);
    }
    if type_name.is_empty() {
        return Err("empty signal_type".to_string());
    }
    if value.is_empty() {
        return Err("empty signal_str".to_string());
    }
    let mut labels = Vec::new();
    push_label(&mut labels, field(3));
    for tag in field(4).split_whitespace() {
        push_label(&mut labels, tag);
    }
    let collab = field(2);
    if !collab.is_empty() {
        labels.push(format!("{COLLAB_PREFIX}{collab}"));
    }
    Ok(Some(ImportOp::Add {
        signal: RawSignal {
            type_name: type_name.to_string(),
            value: value.to_string(),
        },
        labels,
        external_id: None,
    }))
}

/// Splits one CSV line (RFC 4180 quoting, as Python's `csv` module writes it).
///
/// A `"` inside an unquoted field is kept literally, as Python's reader does;
/// text after a closing quote other than a comma is an error (Python would
/// glue it on; a stray character there almost always means a damaged row).
pub(crate) fn split_csv_line(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.char_indices().peekable();
    loop {
        let mut field = String::new();
        if let Some(&(start, '"')) = chars.peek() {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "unterminated quoted field starting at column {}",
                            column(line, start)
                        ))
                    }
                    Some((_, '"')) => {
                        if let Some(&(_, '"')) = chars.peek() {
                            chars.next();
                            field.push('"');
                        } else {
                            break;
                        }
                    }
                    Some((_, c)) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some((_, ',')) => fields.push(field),
                Some((at, c)) => {
                    return Err(format!(
                        "unexpected {:?} after closing quote at column {}",
                        c,
                        column(line, at)
                    ))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some((_, ',')) => break,
                    Some((_, c)) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// 1-based character column of byte offset `at` in `line`.
fn column(line: &str, at: usize) -> usize {
    line.get(..at).map_or(0, |s| s.chars().count()) + 1
}

/// Writes python-threatexchange's CSV header,
/// `signal_type,signal_str,collab,category,tags`, with a `\r\n` ending.
pub fn write_te_csv_header(w: &mut impl Write) -> io::Result<()> {
    w.write_all(HEADER.join(",").as_bytes())?;
    w.write_all(b"\r\n")
}

/// Writes one te-csv row that [`super::parse`] with
/// [`super::Format::TeCsv`] reads back as the same type, value and labels
/// (same labels as a multiset; order may change).
///
/// Labels map onto python-threatexchange's columns as follows: the first
/// label `collab:<name>` becomes the `collab` column; of the remaining
/// labels, the one containing whitespace (at most one is allowed, since tags
/// are space-separated) or else the first becomes `category`, and the rest
/// become space-separated `tags`. Labels are trimmed and empty ones dropped,
/// as the parser does. Quoting follows Python's `csv` module (only when a
/// field contains `,` or `"`), and rows end in `\r\n` as Python writes them.
///
/// Fails with [`io::ErrorKind::InvalidInput`] for what the format cannot
/// carry: an empty or untrimmed type or value, a type containing whitespace
/// or control characters, a line break anywhere, more than one label with
/// whitespace in it, or a row that would read back as the header.
pub fn write_te_csv_row(
    w: &mut impl Write,
    type_name: &str,
    value: &str,
    labels: &[String],
) -> io::Result<()> {
    check_type_and_value(type_name, value)?;
    if type_name.eq_ignore_ascii_case(HEADER[0]) && value.eq_ignore_ascii_case(HEADER[1]) {
        return Err(invalid("this row would read back as the CSV header"));
    }
    let split = split_labels(labels);
    let spaced: Vec<usize> = split
        .rest
        .iter()
        .enumerate()
        .filter(|(_, l)| l.chars().any(char::is_whitespace))
        .map(|(i, _)| i)
        .collect();
    // The category is the label with whitespace (tags cannot hold one), or
    // else the first label.
    let category_at = match spaced.as_slice() {
        [] => 0,
        [one] => *one,
        [_, second, ..] => {
            let label = split.rest.get(*second).copied().unwrap_or_default();
            return Err(invalid(format!(
                "label {:?} contains whitespace, and te-csv can carry only one such label (as the category)",
                snippet(label, 40)
            )));
        }
    };
    let category = split.rest.get(category_at).copied().unwrap_or_default();
    let tags: Vec<&str> = split
        .rest
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != category_at)
        .map(|(_, l)| *l)
        .collect();
    let row = [
        type_name,
        value,
        split.collab.unwrap_or(""),
        category,
        &tags.join(" "),
    ];
    let mut line = String::new();
    for (i, field) in row.iter().enumerate() {
        if field.contains(['\r', '\n']) {
            return Err(invalid("a line break cannot be written to te-csv"));
        }
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push_str("\r\n");
    w.write_all(line.as_bytes())
}

/// Labels split for the te writers: the collaboration, and everything else.
pub(crate) struct SplitLabels<'a> {
    /// The name from the first usable `collab:<name>` label.
    pub collab: Option<&'a str>,
    /// The other labels, trimmed, non-empty, in order.
    pub rest: Vec<&'a str>,
}

/// Picks the collaboration out of `labels` (trimmed, empties dropped). A
/// `collab:` label only counts if its name is non-empty and already trimmed,
/// because the parsers trim the name; anything else stays an ordinary label.
pub(crate) fn split_labels(labels: &[String]) -> SplitLabels<'_> {
    let mut collab = None;
    let mut rest = Vec::new();
    for label in labels.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
        if collab.is_none() {
            if let Some(name) = label.strip_prefix(COLLAB_PREFIX) {
                if !name.is_empty() && name.trim() == name {
                    collab = Some(name);
                    continue;
                }
            }
        }
        rest.push(label);
    }
    SplitLabels { collab, rest }
}

/// What both te writers require of the type and the value.
pub(crate) fn check_type_and_value(type_name: &str, value: &str) -> io::Result<()> {
    if type_name.is_empty() || value.is_empty() {
        return Err(invalid("signal type and value must not be empty"));
    }
    if type_name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
        || type_name.starts_with('#')
    {
        return Err(invalid(format!(
            "signal type {:?} cannot be written (whitespace, control character or leading '#')",
            snippet(type_name, 40)
        )));
    }
    if value.trim() != value || value.contains(['\r', '\n']) {
        return Err(invalid(
            "signal value has surrounding whitespace or a line break",
        ));
    }
    Ok(())
}

pub(crate) fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportError, ImportItem, Position};

    fn run(input: &[u8]) -> Vec<Result<ImportItem, ImportError>> {
        parser(input).collect()
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

    #[test]
    fn splits_csv() {
        assert_eq!(split_csv_line("a,b").unwrap(), vec!["a", "b"]);
        assert_eq!(split_csv_line("").unwrap(), vec![""]);
        assert_eq!(split_csv_line("a,,").unwrap(), vec!["a", "", ""]);
        assert_eq!(
            split_csv_line(r#""a,b","say ""hi""",x"y,"""#).unwrap(),
            vec!["a,b", "say \"hi\"", "x\"y", ""]
        );
        let e = split_csv_line(r#"a,"open"#).unwrap_err();
        assert!(
            e.contains("unterminated quoted field starting at column 3"),
            "{e}"
        );
        let e = split_csv_line(r#""é"x,b"#).unwrap_err();
        assert!(
            e.contains("unexpected 'x' after closing quote at column 4"),
            "{e}"
        );
    }

    #[test]
    fn parses_python_threatexchange_output() {
        // What `threatexchange dataset -P --csv` prints: CRLF, header first.
        let input = "\u{feff}signal_type,signal_str,collab,category,tags\r\n\
            pdq,f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22,Sample Signals,POSITIVE_CLASS,\r\n\
            video_md5,d41d8cd98f00b204e9800998ecf8427e,\"Hotline, EU \"\"test\"\"\",INVESTIGATION_SEED,tag1 Ünïcødé\r\n\
            url,https://developers.facebook.com/docs/threat-exchange/reference/apis/,Sample Signals,INVESTIGATION_SEED,\r\n";
        let items: Vec<ImportItem> = run(input.as_bytes())
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].position, Position::at_line(2, 48));
        assert_eq!(
            items[0].op,
            add(
                "pdq",
                "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
                &["POSITIVE_CLASS", "collab:Sample Signals"]
            )
        );
        assert_eq!(
            items[1].op,
            add(
                "video_md5",
                "d41d8cd98f00b204e9800998ecf8427e",
                &[
                    "INVESTIGATION_SEED",
                    "tag1",
                    "Ünïcødé",
                    "collab:Hotline, EU \"test\""
                ]
            )
        );
        assert_eq!(items[2].position.line, Some(4));
    }

    #[test]
    fn bad_rows_are_reported_and_skipped() {
        let input = b"pdq,aa,,,\n\
            pdq\n\
            pdq,\"bb,,,\n\
            a,b,c,d,e,f\n\
            ,cc,,,\n\
            pdq, ,,,\n\
            \n\
            signal_type,signal_str,collab,category,tags\n\
            md5,dd\n";
        let got = run(input);
        assert_eq!(got.len(), 7);
        assert_eq!(got[0].as_ref().unwrap().op, add("pdq", "aa", &[]));
        let expect = [
            (2, "found 1"),
            (3, "unterminated quoted field"),
            (4, "found 6"),
            (5, "empty signal_type"),
            (6, "empty signal_str"),
        ];
        for (got, (line, msg)) in got[1..6].iter().zip(expect) {
            let e = got.as_ref().unwrap_err();
            assert_eq!(e.position.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "{e}");
            assert!(!e.fatal);
        }
        let last = got[6].as_ref().unwrap();
        assert_eq!(last.op, add("md5", "dd", &[]));
        assert_eq!(last.position.line, Some(9));
    }

    #[test]
    fn empty_and_truncated_input() {
        assert!(run(b"").is_empty());
        assert!(run(b"signal_type,signal_str,collab,category,tags\r\n").is_empty());
        let got = run(b"pdq,aa,\"Sample Sig");
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    fn write_row(type_name: &str, value: &str, labels: &[&str]) -> io::Result<String> {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        write_te_csv_row(&mut out, type_name, value, &labels)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn writer_matches_python_layout() {
        let mut out = Vec::new();
        write_te_csv_header(&mut out).unwrap();
        assert_eq!(out, b"signal_type,signal_str,collab,category,tags\r\n");
        assert_eq!(
            write_row(
                "pdq",
                "ab",
                &["POSITIVE_CLASS", "collab:Sample Signals", "t1", "t2"]
            )
            .unwrap(),
            "pdq,ab,Sample Signals,POSITIVE_CLASS,t1 t2\r\n"
        );
        assert_eq!(
            write_row("md5", "ab", &["a", "needs, \"quotes\"", "collab:x,y"]).unwrap(),
            "md5,ab,\"x,y\",\"needs, \"\"quotes\"\"\",a\r\n"
        );
        assert_eq!(write_row("md5", "ab", &[]).unwrap(), "md5,ab,,,\r\n");
        for (t, v, labels) in [
            ("", "ab", &[][..]),
            ("md5", "", &[][..]),
            ("m d5", "ab", &[][..]),
            ("md5", " ab", &[][..]),
            ("md5", "a\nb", &[][..]),
            ("#md5", "ab", &[][..]),
            ("signal_type", "signal_str", &[][..]),
            ("md5", "ab", &["two words", "and more"][..]),
            ("md5", "ab", &["a\nb"][..]),
            ("md5", "ab", &["x y", "x y"][..]),
        ] {
            let e = write_row(t, v, labels).unwrap_err();
            assert_eq!(
                e.kind(),
                io::ErrorKind::InvalidInput,
                "{t:?} {v:?} {labels:?}"
            );
        }
    }

    fn sorted(mut v: Vec<String>) -> Vec<String> {
        v.sort();
        v
    }

    #[test]
    fn writer_round_trips() {
        let rows: &[(&str, &str, &[&str])] = &[
            (
                "pdq",
                "f8f8",
                &["POSITIVE_CLASS", "collab:Sample Signals", "t1"],
            ),
            (
                "md5",
                "a,b\"c",
                &["Ünïcødé ✓", "collab:x", "collab:y", "  ", "z"],
            ),
            ("sha1", "ab", &["collab: spaced", "collab:"]),
            ("sha256", "ab", &[]),
        ];
        let mut out = Vec::new();
        write_te_csv_header(&mut out).unwrap();
        for (t, v, labels) in rows {
            let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            write_te_csv_row(&mut out, t, v, &labels).unwrap();
        }
        let items: Vec<ImportItem> = run(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), rows.len());
        for (item, (t, v, labels)) in items.iter().zip(rows) {
            let ImportOp::Add {
                signal,
                labels: got,
                external_id,
            } = &item.op
            else {
                panic!("not an add: {item:?}")
            };
            assert_eq!((signal.type_name.as_str(), signal.value.as_str()), (*t, *v));
            assert_eq!(*external_id, None);
            let want: Vec<String> = labels
                .iter()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(sorted(got.clone()), sorted(want));
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            for item in parser(bytes.as_slice()) {
                if let Err(e) = item {
                    proptest::prop_assert!(!e.fatal);
                }
            }
        }

        #[test]
        fn csv_like_lines_never_panic(s in "[a-z,\" \r\n\u{e9}]{0,200}") {
            let _ = parser(s.as_bytes()).count();
        }

        #[test]
        fn writer_round_trip(
            t in "[a-z0-9_]{1,12}",
            v in "[!-~]([ -~]{0,30}[!-~])?",
            labels in proptest::collection::vec("(collab:)?[ -~\u{e9}\u{2713}]{0,12}", 0..6),
        ) {
            let mut out = Vec::new();
            if write_te_csv_row(&mut out, &t, &v, &labels).is_err() {
                return Ok(());
            }
            let items: Vec<_> = parser(out.as_slice()).collect();
            proptest::prop_assert_eq!(items.len(), 1);
            let Ok(ImportItem { op: ImportOp::Add { signal, labels: got, .. }, .. }) = &items[0] else {
                return Err(proptest::test_runner::TestCaseError::fail(format!("{items:?}")));
            };
            proptest::prop_assert_eq!(&signal.type_name, &t);
            proptest::prop_assert_eq!(&signal.value, &v);
            let want: Vec<String> = labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
            proptest::prop_assert_eq!(sorted(got.clone()), sorted(want));
        }
    }
}
