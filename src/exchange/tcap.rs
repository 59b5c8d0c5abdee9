//! Tech Against Terrorism's TCAP content hash list: paged by an `after`
//! checkpoint, behind a JWT.
//!
//! # Sources
//!
//! * python-threatexchange's TCAP client (facebook/ThreatExchange,
//!   `python-threatexchange/threatexchange/exchanges/clients/
//!   techagainstterrorism/api.py`, its tests, and `exchanges/impl/
//!   techagainstterrorism_api.py`): the login, the list's path, the page's
//!   shape, the checkpoint as "a timestamp and id of the last record in the
//!   current page", and (in the revision whose `fetch_hashes_iter` passes
//!   each page's checkpoint as the next `after`) paging by checkpoint;
//!   records with `deleted` are removals; `PDQ` and `MD5` map to pdq and
//!   (video) MD5.
//! * TCAP's own pages: `terrorismanalytics.org/docs/hash-list-v2` (the login
//!   returns `token` and `user`; the token goes as `Authorization: Bearer`)
//!   and `docs.terrorismanalytics.org/docs/api-services/content-hash-list`
//!   (parameters `ideology`, `limit` (default 1,000), `offset`, `order`
//!   `asc`/`desc`, `after` `'{UTC},{id}'`, "query from the last piece of
//!   content you ingested"; algorithms MD5, SHA256, SHA512 and PDQ).
//!
//! Read, not copied.
//!
//! # Requests
//!
//! * `POST {endpoint}/token-auth/tcap/` with `{"username", "password"}`
//!   answers `{"token", "user"}`.
//! * `GET {endpoint}/api/hash-list/v2/all?order=asc&limit=N[&after=C]` with
//!   `Authorization: Bearer <token>` answers `{"count", "next", "previous",
//!   "checkpoint", "results": [{"id", "hash_digest", "algorithm",
//!   "ideology", "file_type", "deleted", "updated_on", "created_on"}]}`
//!   (the service's endpoint is `https://app.terrorismanalytics.org`;
//!   python-threatexchange's path, which HMA uses, has the `api/` that
//!   TCAP's page leaves out).
//!
//! The credentials file has `username` and `password` (the client logs in
//! when it has no token, and again when a request is refused with 401, as
//! an expired JWT is), or a `token` alone (a JWT issued elsewhere; once it
//! is refused, fetching stops with [`ExchangeError::Refused`] until the
//! file has a fresh one), or both. None is ever logged.
//!
//! # Paging and the cursor
//!
//! The cursor is TCAP's own checkpoint, `"<UTC>,<id>"` (the `updated_on` of
//! the last record taken, seconds with a fraction, and its id), exactly as
//! the service wrote it; `""` is the beginning. Each fetch asks for the
//! records after it in ascending order (keyset paging, not `next`'s
//! offsets, which shift when records change between pages), and the page's
//! checkpoint (or, if the page gives none, the latest record's `updated_on`
//! and id) is the next cursor; [`Page::more`] is whether the service gave a `next` page. Records
//! with the same `updated_on` are told apart by their ids, so a second in
//! which thousands of records changed pages like any other.
//!
//! Records at or before the cursor are ones already taken (a service whose
//! `after` includes its bound sends the last one again) and are dropped. The
//! service going back is [`ExchangeError::CursorBack`], nothing applied: a
//! checkpoint before ours (a reset), or a page that promises more without
//! getting past ours (the same page again).
//!
//! # Records
//!
//! `PDQ` → `pdq`, `MD5` → `md5` (for any file type: hashfed's MD5 is of the
//! file's bytes), `SHA1` → `sha1`, `SHA256` → `sha256`; other algorithms
//! (`SHA512`, ...) are kept as opaque types of their lower-case name.
//! Labels: `tcap` and `ideology:<ideology>` (lower case). A record whose
//! `deleted` is true is a deletion of its id. External ids are `tcap:<id>`
//! in adds and deletions alike. A record without a whole-number id, a
//! numeric `updated_on`, a hash or an algorithm, or whose value is not a
//! hash of its type, is skipped into [`Page::skipped`] with its reason
//! (never its value); an answer that is not JSON, or whose checkpoint is not
//! `<UTC>,<id>`, is [`ExchangeError::Malformed`]. `filters.signal_types`
//! keeps only those types.
//!
//! # Feedback
//!
//! TCAP has a feedback API (`hash-list/v2/feedback`), but its public page
//! describes only the listing of feedback categories (`FALSE_POSITIVE`,
//! `INCLUSION`, ...), not the request that sends one, so this client sends
//! none: [`Client::send_feedback`] is [`ExchangeError::Unsupported`].

