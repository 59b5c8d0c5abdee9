//! StopNCII.org's hash API: `FetchHashes` (paged) in, `SubmitFeedback` out.
//!
//! # Sources
//!
//! StopNCII publishes no API reference; this follows python-threatexchange's
//! client, the public description HMA's users run against the service
//! (facebook/ThreatExchange, `python-threatexchange/threatexchange/
//! exchanges/clients/stopncii/api.py`, its tests in `stopncii/tests/
//! test_api.py`, and `exchanges/impl/stop_ncii_api.py` for how its pages
//! become a checkpoint). Read, not copied.
//!
//! # Requests
//!
//! * `GET {endpoint}/FetchHashes?startTimestamp=S&pageSize=N[&nextPageToken=T]`
//!   (the service's base is `https://api.stopncii.org/v1`). The answer:
//!   `{"count", "nextPageToken", "nextSetTimestamp", "hasMoreRecords",
//!   "hashRecords": [...]}`, each record as `crate::import`'s
//!   `stopncii-json` reads it (`signalType`, `hashValue`, `hashStatus`,
//!   `lastModtimestamp`, `hashRegions`, `CSPFeedbacks`, ...).
//! * `POST {endpoint}/SubmitFeedback` with
//!   `{"count": 1, "hashFeedbacks": [{"hashValue", "feedbackValue", "tags"}]}`.
//!
//! Every request carries `Ocp-Apim-Subscription-Key` (the Azure API
//! Management subscription key) and `x-functions-key` (a key per endpoint).
//! The credentials file's fields: `subscription_key`, `fetch_function_key`,
//! and, to send feedback, `feedback_function_key` (without it feedback is
//! refused with a credentials error; fetching works). None is ever logged.
//!
//! # Paging and the cursor
//!
//! A fetch pass asks for everything modified since `startTimestamp` and
//! follows `nextPageToken` while `hasMoreRecords`; at the end of a pass the
//! page's `nextSetTimestamp` ("the best timestamp to use to store as a
//! checkpoint") starts the next pass. Records are snapshots: a later record
//! for the same type and value replaces the earlier one, so reading a record
//! twice is harmless and reading from an earlier start never loses anything.
//!
//! The cursor is `"<start>"` between passes and `"<start>;<token>"` inside
//! one (`start` the pass's `startTimestamp`, `token` the `nextPageToken` to
//! send); `""` starts at python-threatexchange's default start, 10. The same
//! cursor asks the same question, so a fetch repeated after a crash is the
//! same fetch. Page tokens are "not valid over long periods of time": if
//! the service refuses one (HTTP 400, 404 or 410), the pass starts again at
//! its `start` (within the same call; the page returned then covers the
//! pass's beginning).
//!
//! The service going back is [`ExchangeError::CursorBack`], nothing applied:
//! a pass that ends with a `nextSetTimestamp` before its start, a record
//! modified before the pass's start (the service answered another
//! question), or a page that hands back the very token it was asked with
//! (the same page again). Retrying the same cursor converges once the
//! service behaves.
//!
//! # Records
//!
//! Signal types: `ImagePDQ` → `pdq`, `VideoMD5` → `video_md5` (hashfed's
//! `md5`), `VideoTMK` → `videotmk`, an opaque type (as the file importer
//! names it) until hashfed has TMK; `Text`, `URL`, `Unknown` and anything
//! else are skipped with a reason. `hashStatus` `Withdrawn`/`Deleted` is a
//! deletion; `Received`/`Active`/`Unknown` (or none) an add. Labels are the
//! file importer's (`stopncii`, `region:<r>`); case numbers, which identify
//! the people who asked for the hash, are never taken.
//!
//! A record that is not an object, lacks a field, has an unknown status or
//! a value that is not a hash of its type is skipped into [`Page::skipped`]
//! with its position and reason (never its values), and the page goes on
//! (HMA #2004/#2005: one bad record must not stop a fetch). Only an answer
//! that is not JSON, or lacks `hasMoreRecords`, or says there is more
//! without a token, is [`ExchangeError::Malformed`]. A page whose `count`
//! is larger than the records it carries says so in a skipped note.
//!
//! # External ids
//!
//! StopNCII's records have no id of their own: a record *is* its signal
//! type and hash value. The external id is `stopncii:<32 hex digits>`, the
//! first 16 bytes of BLAKE3 over the signal's canonical key
//! ([`external_id`]); adds and deletions of one hash carry the same id,
//! and it does not spell the hash out (ids are logged and shown; hashes are
//! not). (The file importer, which keys by value, writes no external id.)
//!
//! # Filters
//!
//! `filters.signal_types` (hashfed's names: `pdq`, `md5`, ...) keeps only
//! those types. `filters.categories`: StopNCII's records carry no category
//! of their own and the API takes none; the nearest are the `tags` the
//! providers' `CSPFeedbacks` give a hash (`Nude`, `Adult`, ...). With
//! categories set, a record is taken if one of its tags is among them
//! (ignoring case), and any other record is a deletion of its hash, so a
//! hash that loses its tag leaves the set.
//!
//! # Feedback
//!
//! A provider's [`Verdict::Confirmed`] is sent as `Blocked` ("match
//! reviewed, determined to be NCII"), [`Verdict::FalsePositive`] as
//! `NotBlocked`; the reason code, if any, is the one tag. `hashValue` is the
//! value in lower-case hexadecimal (how StopNCII writes PDQ and MD5).

