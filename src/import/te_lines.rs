//! `te-lines`: the space-separated lines python-threatexchange prints, and a
//! writer for them.
//!
//! `threatexchange hash` prints `<signal_type> <signal_str>`
//! (`cli/hash_cmd.py`: `print(hasher.get_name(), hash_str)`), and
//! `threatexchange dataset -P` (`cli/dataset_cmd.py`, `_print_stdout`) prints
//!
//! ```text
//! <signal_type> <signal_str> <repr(collab)> <metadata>
//! pdq f8f8...9b22 'Sample Signals' POSITIVE_CLASS tag1,tag2
//! ```
//!
//! where the collaboration is a Python `repr()` (single-quoted, or
//! double-quoted when the name contains a `'`, with backslash escapes) and
//! `<metadata>` is `FetchedSignalMetadata.__str__`
//! (`exchanges/fetch_state.py`): the aggregate category name, then, if there
//! are tags, a space and the tags joined by `,`. The signal type is left out
//! with `-s` for a single type (we cannot read that: nothing says what type
//! the values are), the collaboration with `-c` for a single one, and
//! everything after the value with `-S`. So after `<type> <value>`, an
//! optional quoted collaboration, an optional category word, and optional
//! comma-separated tags.
//!
//! Labels: the category, each tag, then `collab:<collab>`, as for te-csv, so
//! that the two te formats of the same dataset import identically. Blank
//! lines and lines starting with `#` are skipped.
//!
//! Not covered: StopNCII's metadata overrides `__str__` with
//! `<CATEGORY> <+n> <+Source,...>`, which reads as the category plus one tag
//! `+n +Source`; `hash --photo-preprocess rotations` prefixes a rotation name
//! (`ROTATE90 pdq ...`), which reads as type `ROTATE90`. Values containing
//! whitespace (`raw_text` signals) are cut at the first space.

use std::io::{self, BufRead, Write};

use super::lines::LineRecords;
use super::te_csv::{check_type_and_value, invalid, split_labels, COLLAB_PREFIX};
use super::{push_label, snippet, ImportOp, RawSignal};

/// Streaming parser for [`super::Format::TeLines`]: one record per line.
pub(crate) fn parser<R: BufRead>(input: R) -> LineRecords<R> {
    LineRecords::new(input, |text| {
        let text = text.trim();
        if text.starts_with('#') {
            Ok(None)
        } else {
            parse_line(text).map(Some)
        }
    })
}

/// Splits off the first whitespace-delimited token: `("pdq", "ab cd")`.
fn token(s: &str) -> (&str, &str) {
    match s.find(char::is_whitespace) {
        Some(at) => {
            let (tok, rest) = s.split_at(at);
            (tok, rest.trim_start())
        }
        None => (s, ""),
    }
}

/// One trimmed, non-empty line to an operation.
fn parse_line(text: &str) -> Result<ImportOp, String> {
    let (type_name, rest) = token(text);
    let (value, mut rest) = token(rest);
    if value.is_empty() {
        return Err(format!(
            "expected \"<signal_type> <value>\", found only {:?}",
            snippet(type_name, 40)
        ));
    }
    let mut collab = None;
    if rest.starts_with(['\'', '"']) {
        let (name, after) = parse_python_str(rest)?;
        collab = Some(name);
        rest = after.trim_start();
    }
    let mut labels = Vec::new();
    if !rest.is_empty() {
        let (category, tags) = token(rest);
        push_label(&mut labels, category);
        if !tags.is_empty() {
            for tag in tags.split(',') {
                push_label(&mut labels, tag);
            }
        }
    }
    if let Some(name) = collab {
        let name = name.trim();
        if !name.is_empty() {
            labels.push(format!("{COLLAB_PREFIX}{name}"));
        }
    }
    Ok(ImportOp::Add {
        signal: RawSignal {
            type_name: type_name.to_string(),
            value: value.to_string(),
        },
        labels,
        external_id: None,
    })
}