use std::cmp::Ordering;
use std::path::PathBuf;

use hyper::Method;
use serde_json::{json, Map, Value};

use super::http::{Http, Request, Response};
use super::text::{json_problem, percent_encode};
use super::{Credentials, ExchangeError, OutgoingFeedback, Page, Secret, Skipped};
use crate::config::ExchangeConfig;
use crate::import::{ImportItem, ImportOp, Position, RawSignal};
use crate::model::{Signal, SignalType};

/// The most records asked for per page.
const MAX_PAGE: u32 = 10_000;

/// Longest id taken (TCAP's are integers).
const MAX_ID_DIGITS: usize = 20;

/// A client of one TCAP exchange.
#[derive(Debug)]
pub struct Client {
    http: Http,
    username: Option<Secret>,
    password: Option<Secret>,
    /// The JWT in use (from the credentials file or the last login).
    token: Option<Secret>,
    page_size: u32,
    signal_types: Vec<SignalType>,
    credentials_path: PathBuf,
}

/// TCAP's checkpoint: the `updated_on` and id of a record, as text and as
/// numbers to compare.
#[derive(Clone, Debug, PartialEq)]
struct Checkpoint {
    text: String,
    at: f64,
    id: u64,
}

impl Checkpoint {
    /// `"<UTC>,<id>"`, the UTC in seconds (digits, an optional fraction).
    fn parse(text: &str) -> Option<Checkpoint> {
        let text = text.trim();
        let (at, id) = text.split_once(',')?;
        let (at, id) = (at.trim(), id.trim());
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (whole, fraction) = at.split_once('.').unwrap_or((at, "0"));
        if !digits(whole) || !digits(fraction) || !digits(id) || id.len() > MAX_ID_DIGITS {
            return None;
        }
        let at_value = at.parse::<f64>().ok().filter(|v| v.is_finite())?;
        Some(Checkpoint {
            text: format!("{at},{id}"),
            at: at_value,
            id: id.parse().ok()?,
        })
    }

    /// The checkpoint of a record.
    fn of(at: f64, id: u64) -> Checkpoint {
        Checkpoint {
            text: format!("{at},{id}"),
            at,
            id,
        }
    }

    fn order(&self, other: &Checkpoint) -> Ordering {
        self.at.total_cmp(&other.at).then(self.id.cmp(&other.id))
    }
}

impl Client {
    /// The client for `config`, with `credentials` (`username` and
    /// `password`, or a `token`, or both).
    pub fn new(
        config: &ExchangeConfig,
        credentials: Credentials,
        http: Http,
    ) -> Result<Self, ExchangeError> {
        let signal_types = super::signal_types(config)?;
        let username = credentials.optional("username").cloned();
        let password = credentials.optional("password").cloned();
        let token = credentials.optional("token").cloned();
        if username.is_some() != password.is_some() || (username.is_none() && token.is_none()) {
            return Err(ExchangeError::Credentials {
                path: credentials.path.clone(),
                reason: "TCAP needs `username` and `password` (to log in), or a `token`".into(),
            });
        }
        Ok(Client {
            http,
            username,
            password,
            token,
            page_size: config.page_size.clamp(1, MAX_PAGE),
            signal_types,
            credentials_path: credentials.path,
        })
    }