use hyper::Method;
use serde_json::{json, Value};

use super::http::{Http, Request, Response};
use super::text::{json_problem, percent_encode};
use super::{Credentials, ExchangeError, OutgoingFeedback, Page, Secret, Skipped};
use crate::config::ExchangeConfig;
use crate::import::{ImportItem, ImportOp, Position};
use crate::model::{Signal, SignalType, Verdict};

/// Where a fetch starts when there is no cursor (python-threatexchange's
/// `DEFAULT_START_TIME`).
pub const DEFAULT_START: u64 = 10;

/// The most records asked for per page.
const MAX_PAGE: u32 = 10_000;

/// StopNCII's signal types that are taken, as the importer names them.
const TAKEN: [&str; 3] = ["pdq", "video_md5", "videotmk"];

/// A client of one StopNCII exchange.
#[derive(Debug)]
pub struct Client {
    http: Http,
    subscription_key: Secret,
    fetch_key: Secret,
    feedback_key: Option<Secret>,
    /// The credentials file, to name when a field is missing.
    credentials_path: std::path::PathBuf,
    page_size: u32,
    filter: Filter,
}

/// What a page keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Filter {
    /// Signal types kept (all if empty).
    signal_types: Vec<SignalType>,
    /// Feedback tags one of which a record needs, lower-case (all records
    /// if empty).
    categories: Vec<String>,
}

/// Where a fetch is: the pass's start, and the page token inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    start: u64,
    token: Option<String>,
}

impl Cursor {
    fn parse(text: &str) -> Result<Cursor, ExchangeError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(Cursor {
                start: DEFAULT_START,
                token: None,
            });
        }
        let (start, token) = match text.split_once(';') {
            Some((start, token)) => (start, Some(token)),
            None => (text, None),
        };
        let start = start.parse::<u64>().map_err(|_| {
            ExchangeError::Config(
                "the stored cursor is not a StopNCII cursor (`<start>[;<token>]`); reset the exchange"
                    .into(),
            )
        })?;
        Ok(Cursor {
            start,
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
        })
    }

    fn render(&self) -> String {
        match &self.token {
            Some(token) => format!("{};{token}", self.start),
            None => self.start.to_string(),
        }
    }
}

