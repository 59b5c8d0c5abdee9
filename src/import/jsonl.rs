//! `jsonl`: hashfed's own JSON lines, one object per line.
//!
//! ```text
//! {"type":"pdq","value":"f8f8...","labels":["csam","A1"],"external_id":"case-7"}
//! {"op":"retract","type":"md5","value":"d41d8cd98f00b204e9800998ecf8427e"}
//! {"op":"retract","external_id":"case-7"}
//! ```
//!
//! Fields: `type` and `value` (strings), optional `labels` (array of strings),
//! optional `external_id` (string), optional `op`: `"add"` (the default) or
//! `"retract"`. A retract names either the hash (`type` + `value`) or only an
//! `external_id`, which withdraws every hash that came with that id. Any
//! other field is ignored, because our export writes bookkeeping fields
//! (`set`, `id`, `seq`, `time`, `status`) that mean nothing to an importer,
//! with one exception: `"status":"retracted"` marks a withdrawn hash in an
//! export, so it imports as a retraction; that way re-importing an export
//! reproduces its withdrawals instead of resurrecting them.
//!
//! JSON lines rather than one JSON document so that a list of ten million
//! hashes can be written, read, split, and repaired one record at a time.

use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::LineRecords;
use super::{json_error_message, push_label, ImportOp, RawSignal};

/// Streaming parser for [`super::Format::Jsonl`]: one record per line.
pub(crate) fn parser<R: BufRead>(input: R) -> LineRecords<R> {
    LineRecords::new(input, |text| parse_line(text.trim()).map(Some))
}

/// One line to an operation, or a message saying what is wrong with it.
fn parse_line(text: &str) -> Result<ImportOp, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| json_error_message(&e))?;
    let Value::Object(obj) = value else {
        return Err("expected a JSON object".to_string());
    };
    let type_name = non_empty_str(&obj, "type")?;
    let value = non_empty_str(&obj, "value")?;
    let external_id = non_empty_str(&obj, "external_id")?;
    let retract = match optional_str(&obj, "op")? {
        None => false,
        Some(op) if op.trim().eq_ignore_ascii_case("add") => false,
        Some(op) if op.trim().eq_ignore_ascii_case("retract") => true,
        Some(op) => {
            return Err(format!(
                "unknown \"op\" {:?} (expected \"add\" or \"retract\")",
                super::snippet(op, 40)
            ))
        }
    };
    let retracted_status =
        optional_str(&obj, "status")?.is_some_and(|s| s.trim().eq_ignore_ascii_case("retracted"));

    if retract || retracted_status {
        return match (type_name, value) {
            (Some(type_name), Some(value)) => Ok(ImportOp::RetractValue {
                signal: RawSignal { type_name, value },
            }),
            (None, None) => match external_id {
                Some(external_id) => Ok(ImportOp::RetractExternal { external_id }),
                None => {
                    Err("a retraction needs \"type\" and \"value\", or \"external_id\"".to_string())
                }
            },
            (Some(_), None) => Err("a retraction with \"type\" also needs \"value\"".to_string()),
            (None, Some(_)) => Err("a retraction with \"value\" also needs \"type\"".to_string()),
        };
    }

    let type_name = type_name.ok_or("missing \"type\"")?;
    let value = value.ok_or("missing \"value\"")?;
    let labels = match obj.get("labels") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut labels = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => push_label(&mut labels, s),
                    _ => return Err("\"labels\" must be an array of strings".to_string()),
                }
            }
            labels
        }
        Some(_) => return Err("\"labels\" must be an array of strings".to_string()),
    };
    Ok(ImportOp::Add {
        signal: RawSignal { type_name, value },
        labels,
        external_id,
    })
}

/// `obj[key]` as a string; absent and `null` are `None`, other types an error.
fn optional_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("\"{key}\" must be a string")),
    }
}