    /// The page after `cursor` (TCAP's checkpoint; "" for the first).
    pub async fn fetch(&mut self, cursor: &str) -> Result<Page, ExchangeError> {
        let at = match cursor.trim() {
            "" => None,
            text => Some(Checkpoint::parse(text).ok_or_else(|| {
                ExchangeError::Config(
                    "the stored cursor is not a TCAP checkpoint (`<UTC>,<id>`); reset the exchange"
                        .into(),
                )
            })?),
        };
        let mut path = format!("api/hash-list/v2/all?order=asc&limit={}", self.page_size);
        if let Some(at) = &at {
            path.push_str("&after=");
            path.push_str(&percent_encode(&at.text));
        }
        let answer = self.get(&path).await?;
        parse_page(&answer.body, at.as_ref(), &self.signal_types)
    }

    /// TCAP takes no feedback from this client (see the module's
    /// description).
    pub async fn send_feedback(&mut self, _f: &OutgoingFeedback) -> Result<(), ExchangeError> {
        Err(ExchangeError::Unsupported(
            "TCAP's public description does not say how to send feedback (only how to list its categories); verdicts on TCAP entries are not sent",
        ))
    }

    /// A GET with the token, logging in first if there is none, and again
    /// once if the token is refused.
    async fn get(&mut self, path: &str) -> Result<Response, ExchangeError> {
        if self.token.is_none() {
            self.login().await?;
        }
        let answer = self.send_get(path).await?;
        if answer.status != 401 || self.username.is_none() {
            return answer.ok();
        }
        self.token = None;
        self.login().await?;
        self.send_get(path).await?.ok()
    }

    async fn send_get(&self, path: &str) -> Result<Response, ExchangeError> {
        let token = self.token.as_ref().map(Secret::expose).unwrap_or_default();
        let request = Request::get(path)
            .header("accept", "application/json")
            .header("authorization", format!("Bearer {token}"));
        self.http.send(request).await
    }

    /// Logs in with the credentials' username and password.
    async fn login(&mut self) -> Result<(), ExchangeError> {
        let (Some(username), Some(password)) = (&self.username, &self.password) else {
            return Err(ExchangeError::Credentials {
                path: self.credentials_path.clone(),
                reason: "no `username` and `password` to log in to TCAP with".into(),
            });
        };
        let body = json!({"username": username.expose(), "password": password.expose()});
        let request = Request::with_body(Method::POST, "token-auth/tcap/", body.to_string().into())
            .header("content-type", "application/json")
            .header("accept", "application/json");
        let answer = self.http.send(request).await?.ok()?;
        let token = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|v| match v.get("token") {
                Some(Value::String(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
                _ => None,
            })
            .ok_or_else(|| ExchangeError::Malformed("TCAP's login answer has no token".into()))?;
        self.token = Some(Secret(token));
        Ok(())
    }
}

/// A hash list answer to a page, for a fetch after `at`.
fn parse_page(
    body: &[u8],
    at: Option<&Checkpoint>,
    signal_types: &[SignalType],
) -> Result<Page, ExchangeError> {
    let malformed = |why: String| ExchangeError::Malformed(format!("TCAP hash list: {why}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(json_problem(&e)))?;
    let Value::Object(mut top) = value else {
        return Err(malformed("the answer is not a JSON object".into()));
    };
    let more = match top.get("next") {
        None | Some(Value::Null) => false,
        Some(Value::String(next)) => !next.trim().is_empty(),
        Some(_) => return Err(malformed("\"next\" is not a URL or null".into())),
    };
    let checkpoint = match top.get("checkpoint") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if c.trim().is_empty() => None,
        Some(Value::String(c)) => Some(
            Checkpoint::parse(c)
                .ok_or_else(|| malformed("\"checkpoint\" is not `<UTC>,<id>`".into()))?,
        ),
        Some(_) => return Err(malformed("\"checkpoint\" is not a string".into())),
    };
    let results = match top.remove("results") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(results)) => results,
        Some(_) => return Err(malformed("\"results\" is not an array".into())),
    };
    if let (Some(cp), Some(at)) = (&checkpoint, at) {
        if cp.order(at) == Ordering::Less {
            return Err(ExchangeError::CursorBack(format!(
                "TCAP's checkpoint {} is before ours, {}",
                cp.text, at.text
            )));
        }
    }