impl Client {
    /// The client for `config`, with `credentials` (`subscription_key`,
    /// `fetch_function_key`, optionally `feedback_function_key`).
    pub fn new(
        config: &ExchangeConfig,
        credentials: Credentials,
        http: Http,
    ) -> Result<Self, ExchangeError> {
        let signal_types = super::signal_types(config)?;
        let categories = config
            .filters
            .categories
            .iter()
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        Ok(Client {
            subscription_key: credentials.get("subscription_key")?.clone(),
            fetch_key: credentials.get("fetch_function_key")?.clone(),
            feedback_key: credentials.optional("feedback_function_key").cloned(),
            credentials_path: credentials.path.clone(),
            http,
            page_size: config.page_size.clamp(1, MAX_PAGE),
            filter: Filter {
                signal_types,
                categories,
            },
        })
    }

    /// The page after `cursor` (see the module's description of the
    /// cursor).
    pub async fn fetch(&mut self, cursor: &str) -> Result<Page, ExchangeError> {
        let mut at = Cursor::parse(cursor)?;
        let answer = match self.fetch_hashes(&at).await {
            // A page token that has lapsed: the pass starts again.
            Err(ExchangeError::Refused {
                status: 400 | 404 | 410,
                ..
            }) if at.token.is_some() => {
                at.token = None;
                self.fetch_hashes(&at).await?
            }
            other => other?,
        };
        parse_page(&answer.body, &at, &self.filter)
    }

    async fn fetch_hashes(&self, at: &Cursor) -> Result<Response, ExchangeError> {
        let mut path = format!(
            "FetchHashes?startTimestamp={}&pageSize={}",
            at.start, self.page_size
        );
        if let Some(token) = &at.token {
            path.push_str("&nextPageToken=");
            path.push_str(&percent_encode(token));
        }
        let request = Request::get(path)
            .header("accept", "application/json")
            .header("x-functions-key", self.fetch_key.expose())
            .header("ocp-apim-subscription-key", self.subscription_key.expose());
        self.http.send(request).await?.ok()
    }

    /// Sends one verdict back: `SubmitFeedback` with `Blocked` (confirmed)
    /// or `NotBlocked` (false positive) for the entry's hash.
    pub async fn send_feedback(&mut self, f: &OutgoingFeedback) -> Result<(), ExchangeError> {
        let key = match &self.feedback_key {
            Some(key) => key,
            None => {
                return Err(ExchangeError::Credentials {
                    path: self.credentials_path.clone(),
                    reason: "no `feedback_function_key` field: StopNCII's SubmitFeedback needs its own function key".into(),
                })
            }
        };
        let body = feedback_body(f)?;
        let request = Request::with_body(Method::POST, "SubmitFeedback", body)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .header("x-functions-key", key.expose())
            .header("ocp-apim-subscription-key", self.subscription_key.expose());
        self.http.send(request).await?.ok()?;
        Ok(())
    }
}

/// The external id of a StopNCII hash: `stopncii:` and the first 16 bytes
/// of BLAKE3 over the signal's canonical key, in hexadecimal. The same for
/// a hash's adds and deletions, whatever case its hexadecimal came in.
pub fn external_id(signal: &Signal) -> String {
    let digest = blake3::hash(&signal.key());
    let head = digest.as_bytes().get(..16).unwrap_or_default();
    format!("stopncii:{}", crate::signal::exact::to_hex(head))
}

/// `SubmitFeedback`'s body for one verdict.
fn feedback_body(f: &OutgoingFeedback) -> Result<Vec<u8>, ExchangeError> {
    if f.external_id != external_id(&f.signal) {
        return Err(ExchangeError::Config(format!(
            "feedback for {:?}, which is not this hash's StopNCII id",
            super::http::printable(f.external_id.as_bytes(), 80)
        )));
    }
    match f.signal.kind() {
        SignalType::Pdq | SignalType::Md5 => {}
        SignalType::Opaque(name) if name == "videotmk" => {}
        _ => {
            return Err(ExchangeError::Config(
                "StopNCII takes feedback on ImagePDQ, VideoMD5 and VideoTMK hashes only".into(),
            ))
        }
    }
    let value = match f.verdict {
        Verdict::Confirmed => "Blocked",
        Verdict::FalsePositive => "NotBlocked",
    };
    let tags: Vec<&str> = [f.reason.trim()]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
    let body = json!({
        "count": 1,
        "hashFeedbacks": [{
            "hashValue": f.signal.value_hex(),
            "feedbackValue": value,
            "tags": tags,
        }],
    });
    Ok(body.to_string().into_bytes())
}