/// Reads a Python string literal as `repr()` writes it, from the start of
/// `s`; returns the string and what follows it.
fn parse_python_str(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let quote = match chars.next() {
        Some((_, q @ ('\'' | '"'))) => q,
        _ => return Err("expected a quoted collaboration name".to_string()),
    };
    let mut out = String::new();
    while let Some((at, c)) = chars.next() {
        if c == quote {
            let rest = s.get(at + c.len_utf8()..).unwrap_or_default();
            if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
                return Err("unexpected text right after the quoted collaboration name".to_string());
            }
            return Ok((out, rest));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, esc)) = chars.next() else {
            break;
        };
        let hex_len = match esc {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            _ => 0,
        };
        if hex_len > 0 {
            let digits: String = chars.by_ref().take(hex_len).map(|(_, c)| c).collect();
            let decoded = Some(&digits)
                .filter(|d| d.len() == hex_len && d.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(|d| u32::from_str_radix(d, 16).ok())
                .and_then(char::from_u32);
            match decoded {
                Some(c) => out.push(c),
                None => {
                    return Err(format!(
                        "bad escape \\{esc}{digits} in the quoted collaboration name"
                    ))
                }
            }
            continue;
        }
        match esc {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '\\' | '\'' | '"' => out.push(esc),
            // Python keeps unknown escapes as written.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Err("unterminated quoted collaboration name".to_string())
}

/// Python's `repr()` of a string: single quotes unless the text contains a
/// `'` and no `"`; backslash escapes for the quote, `\`, `\t`, `\n`, `\r` and
/// other control characters.
fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let n = u32::from(c);
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Writes one te-lines line, `<type> <value> ['<collab>'] [<category>
/// [<tag>,<tag>...]]` and `\n`, that [`super::parse`] with
/// [`super::Format::TeLines`] reads back as the same type, value and labels
/// (same labels as a multiset; order may change).
///
/// With no labels this is exactly what `threatexchange hash` prints. With
/// labels it is the layout of `threatexchange dataset -P`: the first label
/// `collab:<name>` becomes the quoted collaboration (Python `repr()` style);
/// of the rest, the first label without whitespace that does not start with
/// a quote becomes the category and the others the comma-separated tags.
/// Labels are trimmed and empty ones dropped, as the parser does.
///
/// Fails with [`io::ErrorKind::InvalidInput`] for what the format cannot
/// carry: an empty type or value, whitespace in either, a type starting with
/// `#`, control characters or a `,` in a tag, or tags with no label that
/// could be the category.
pub fn write_te_line(
    w: &mut impl Write,
    type_name: &str,
    value: &str,
    labels: &[String],
) -> io::Result<()> {
    check_type_and_value(type_name, value)?;
    if value.chars().any(char::is_whitespace) {
        return Err(invalid(
            "te-lines cannot carry a value containing whitespace",
        ));
    }
    let split = split_labels(labels);
    let category_at = split
        .rest
        .iter()
        .position(|l| !l.chars().any(char::is_whitespace) && !l.starts_with(['\'', '"']));
    let mut line = format!("{type_name} {value}");
    if let Some(collab) = split.collab {
        line.push(' ');
        line.push_str(&python_repr(collab));
    }
    match category_at {
        None if split.rest.is_empty() => {}
        None => {
            return Err(invalid(
                "te-lines needs one label without whitespace or leading quote to hold the category",
            ))
        }
        Some(at) => {
            let category = split.rest.get(at).copied().unwrap_or_default();
            if category.chars().any(char::is_control) {
                return Err(invalid("te-lines labels cannot contain control characters"));
            }
            line.push(' ');
            line.push_str(category);
            let tags: Vec<&str> = split
                .rest
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != at)
                .map(|(_, l)| *l)
                .collect();
            for tag in &tags {
                if tag.contains(',') || tag.chars().any(char::is_control) {
                    return Err(invalid(format!(
                        "te-lines tags cannot contain ',' or control characters: {:?}",
                        snippet(tag, 40)
                    )));
                }
            }
            if !tags.is_empty() {
                line.push(' ');
                line.push_str(&tags.join(","));
            }
        }
    }
    line.push('\n');
    w.write_all(line.as_bytes())
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

    const PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

    #[test]
    fn parses_hash_and_dataset_output() {
        let input = format!(
            "\u{feff}pdq {PDQ}\r\n\
             url_md5 6d3af727a4e7b025fd59a5469b3a9c57\r\n\
             \r\n\
             # a comment\n\
             url https://developers.facebook.com/docs/threat-exchange/reference/apis/ 'Sample Signals' INVESTIGATION_SEED\n\
             pdq {PDQ} \"Hotline's \\\"list\\\"\" POSITIVE_CLASS Ünïcødé ✓, tag2\n\
             video_md5 d41d8cd98f00b204e9800998ecf8427e NEGATIVE_CLASS a\n\
             \x20pdq   {PDQ}\t\n"
        );
        let items: Vec<ImportItem> = run(input.as_bytes())
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(items.len(), 6);
        assert_eq!(items[0].position, Position::at_line(1, 0));
        assert_eq!(items[0].op, add("pdq", PDQ, &[]));
        assert_eq!(
            items[1].op,
            add("url_md5", "6d3af727a4e7b025fd59a5469b3a9c57", &[])
        );
        assert_eq!(items[2].position.line, Some(5));
        assert_eq!(
            items[2].op,
            add(
                "url",
                "https://developers.facebook.com/docs/threat-exchange/reference/apis/",
                &["INVESTIGATION_SEED", "collab:Sample Signals"]
            )
        );
        assert_eq!(
            items[3].op,
            add(
                "pdq",
                PDQ,
                &[
                    "POSITIVE_CLASS",
                    "Ünïcødé ✓",
                    "tag2",
                    "collab:Hotline's \"list\""
                ]
            )
        );
        assert_eq!(
            items[4].op,
            add(
                "video_md5",
                "d41d8cd98f00b204e9800998ecf8427e",
                &["NEGATIVE_CLASS", "a"]
            )
        );
        assert_eq!(items[5].op, add("pdq", PDQ, &[]));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let input = b"pdq aa\n\
            pdqonly\n\
            pdq bb 'unterminated\n\
            pdq cc 'x'y CAT\n\
            pdq dd 'bad \\x4' CAT\n\
            md5 ee\n";
        let got = run(input);
        assert_eq!(got.len(), 6);
        assert!(got[0].is_ok());
        let expect = [
            (2, "found only \"pdqonly\""),
            (3, "unterminated"),
            (4, "right after the quoted"),
            (5, "bad escape"),
        ];
        for (got, (line, msg)) in got[1..5].iter().zip(expect) {
            let e = got.as_ref().unwrap_err();
            assert_eq!(e.position.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
        assert_eq!(got[5].as_ref().unwrap().op, add("md5", "ee", &[]));
    }

    #[test]
    fn empty_and_truncated_input() {
        assert!(run(b"").is_empty());
        assert!(run(b"\n\r\n# only a comment").is_empty());
        let got = run(b"pdq ab 'Sample Sig");
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
        let got = run(b"pd");
        assert!(got[0].is_err());
    }

    #[test]
    fn python_repr_matches_python() {
        assert_eq!(python_repr("Sample Signals"), "'Sample Signals'");
        assert_eq!(python_repr("it's"), "\"it's\"");
        assert_eq!(python_repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(python_repr("a\\b\n\u{1}\u{9f}é"), "'a\\\\b\\n\\x01\\x9fé'");
        for s in ["", "it's", "'\"", "a\\b\n\u{1}\u{9f}\u{2028}é"] {
            let repr = python_repr(s);
            assert_eq!(
                parse_python_str(&repr).unwrap(),
                (s.to_string(), ""),
                "{repr}"
            );
        }
    }

    fn write(type_name: &str, value: &str, labels: &[&str]) -> io::Result<String> {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        write_te_line(&mut out, type_name, value, &labels)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn writer_matches_python_layout() {
        assert_eq!(write("pdq", "ab", &[]).unwrap(), "pdq ab\n");
        assert_eq!(
            write(
                "pdq",
                "ab",
                &["collab:Sample Signals", "POSITIVE_CLASS", "t1", "t 2"]
            )
            .unwrap(),
            "pdq ab 'Sample Signals' POSITIVE_CLASS t1,t 2\n"
        );
        assert_eq!(write("pdq", "ab", &["collab:x"]).unwrap(), "pdq ab 'x'\n");
        assert_eq!(
            write("pdq", "ab", &["two words", "cat"]).unwrap(),
            "pdq ab cat two words\n"
        );
        for (t, v, labels) in [
            ("pdq", "a b", &[][..]),
            ("p q", "ab", &[][..]),
            ("#pdq", "ab", &[][..]),
            ("pdq", "ab", &["two words"][..]),
            ("pdq", "ab", &["cat", "a,b"][..]),
            ("pdq", "ab", &["cat", "a\u{1}"][..]),
        ] {
            let e = write(t, v, labels).unwrap_err();
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
                PDQ,
                &[
                    "POSITIVE_CLASS",
                    "collab:Hotline's \"EU\"",
                    "Ünïcødé ✓",
                    "t2",
                ],
            ),
            ("md5", "ab", &["collab:x", "collab:y", " ", "'quoted"]),
            ("sha1", "ab", &[]),
        ];
        let mut out = Vec::new();
        for (t, v, labels) in rows {
            let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            write_te_line(&mut out, t, v, &labels).unwrap();
        }
        let items: Vec<ImportItem> = run(&out).into_iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(items.len(), rows.len());
        for (item, (t, v, labels)) in items.iter().zip(rows) {
            let ImportOp::Add {
                signal,
                labels: got,
                ..
            } = &item.op
            else {
                panic!("not an add: {item:?}")
            };
            assert_eq!((signal.type_name.as_str(), signal.value.as_str()), (*t, *v));
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
        fn quote_heavy_lines_never_panic(s in "[a-z '\"\\\\xuU0-9,\t\n]{0,200}") {
            let _ = parser(s.as_bytes()).count();
        }

        #[test]
        fn writer_round_trip(
            t in "[a-z0-9_]{1,12}",
            v in "[!-~]{1,30}",
            labels in proptest::collection::vec("(collab:)?[ -~\u{e9}\u{2713}\u{1}\n]{0,12}", 0..6),
        ) {
            let mut out = Vec::new();
            if write_te_line(&mut out, &t, &v, &labels).is_err() {
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