/// [`optional_str`], trimmed, with an empty string counted as absent.
fn non_empty_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    Ok(optional_str(obj, key)?
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ImportError, ImportItem, Position};

    fn run(input: &[u8]) -> Vec<Result<ImportItem, ImportError>> {
        parser(input).collect()
    }

    fn add(type_name: &str, value: &str, labels: &[&str], external_id: Option<&str>) -> ImportOp {
        ImportOp::Add {
            signal: RawSignal {
                type_name: type_name.into(),
                value: value.into(),
            },
            labels: labels.iter().map(|s| s.to_string()).collect(),
            external_id: external_id.map(str::to_string),
        }
    }

    const PDQ: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";

    #[test]
    fn parses_adds_and_retractions() {
        let input = format!(
            "\u{feff}{{\"type\":\"pdq\",\"value\":\"{PDQ}\",\"labels\":[\" csam \",\"\",\"Ünïcødé ✓\"],\"external_id\":\"case-7\",\"set\":\"s1\",\"seq\":4}}\r\n\
             \r\n\
             {{\"op\":\"retract\",\"type\":\"md5\",\"value\":\"d41d8cd98f00b204e9800998ecf8427e\"}}\r\n\
             {{\"op\":\"retract\",\"external_id\":\"case-7\"}}\n\
             {{\"type\":\"sha1\",\"value\":\"da39a3ee5e6b4b0d3255bfef95601890afd80709\",\"status\":\"retracted\",\"id\":9,\"time\":\"2024-01-01T00:00:00Z\"}}\n\
             {{\"type\":\"md5\",\"value\":\"ab\",\"op\":\"add\",\"labels\":null,\"external_id\":null}}"
        );
        let items: Vec<ImportItem> = run(input.as_bytes())
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(items.len(), 5);
        assert_eq!(items[0].position, Position::at_line(1, 0));
        assert_eq!(
            items[0].op,
            add("pdq", PDQ, &["csam", "Ünïcødé ✓"], Some("case-7"))
        );
        assert_eq!(items[1].position.line, Some(3));
        assert_eq!(
            items[1].op,
            ImportOp::RetractValue {
                signal: RawSignal {
                    type_name: "md5".into(),
                    value: "d41d8cd98f00b204e9800998ecf8427e".into()
                }
            }
        );
        assert_eq!(
            items[2].op,
            ImportOp::RetractExternal {
                external_id: "case-7".into()
            }
        );
        assert!(matches!(items[3].op, ImportOp::RetractValue { .. }));
        assert_eq!(items[4].op, add("md5", "ab", &[], None));
        assert_eq!(items[4].position.line, Some(6));
    }

    #[test]
    fn bad_lines_are_reported_and_skipped() {
        let input = b"{\"type\":\"md5\",\"value\":\"aa\"}\n\
            {\"type\":\"md5\",\"value\":\n\
            [1,2]\n\
            {\"type\":\"md5\"}\n\
            {\"type\":5,\"value\":\"x\"}\n\
            {\"type\":\"md5\",\"value\":\"x\",\"labels\":[1]}\n\
            {\"type\":\"md5\",\"value\":\"x\",\"labels\":\"a\"}\n\
            {\"op\":\"delete\",\"type\":\"md5\",\"value\":\"x\"}\n\
            {\"op\":\"retract\"}\n\
            {\"op\":\"retract\",\"type\":\"md5\"}\n\
            {\"op\":\"retract\",\"value\":\"x\"}\n\
            {\"type\":\" \",\"value\":\"x\"}\n\
            {\"type\":\"md5\",\"value\":\"bb\"}\n";
        let got = run(input);
        assert_eq!(got.len(), 13);
        assert!(got[0].is_ok());
        let expect = [
            (2, "invalid JSON"),
            (3, "expected a JSON object"),
            (4, "missing \"value\""),
            (5, "\"type\" must be a string"),
            (6, "\"labels\" must be an array of strings"),
            (7, "\"labels\" must be an array of strings"),
            (8, "unknown \"op\""),
            (9, "needs \"type\" and \"value\", or \"external_id\""),
            (10, "also needs \"value\""),
            (11, "also needs \"type\""),
            (12, "missing \"type\""),
        ];
        for (got, (line, msg)) in got[1..12].iter().zip(expect) {
            let e = got.as_ref().unwrap_err();
            assert_eq!(e.position.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "line {line}: {e}");
            assert!(!e.fatal);
        }
        assert_eq!(got[12].as_ref().unwrap().op, add("md5", "bb", &[], None));
    }

    #[test]
    fn empty_truncated_and_garbage_input() {
        assert!(run(b"").is_empty());
        assert!(run(b"\n\n  \r\n").is_empty());
        let got = run(b"{\"type\":\"md5\",\"val");
        assert_eq!(got.len(), 1);
        assert!(got[0]
            .as_ref()
            .unwrap_err()
            .message
            .contains("invalid JSON"));
        let got = run(b"\xff\xfe{}\n{\"type\":\"a\",\"value\":\"b\"}");
        assert!(got[0].is_err());
        assert!(got[1].is_ok());
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
        fn json_like_lines_never_panic(parts in proptest::collection::vec(
            proptest::sample::select(vec![
                "{", "}", "[", "]", ",", ":", "\"type\"", "\"value\"", "\"op\"", "\"retract\"",
                "\"labels\"", "\"external_id\"", "\"status\"", "\"retracted\"", "\"x\"", "null",
                "1", "\n", "\r\n", " ", "\\", "\"",
            ]),
            0..64,
        )) {
            let input = parts.concat();
            let _ = parser(input.as_bytes()).count();
        }
    }
}