/// A FetchHashes answer to a page, for a fetch at `at`.
fn parse_page(body: &[u8], at: &Cursor, filter: &Filter) -> Result<Page, ExchangeError> {
    let malformed = |why: String| ExchangeError::Malformed(format!("FetchHashes: {why}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(json_problem(&e)))?;
    let Value::Object(mut top) = value else {
        return Err(malformed("the answer is not a JSON object".into()));
    };
    let has_more = match top.get("hasMoreRecords") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(malformed("\"hasMoreRecords\" is not true or false".into())),
        None => return Err(malformed("no \"hasMoreRecords\"".into())),
    };
    let token = match top.get("nextPageToken") {
        Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        None | Some(Value::Null) | Some(Value::String(_)) => None,
        Some(_) => return Err(malformed("\"nextPageToken\" is not a string".into())),
    };
    let next_set = match top.get("nextSetTimestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| malformed("\"nextSetTimestamp\" is not a whole number".into()))?,
        ),
    };
    let count = top.get("count").and_then(Value::as_u64);
    let records = match top.remove("hashRecords") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(records)) => records,
        Some(_) => return Err(malformed("\"hashRecords\" is not an array".into())),
    };

    // The service going back, or standing still: nothing is applied.
    if has_more && token.is_some() && token == at.token {
        return Err(ExchangeError::CursorBack(
            "StopNCII handed back the page token it was asked with (the same page again)".into(),
        ));
    }
    let new_cursor = if has_more {
        match token {
            Some(token) => Cursor {
                start: at.start,
                token: Some(token),
            },
            None => {
                return Err(malformed(
                    "\"hasMoreRecords\" is true but there is no \"nextPageToken\"".into(),
                ))
            }
        }
    } else {
        let start = next_set.unwrap_or(at.start);
        if start < at.start {
            return Err(ExchangeError::CursorBack(format!(
                "StopNCII's nextSetTimestamp {start} is before this pass's start {}",
                at.start
            )));
        }
        Cursor { start, token: None }
    };

    let mut page = Page {
        cursor: new_cursor.render(),
        more: has_more,
        ..Page::default()
    };
    let carried = records.len() as u64;
    for (index, record) in records.into_iter().enumerate() {
        let n = index as u64 + 1;
        if let Some(modified) = record.get("lastModtimestamp").and_then(Value::as_u64) {
            if modified < at.start {
                return Err(ExchangeError::CursorBack(format!(
                    "StopNCII sent record {n}, modified at {modified}, for a pass from {}",
                    at.start
                )));
            }
        }
        match take_record(record, filter) {
            Ok(Some(op)) => page.items.push(ImportItem {
                position: Position {
                    record: Some(n),
                    ..Position::default()
                },
                op,
            }),
            Ok(None) => {}
            Err(reason) => page.skipped.push(Skipped {
                id: None,
                reason: format!("record {n} of the page: {reason}"),
            }),
        }
    }
    if let Some(count) = count {
        if count > carried {
            page.skipped.push(Skipped {
                id: None,
                reason: format!(
                    "the page says it has {count} records but carries {carried}: a partial page"
                ),
            });
        }
    }
    Ok(page)
}