    let mut page = Page::default();
    let mut latest: Option<Checkpoint> = None;
    for (index, record) in results.into_iter().enumerate() {
        let n = index as u64 + 1;
        let Value::Object(record) = record else {
            page.skipped.push(Skipped {
                id: None,
                reason: format!("record {n} of the page is not a JSON object"),
            });
            continue;
        };
        let (id, key) = match record_key(&record) {
            Ok(found) => found,
            Err((id, reason)) => {
                page.skipped.push(Skipped {
                    id: id.map(|id| format!("tcap:{id}")),
                    reason: format!("record {n} of the page: {reason}"),
                });
                continue;
            }
        };
        if at.is_some_and(|at| key.order(at) != Ordering::Greater) {
            continue; // taken already
        }
        if latest
            .as_ref()
            .is_none_or(|l| key.order(l) == Ordering::Greater)
        {
            latest = Some(key);
        }
        match take_record(&record, id, signal_types) {
            Ok(Some(op)) => page.items.push(ImportItem {
                position: Position {
                    record: Some(n),
                    ..Position::default()
                },
                op,
            }),
            Ok(None) => {}
            Err(reason) => page.skipped.push(Skipped {
                id: Some(format!("tcap:{id}")),
                reason: format!("record {n} of the page: {reason}"),
            }),
        }
    }

    // The service's checkpoint says where its page ends; without one, the
    // latest record does.
    let next = checkpoint.or(latest);
    let progressed = match (&next, at) {
        (Some(next), Some(at)) => next.order(at) == Ordering::Greater,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if more && !progressed {
        return Err(ExchangeError::CursorBack(
            "TCAP promised more records but did not get past our checkpoint (the same page again?)"
                .into(),
        ));
    }
    page.cursor = match (next, at) {
        (Some(next), _) => next.text,
        (None, Some(at)) => at.text.clone(),
        (None, None) => String::new(),
    };
    page.more = more;
    Ok(page)
}

/// A record's id and checkpoint, or (its id if it has one) why not.
fn record_key(record: &Map<String, Value>) -> Result<(u64, Checkpoint), (Option<u64>, String)> {
    let id = match record.get("id") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.len() <= MAX_ID_DIGITS => s.trim().parse::<u64>().ok(),
        _ => None,
    }
    .ok_or((None, "no whole-number \"id\"".to_owned()))?;
    let at = record
        .get("updated_on")
        .and_then(Value::as_f64)
        .filter(|at| at.is_finite() && *at >= 0.0)
        .ok_or((Some(id), "no numeric \"updated_on\"".to_owned()))?;
    Ok((id, Checkpoint::of(at, id)))
}