/// One record to what it asks for: `Ok(None)` if the filter leaves it out.
fn take_record(record: Value, filter: &Filter) -> Result<Option<ImportOp>, String> {
    let tagged = filter.categories.is_empty() || has_category(&record, &filter.categories);
    let op = crate::import::stopncii::record_op(record)?;
    let raw = match &op {
        ImportOp::Add { signal, .. } | ImportOp::RetractValue { signal } => signal,
        ImportOp::RetractExternal { .. } => return Err("not a hash record".into()),
    };
    if !TAKEN.contains(&raw.type_name.as_str()) {
        return Err(format!(
            "signal type {:?} is not taken (ImagePDQ, VideoMD5 and VideoTMK are)",
            crate::import::snippet(&raw.type_name, 32)
        ));
    }
    let signal = Signal::parse(&raw.type_name, &raw.value).map_err(|e| e.to_string())?;
    if !filter.signal_types.is_empty() && !filter.signal_types.contains(signal.kind()) {
        return Ok(None);
    }
    let id = external_id(&signal);
    Ok(Some(match op {
        ImportOp::Add { signal, labels, .. } if tagged => ImportOp::Add {
            signal,
            labels,
            external_id: Some(id),
        },
        _ => ImportOp::RetractExternal { external_id: id },
    }))
}

/// Whether one of the record's providers' feedback tags is among
/// `categories` (lower-case).
fn has_category(record: &Value, categories: &[String]) -> bool {
    let Some(Value::Array(feedbacks)) = record.get("CSPFeedbacks") else {
        return false;
    };
    feedbacks
        .iter()
        .filter_map(|f| f.get("tags").and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .any(|tag| categories.contains(&tag.trim().to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::RawSignal;

    const H1: &str = "2afc4a5c09628a7961c14d436493bba66b89b831453baa1d556ba385554daa82";
    const H2: &str = "79e07de27d7295339435d63cd31cf35a7bfa29eb2885008500a588a5ea3ae75a";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn at(start: u64, token: Option<&str>) -> Cursor {
        Cursor {
            start,
            token: token.map(str::to_owned),
        }
    }

    fn pdq(value: &str) -> Signal {
        Signal::parse("pdq", value).unwrap()
    }

    fn page(records: Value, more: bool, token: Option<&str>, next_set: Option<u64>) -> Vec<u8> {
        let mut v = json!({
            "count": records.as_array().map_or(0, Vec::len),
            "hasMoreRecords": more,
            "hashRecords": records,
        });
        if let Some(t) = token {
            v["nextPageToken"] = t.into();
        }
        if let Some(n) = next_set {
            v["nextSetTimestamp"] = n.into();
        }
        v.to_string().into_bytes()
    }

    fn record(signal_type: &str, value: &str, status: &str, modified: u64) -> Value {
        json!({"lastModtimestamp": modified, "signalType": signal_type, "hashValue": value,
               "hashStatus": status, "caseNumbers": {"27664732-76e1": status}})
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        assert_eq!(Cursor::parse("").unwrap(), at(DEFAULT_START, None));
        assert_eq!(Cursor::parse("1625175071").unwrap(), at(1625175071, None));
        let mid = Cursor::parse("12;W3siY29t/a+b=;x").unwrap();
        assert_eq!(mid, at(12, Some("W3siY29t/a+b=;x")));
        assert_eq!(Cursor::parse(&mid.render()).unwrap(), mid);
        assert_eq!(Cursor::parse("12;").unwrap(), at(12, None));
        for bad in ["x", "-1", "1.5;t", ";t"] {
            assert!(
                matches!(Cursor::parse(bad), Err(ExchangeError::Config(_))),
                "{bad}"
            );
        }
        assert_eq!(percent_encode("a+b/c= d"), "a%2Bb%2Fc%3D%20d");
    }

    #[test]
    fn pages_become_items_with_one_id_per_hash() {
        let body = page(
            json!([
                record("ImagePDQ", H1, "Received", 100),
                record("ImagePDQ", &H2.to_uppercase(), "Withdrawn", 101),
                record("VideoMD5", MD5, "Active", 102),
                record("VideoTMK", "00ff10", "Active", 103),
            ]),
            true,
            Some("tok-2"),
            Some(103),
        );
        let p = parse_page(&body, &at(50, Some("tok-1")), &Filter::default()).unwrap();
        assert!(p.more);
        assert_eq!(p.cursor, "50;tok-2");
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(p.items.len(), 4);
        assert_eq!(
            p.items[0].op,
            ImportOp::Add {
                signal: RawSignal {
                    type_name: "pdq".into(),
                    value: H1.into()
                },
                labels: vec!["stopncii".into()],
                external_id: Some(external_id(&pdq(H1))),
            }
        );
        assert_eq!(p.items[0].position.record, Some(1));
        // The withdrawal carries the id its add had, whatever the case.
        assert_eq!(
            p.items[1].op,
            ImportOp::RetractExternal {
                external_id: external_id(&pdq(H2))
            }
        );
        let md5 = Signal::parse("md5", MD5).unwrap();
        assert!(matches!(&p.items[2].op,
            ImportOp::Add { signal, external_id: Some(id), .. }
                if signal.type_name == "video_md5" && *id == external_id(&md5)));
        assert!(matches!(&p.items[3].op,
            ImportOp::Add { signal, .. } if signal.type_name == "videotmk"));
        let id = external_id(&pdq(H1));
        assert!(id.starts_with("stopncii:") && id.len() == 9 + 32, "{id}");
        assert!(!id.contains(&H1[..16]));
    }

    #[test]
    fn bad_records_are_skipped_with_reasons_not_values() {
        let body = page(
            json!([
                record("ImagePDQ", H1, "Active", 100),
                {"signalType": "ImagePDQ", "hashStatus": "Active"},
                record("ImagePDQ", "abc", "Active", 100),
                record("ImagePDQ", H2, "Closed", 100),
                record("URL", "https://example.com/", "Active", 100),
                record("Text", "hello", "Active", 100),
                "not an object",
                {"signalType": 7, "hashValue": H2},
                record("VideoMD5", MD5, "Active", 100),
            ]),
            false,
            None,
            Some(120),
        );
        let p = parse_page(&body, &at(10, None), &Filter::default()).unwrap();
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.cursor, "120");
        assert!(!p.more);
        let reasons: Vec<&str> = p.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(reasons.len(), 7, "{reasons:#?}");
        assert!(reasons[0].starts_with("record 2 of the page: missing \"hashValue\""));
        assert!(
            reasons[1].contains("pdq value must be 32 bytes"),
            "{}",
            reasons[1]
        );
        assert!(reasons[2].contains("unknown hashStatus"));
        assert!(reasons[3].contains("\"url\" is not taken"));
        assert!(reasons[4].contains("\"raw_text\" is not taken"));
        assert!(reasons[5].contains("not a JSON object"));
        assert!(reasons[6].contains("must be a string"));
        for r in &reasons {
            assert!(
                !r.contains("abc") && !r.contains(&H2[..12]) && !r.contains("example"),
                "{r}"
            );
        }
        // A page shorter than its count says so.
        let mut short: Value = serde_json::from_slice(&body).unwrap();
        short["count"] = 12.into();
        let p = parse_page(
            short.to_string().as_bytes(),
            &at(10, None),
            &Filter::default(),
        )
        .unwrap();
        assert!(p.skipped.last().unwrap().reason.contains("partial page"));
    }

    #[test]
    fn broken_answers_are_malformed() {
        let good = page(
            json!([record("ImagePDQ", H1, "Active", 100)]),
            true,
            Some("t"),
            None,
        );
        let cut = &good[..good.len() / 2];
        for body in [
            cut,
            b"<html>".as_slice(),
            b"[1,2]",
            br#"{"hashRecords":[]}"#,
            br#"{"hasMoreRecords":"yes"}"#,
            br#"{"hasMoreRecords":true,"hashRecords":[]}"#,
            br#"{"hasMoreRecords":false,"hashRecords":{}}"#,
            br#"{"hasMoreRecords":false,"nextSetTimestamp":-4}"#,
        ] {
            match parse_page(body, &at(10, None), &Filter::default()) {
                Err(ExchangeError::Malformed(m)) => {
                    assert!(!m.contains(H1), "{m}")
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        let e = parse_page(cut, &at(10, None), &Filter::default()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn going_back_is_refused() {
        let f = Filter::default();
        // The pass ends before it began.
        let body = page(json!([]), false, None, Some(40));
        assert!(matches!(
            parse_page(&body, &at(50, Some("t")), &f),
            Err(ExchangeError::CursorBack(_))
        ));
        // A record older than the pass: the service answered another question.
        let body = page(
            json!([record("ImagePDQ", H1, "Active", 49)]),
            true,
            Some("t2"),
            None,
        );
        assert!(matches!(
            parse_page(&body, &at(50, Some("t")), &f),
            Err(ExchangeError::CursorBack(_))
        ));
        // The same page again: the token it was asked with.
        let body = page(
            json!([record("ImagePDQ", H1, "Active", 60)]),
            true,
            Some("t"),
            None,
        );
        assert!(matches!(
            parse_page(&body, &at(50, Some("t")), &f),
            Err(ExchangeError::CursorBack(_))
        ));
        // Caught up at the same start is fine (records at the start are in).
        let body = page(
            json!([record("ImagePDQ", H1, "Active", 50)]),
            false,
            None,
            Some(50),
        );
        let p = parse_page(&body, &at(50, None), &f).unwrap();
        assert_eq!((p.cursor.as_str(), p.more, p.items.len()), ("50", false, 1));
        // No nextSetTimestamp: the next pass starts where this one did.
        let body = page(json!([]), false, None, None);
        assert_eq!(
            parse_page(&body, &at(77, Some("t")), &f).unwrap().cursor,
            "77"
        );
    }

    #[test]
    fn filters_keep_types_and_tagged_records() {
        let tagged = |value: &str, tags: &[&str]| {
            json!({"lastModtimestamp": 100, "signalType": "ImagePDQ", "hashValue": value,
                   "hashStatus": "Active",
                   "CSPFeedbacks": [{"source": "X", "feedbackValue": "Blocked", "tags": tags}]})
        };
        let body = page(
            json!([
                tagged(H1, &["Nude", "Other"]),
                tagged(H2, &["Objectionable"]),
                record("VideoMD5", MD5, "Active", 100),
            ]),
            false,
            None,
            Some(100),
        );
        let f = Filter {
            signal_types: vec![SignalType::Pdq],
            categories: vec!["nude".into()],
        };
        let p = parse_page(&body, &at(10, None), &f).unwrap();
        assert_eq!(p.items.len(), 2, "{:?}", p.items);
        assert!(
            matches!(&p.items[0].op, ImportOp::Add { external_id: Some(id), .. }
            if *id == external_id(&pdq(H1)))
        );
        // Untagged now: it leaves the set if it was in.
        assert_eq!(
            p.items[1].op,
            ImportOp::RetractExternal {
                external_id: external_id(&pdq(H2))
            }
        );
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn feedback_in_stopnciis_words() {
        let signal = pdq(H1);
        let mut f = OutgoingFeedback {
            external_id: external_id(&signal),
            signal: signal.clone(),
            verdict: Verdict::Confirmed,
            reason: String::new(),
        };
        let body: Value = serde_json::from_slice(&feedback_body(&f).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"count": 1, "hashFeedbacks": [{"hashValue": H1, "feedbackValue": "Blocked", "tags": []}]})
        );
        f.verdict = Verdict::FalsePositive;
        f.reason = "benign_collision".into();
        let body: Value = serde_json::from_slice(&feedback_body(&f).unwrap()).unwrap();
        assert_eq!(body["hashFeedbacks"][0]["feedbackValue"], "NotBlocked");
        assert_eq!(
            body["hashFeedbacks"][0]["tags"],
            json!(["benign_collision"])
        );
        f.external_id = "ncmec:1:2".into();
        assert!(matches!(feedback_body(&f), Err(ExchangeError::Config(_))));
        let sha = Signal::parse("sha256", &"a".repeat(64)).unwrap();
        let f = OutgoingFeedback {
            external_id: external_id(&sha),
            signal: sha,
            verdict: Verdict::Confirmed,
            reason: String::new(),
        };
        assert!(matches!(feedback_body(&f), Err(ExchangeError::Config(_))));
    }
}