/// One record to what it asks for: `Ok(None)` if the filter leaves it out.
fn take_record(
    record: &Map<String, Value>,
    id: u64,
    signal_types: &[SignalType],
) -> Result<Option<ImportOp>, String> {
    let external_id = format!("tcap:{id}");
    let deleted = match record.get("deleted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("\"deleted\" is not true or false".into()),
    };
    if deleted {
        return Ok(Some(ImportOp::RetractExternal { external_id }));
    }
    let text = |key: &str| match record.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(format!("no \"{key}\"")),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    };
    let value = text("hash_digest")?;
    let algorithm = text("algorithm")?;
    let type_name = match algorithm.to_ascii_uppercase().as_str() {
        "PDQ" => "pdq".to_owned(),
        "MD5" => "md5".to_owned(),
        "SHA1" | "SHA-1" => "sha1".to_owned(),
        "SHA256" | "SHA-256" => "sha256".to_owned(),
        _ => algorithm.to_ascii_lowercase(),
    };
    let signal = Signal::parse(&type_name, &value).map_err(|e| e.to_string())?;
    if !signal_types.is_empty() && !signal_types.contains(signal.kind()) {
        return Ok(None);
    }
    let mut labels = vec!["tcap".to_owned()];
    if let Some(Value::String(ideology)) = record.get("ideology") {
        let ideology = ideology.trim().to_lowercase();
        if !ideology.is_empty() {
            labels.push(format!("ideology:{ideology}"));
        }
    }
    Ok(Some(ImportOp::Add {
        signal: RawSignal { type_name, value },
        labels,
        external_id: Some(external_id),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PDQ: &str = "2afc4a5c09628a7961c14d436493bba66b89b831453baa1d556ba385554daa82";
    const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

    fn cp(text: &str) -> Checkpoint {
        Checkpoint::parse(text).unwrap()
    }

    fn rec(id: u64, at: f64, algorithm: &str, digest: &str) -> Value {
        json!({"id": id, "updated_on": at, "algorithm": algorithm, "hash_digest": digest,
               "ideology": "Far-Right", "file_type": "mp4", "deleted": false,
               "created_on": "2025-03-03T23:05:22.587000"})
    }

    fn body(results: Value, next: bool, checkpoint: Option<&str>) -> Vec<u8> {
        json!({
            "count": 100,
            "next": next.then_some("https://tcap.example/api/hash-list/v2/all?limit=2&offset=2&order=asc"),
            "previous": null,
            "checkpoint": checkpoint,
            "results": results,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn checkpoints_parse_and_order() {
        let a = cp("1724856487.709035,10594");
        assert_eq!(a.text, "1724856487.709035,10594");
        assert_eq!(a.id, 10594);
        assert_eq!(cp(" 1704085200,124 ").text, "1704085200,124");
        // Ties on the second are broken by id; microseconds count.
        assert_eq!(cp("5.5,2").order(&cp("5.5,10")), Ordering::Less);
        assert_eq!(cp("5.000001,1").order(&cp("5,999")), Ordering::Greater);
        assert_eq!(
            cp("1724856487.709035,3").order(&Checkpoint::of(1724856487.709035, 3)),
            Ordering::Equal
        );
        for bad in [
            "", "5", "x,1", "5,x", "-5,1", "1e9,1", "inf,1", "5.,1", "5,1,2", "5,-1",
        ] {
            assert!(Checkpoint::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(percent_encode("1.5,2"), "1.5%2C2");
    }

    #[test]
    fn pages_become_items() {
        let results = json!([
            rec(2819, 1704901040.222779, "MD5", MD5),
            rec(2820, 1704901040.24492, "PDQ", PDQ),
            {"id": 2821, "updated_on": 1704901040.25, "deleted": true},
            rec(2822, 1704901040.26, "SHA512", &"ab".repeat(64)),
        ]);
        let p = parse_page(&body(results, true, Some("1704901040.26,2822")), None, &[]).unwrap();
        assert!(p.more);
        assert_eq!(p.cursor, "1704901040.26,2822");
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(
            p.items[0].op,
            ImportOp::Add {
                signal: RawSignal {
                    type_name: "md5".into(),
                    value: MD5.into()
                },
                labels: vec!["tcap".into(), "ideology:far-right".into()],
                external_id: Some("tcap:2819".into()),
            }
        );
        assert!(
            matches!(&p.items[1].op, ImportOp::Add { signal, .. } if signal.type_name == "pdq")
        );
        assert_eq!(
            p.items[2].op,
            ImportOp::RetractExternal {
                external_id: "tcap:2821".into()
            }
        );
        assert!(
            matches!(&p.items[3].op, ImportOp::Add { signal, .. } if signal.type_name == "sha512")
        );
        // The type filter.
        let results = json!([rec(1, 1.0, "MD5", MD5), rec(2, 2.0, "PDQ", PDQ)]);
        let p = parse_page(&body(results, false, Some("2,2")), None, &[SignalType::Pdq]).unwrap();
        assert_eq!(p.items.len(), 1);
        assert!(!p.more);
    }

    #[test]
    fn bad_records_are_skipped() {
        let results = json!([
            rec(1, 1.0, "PDQ", PDQ),
            {"updated_on": 2.0, "algorithm": "PDQ", "hash_digest": PDQ},
            {"id": 3, "algorithm": "PDQ", "hash_digest": PDQ},
            rec(4, 4.0, "PDQ", "abc"),
            {"id": 5, "updated_on": 5.0, "hash_digest": PDQ},
            rec(6, 6.0, "Photo DNA", "00"),
            {"id": 7, "updated_on": 7.0, "deleted": "yes"},
            "nope",
            rec(9, 9.0, "MD5", MD5),
        ]);
        let p = parse_page(&body(results, false, Some("9,9")), None, &[]).unwrap();
        assert_eq!(p.items.len(), 2);
        let got: Vec<(Option<&str>, &str)> = p
            .skipped
            .iter()
            .map(|s| (s.id.as_deref(), s.reason.as_str()))
            .collect();
        assert_eq!(got.len(), 7, "{got:#?}");
        assert_eq!(
            got[0],
            (None, "record 2 of the page: no whole-number \"id\"")
        );
        assert_eq!(
            got[1],
            (
                Some("tcap:3"),
                "record 3 of the page: no numeric \"updated_on\""
            )
        );
        assert!(got[2].1.contains("pdq value must be 32 bytes"));
        assert!(got[3].1.contains("no \"algorithm\""));
        assert!(got[4].1.contains("signal type name"));
        assert!(got[5].1.contains("\"deleted\" is not true or false"));
        assert!(got[6].1.contains("not a JSON object"));
        for (_, r) in &got {
            assert!(!r.contains("abc") && !r.contains(&PDQ[..10]), "{r}");
        }
    }

    #[test]
    fn paging_by_checkpoint_drops_repeats_and_refuses_going_back() {
        let at = cp("10.5,7");
        // A bound-inclusive service sends the last record again: dropped.
        let results = json!([rec(7, 10.5, "PDQ", PDQ), rec(3, 10.500001, "MD5", MD5)]);
        let p = parse_page(&body(results, true, Some("10.500001,3")), Some(&at), &[]).unwrap();
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.cursor, "10.500001,3");
        // Same second, higher id: after ours.
        let results = json!([rec(8, 10.5, "MD5", MD5)]);
        let p = parse_page(&body(results, false, Some("10.5,8")), Some(&at), &[]).unwrap();
        assert_eq!((p.items.len(), p.cursor.as_str()), (1, "10.5,8"));
        // No checkpoint: the latest record's.
        let results = json!([rec(9, 11.25, "MD5", MD5), rec(8, 11.0, "MD5", MD5)]);
        let p = parse_page(&body(results, true, None), Some(&at), &[]).unwrap();
        assert_eq!(p.cursor, "11.25,9");
        // Caught up: an empty page keeps our cursor.
        let p = parse_page(&body(json!([]), false, None), Some(&at), &[]).unwrap();
        assert_eq!((p.cursor.as_str(), p.more), ("10.5,7", false));
        let p = parse_page(&body(json!([]), false, None), None, &[]).unwrap();
        assert_eq!(p.cursor, "");
        // A reset: the service's checkpoint is before ours.
        let results = json!([rec(1, 1.0, "MD5", MD5)]);
        assert!(matches!(
            parse_page(&body(results, true, Some("1,1")), Some(&at), &[]),
            Err(ExchangeError::CursorBack(_))
        ));
        // The same page again: more promised, nothing past ours.
        let results = json!([rec(6, 10.0, "MD5", MD5), rec(7, 10.5, "MD5", MD5)]);
        assert!(matches!(
            parse_page(&body(results, true, Some("10.5,7")), Some(&at), &[]),
            Err(ExchangeError::CursorBack(_))
        ));
        assert!(matches!(
            parse_page(&body(json!([]), true, None), None, &[]),
            Err(ExchangeError::CursorBack(_))
        ));
    }

    #[test]
    fn broken_answers_are_malformed() {
        let good = body(json!([rec(1, 1.0, "PDQ", PDQ)]), true, Some("1,1"));
        for b in [
            &good[..good.len() - 3],
            b"<html/>".as_slice(),
            b"[]",
            br#"{"results":[],"checkpoint":"yesterday"}"#,
            br#"{"results":{},"next":null}"#,
            br#"{"results":[],"next":5}"#,
            br#"{"results":[],"checkpoint":7}"#,
        ] {
            match parse_page(b, None, &[]) {
                Err(ExchangeError::Malformed(m)) => assert!(!m.contains(PDQ), "{m}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(b)),
            }
        }
    }
}
