//! Meta's ThreatExchange Graph API, through which GIFCT's hash-sharing
//! database (and other collaborations) is reached: the hashes of the
//! privacy groups an app follows, tailed through `/threat_updates`, and
//! providers' verdicts sent back as reactions on the descriptors.
//!
//! Written from the public description: Meta's ThreatExchange reference
//! (threat_updates, reactions) and python-threatexchange's client of it
//! (`exchanges/clients/fb_threatexchange/api.py`,
//! `exchanges/impl/fb_threatexchange_api.py`).
//!
//! # Requests
//!
//! The endpoint is the Graph API's versioned root
//! (`https://graph.facebook.com/v21.0`). Every request carries the app's
//! access token (credentials field `token`, usually `APP_ID|APP_SECRET`)
//! as the `access_token` parameter, as the API expects: in the query of a
//! GET, in the form body of a POST. Paths are never logged, and the `next`
//! links the API hands out (which repeat the token) are never kept: only
//! their `after` token is.
//!
//! A page is `GET <group>/threat_updates?access_token=…&fields=…&limit=…
//! &types=…[&start_time=…][&after=…]` with the fields
//! `id,indicator,type,last_updated,should_delete,descriptors{id,owner{id},tags,status}`
//! and the indicator types the filters want. Its answer is
//! `{"data": [update, …], "paging": {"cursors": {"after": …}, "next": …}}`;
//! a `next` link means more pages of this pass.
//!
//! # Updates
//!
//! Each update is a ThreatIndicator (one hash) as the privacy group sees
//! it now; an indicator changed again moves to the end of the list, so
//! tailing the list reproduces the group's contents.
//!
//! * Types: `HASH_PDQ` → `pdq`; `HASH_MD5` → `md5` (`video_md5` when a
//!   descriptor tags it `media_type_video`, as python-threatexchange reads
//!   it); `HASH_VIDEO_MD5` → `video_md5`; `HASH_TMK` → `tmk`, an opaque
//!   type until hashfed matches video. Other types are skipped.
//! * An update withdraws its indicator (`RetractExternal`) when
//!   `should_delete` is true, when its `descriptors` are gone (the API
//!   sometimes drops them instead of setting the flag: ThreatExchange issue
//!   834, as python-threatexchange handles it), or when every descriptor
//!   left says `NON_MALICIOUS` (nobody in the group calls it harmful).
//!   Otherwise it adds the hash, its labels the tags of the descriptors
//!   that do not say `NON_MALICIOUS` (either shape the API uses: a list of
//!   text, or `{"data": [{"text": …}]}`).
//! * External ids are `te:<indicator id>` in adds and withdrawals alike
//!   (feedback finds the descriptors from it). An indicator two followed
//!   groups share is one entry: the latest update of either group says
//!   what it is, and a withdrawal from either removes it; follow such
//!   groups as separate exchanges (separate sets) if that matters.
//! * `filters.signal_types` takes `pdq`, `md5` (photo and video MD5s: one
//!   type in hashfed), `video_md5` (video MD5s only) and `tmk`; all four if
//!   empty. `filters.privacy_groups` lists the groups' ids (required).
//!   Adding a type or group later: `hashfed exchange reset` re-reads from
//!   the start (a new group alone is read from its start anyway).
//!
//! A record that is not an update (no numeric id, no type, no indicator, a
//! malformed descriptor list, an unknown type) is [`Page::skipped`] with
//! its reason; an answer that is not JSON, has no `data` list, or a `next`
//! link without an `after` token is [`ExchangeError::Malformed`]. Graph
//! API errors that mean "too many calls" (codes 4, 17, 32, 613) are
//! [`ExchangeError::RateLimited`], whatever their HTTP status.
//!
//! # Cursor
//!
//! `te1;at=<group>;<group>=<since>,<seen>,<after>;…`, one `<group>=…` per
//! followed privacy group in configuration order, e.g.
//! `te1;at=1002;1001=1700000100,1700000100,;1002=0,1690000500,QVFIUmF4`.
//!
//! * A round reads each group in turn, one pass per group; `at` is the
//!   group the next page comes from (groups before it are done this round).
//! * `since`: the `start_time` (Unix seconds; 0 for the start) of the
//!   group's pass. `seen`: the latest `last_updated` read in it. `after`:
//!   the API's paging token within it, percent-encoded; empty before the
//!   pass's first page and once the pass is done.
//! * A pass ends with the page that has no `next`: its `since` becomes its
//!   `seen` (start times are inclusive, so the last second is read again,
//!   harmlessly: an update says what its indicator is now), and `at` moves
//!   to the next group; after the last group the round is over
//!   ([`Page::more`] false) and `at` is the first group again.
//! * `""` reads every group from its start. A group the cursor does not
//!   name starts from 0; one it names that is no longer followed is
//!   dropped. A cursor not of this form is a configuration error (reset
//!   the exchange).
//!
//! The cursor fully determines the request, so `fetch(c)` can be repeated
//! after a crash. Updates come in `last_updated` order, so a page with an
//! update older than `seen` (the service went back to an earlier page, or
//! ignored `start_time`), or one whose `after` token is the one it was
//! asked for (the same page again, for ever), is
//! [`ExchangeError::CursorBack`]: nothing of it is taken, and the same
//! cursor is tried again later.
//!
//! # Feedback
//!
//! A verdict on an entry `te:<indicator id>` becomes reactions on the
//! indicator's descriptors that other apps own (an app cannot react to its
//! own): `GET <indicator>/descriptors?fields=id,owner{id}` for them, then
//! `POST <descriptor>` with `reactions` and `reactions_to_remove`:
//!
//! * [`Verdict::Confirmed`]: adds `HELPFUL,SAW_THIS_TOO` (the content was
//!   seen on the platform, and the descriptor led to harmful content:
//!   python-threatexchange reads `HELPFUL` as a positive opinion), removes
//!   `DISAGREE_WITH_TAGS`.
//! * [`Verdict::FalsePositive`]: adds `DISAGREE_WITH_TAGS` (what HMA writes
//!   back for a false positive, and what python-threatexchange reads as a
//!   negative opinion), removes `HELPFUL,SAW_THIS_TOO`.
//!
//! Removing the other verdict's reactions keeps a changed mind from
//! leaving both. Reactions carry no reason, so the feedback's reason stays
//! here. Setting a reaction twice changes nothing, so a retry after a
//! partial failure is safe.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hyper::Method;
use serde_json::Value;

use super::http::{printable, Http, Request, Response};
use super::text::{percent_decode, percent_encode};
use super::{Credentials, ExchangeError, OutgoingFeedback, Page, Secret, Skipped};
use crate::config::ExchangeConfig;
use crate::import::{ImportItem, ImportOp, Position, RawSignal};
use crate::model::Verdict;

/// The fields asked of `/threat_updates`.
pub const UPDATE_FIELDS: &str =
    "id,indicator,type,last_updated,should_delete,descriptors{id,owner{id},tags,status}";

/// The signal types this client takes (hashfed's names, for
/// `filters.signal_types`).
pub const SIGNAL_TYPES: [&str; 4] = ["pdq", "md5", "video_md5", "tmk"];

/// Graph API error codes that mean "too many calls".
const RATE_LIMIT_CODES: [i64; 4] = [4, 17, 32, 613];

/// The tag python-threatexchange reads as "this MD5 is of a video".
const VIDEO_TAG: &str = "media_type_video";

/// Most pages of an indicator's descriptors read for feedback.
const MAX_DESCRIPTOR_PAGES: usize = 20;

/// What the cursor starts with.
const CURSOR_VERSION: &str = "te1";

/// A client of one ThreatExchange exchange.
#[derive(Debug)]
pub struct Client {
    http: Http,
    token: Secret,
    /// The app the token is for (its descriptors get no reactions).
    app_id: Option<String>,
    groups: Vec<String>,
    wanted: Wanted,
    page_size: u32,
}

/// Which of hashfed's type names the filters take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Wanted {
    pdq: bool,
    md5: bool,
    video_md5: bool,
    tmk: bool,
}

impl Wanted {
    fn from_filter(names: &[String]) -> Result<Self, ExchangeError> {
        if names.is_empty() {
            return Ok(Wanted {
                pdq: true,
                md5: true,
                video_md5: true,
                tmk: true,
            });
        }
        let mut w = Wanted {
            pdq: false,
            md5: false,
            video_md5: false,
            tmk: false,
        };
        for name in names {
            match name.trim().to_ascii_lowercase().as_str() {
                "pdq" => w.pdq = true,
                // Photo and video MD5s are one type in hashfed.
                "md5" => {
                    w.md5 = true;
                    w.video_md5 = true;
                }
                "video_md5" => w.video_md5 = true,
                "tmk" => w.tmk = true,
                _ => {
                    return Err(ExchangeError::Config(format!(
                        "threatexchange takes the signal types {}, not {:?}",
                        SIGNAL_TYPES.join(", "),
                        name.chars().take(40).collect::<String>()
                    )))
                }
            }
        }
        Ok(w)
    }

    fn takes(&self, type_name: &str) -> bool {
        match type_name {
            "pdq" => self.pdq,
            "md5" => self.md5,
            "video_md5" => self.video_md5,
            "tmk" => self.tmk,
            _ => false,
        }
    }

    /// The API's indicator types to ask for.
    fn api_types(&self) -> String {
        let mut types = Vec::new();
        if self.pdq {
            types.push("HASH_PDQ");
        }
        // Video MD5s come as HASH_MD5 tagged media_type_video too.
        if self.md5 || self.video_md5 {
            types.push("HASH_MD5");
        }
        if self.video_md5 {
            types.push("HASH_VIDEO_MD5");
        }
        if self.tmk {
            types.push("HASH_TMK");
        }
        types.join(",")
    }
}

/// hashfed's type name for an indicator type, given its descriptors' tags.
fn hash_type(api_type: &str, tags: &[String]) -> Option<&'static str> {
    Some(match api_type {
        "HASH_PDQ" => "pdq",
        "HASH_MD5" if tags.iter().any(|t| t == VIDEO_TAG) => "video_md5",
        "HASH_MD5" => "md5",
        "HASH_VIDEO_MD5" => "video_md5",
        "HASH_TMK" => "tmk",
        _ => return None,
    })
}

/// The reactions a verdict adds and removes.
pub fn reactions(verdict: Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Confirmed => ("HELPFUL,SAW_THIS_TOO", "DISAGREE_WITH_TAGS"),
        Verdict::FalsePositive => ("DISAGREE_WITH_TAGS", "HELPFUL,SAW_THIS_TOO"),
    }
}

impl Client {
    /// The client for `config`: its privacy groups, signal types and page
    /// size, the `token` of `credentials`.
    pub fn new(
        config: &ExchangeConfig,
        credentials: Credentials,
        http: Http,
    ) -> Result<Self, ExchangeError> {
        let mut groups: Vec<String> = Vec::new();
        for group in &config.filters.privacy_groups {
            let group = group.trim();
            if !is_id(group) {
                return Err(ExchangeError::Config(format!(
                    "privacy group {:?} is not a ThreatExchange id (digits)",
                    group.chars().take(40).collect::<String>()
                )));
            }
            if !groups.iter().any(|g| g == group) {
                groups.push(group.to_owned());
            }
        }
        if groups.is_empty() {
            return Err(ExchangeError::Config(
                "threatexchange needs filters.privacy_groups: the ids of the privacy groups to follow"
                    .into(),
            ));
        }
        let wanted = Wanted::from_filter(&config.filters.signal_types)?;
        let token = credentials.get("token")?.clone();
        let app_id = match credentials.optional("app_id") {
            Some(id) => Some(id.expose().trim().to_owned()),
            None => token
                .expose()
                .split_once('|')
                .map(|(id, _)| id.to_owned())
                .filter(|id| is_id(id)),
        };
        Ok(Client {
            http,
            token,
            app_id,
            groups,
            wanted,
            page_size: config.page_size.max(1),
        })
    }

    /// The page after `cursor` ("" for the first): one page of one privacy
    /// group's updates (see the module's documentation for the cursor).
    pub async fn fetch(&mut self, cursor: &str) -> Result<Page, ExchangeError> {
        let state = Cursor::parse(cursor, &self.groups)?;
        let at = state.at;
        let group = &self.groups[at];
        let pass = &state.passes[at];
        let mut query = vec![
            ("access_token", self.token.expose().to_owned()),
            ("fields", UPDATE_FIELDS.to_owned()),
            ("limit", self.page_size.to_string()),
            ("types", self.wanted.api_types()),
        ];
        if pass.since > 0 {
            query.push(("start_time", pass.since.to_string()));
        }
        if !pass.after.is_empty() {
            query.push(("after", pass.after.clone()));
        }
        let path = format!("{group}/threat_updates?{}", encode_query(&query));
        let response = graph_ok(self.http.send(Request::get(path)).await?)?;
        let parsed = parse_updates(&response.body, &self.wanted)?;
        let (cursor, more) = state.advance(&self.groups, &parsed)?;
        tracing::debug!(
            group = %group,
            records = parsed.records,
            items = parsed.items.len(),
            skipped = parsed.skipped.len(),
            more,
            "threatexchange page"
        );
        Ok(Page {
            items: parsed.items,
            skipped: parsed.skipped,
            cursor,
            more,
        })
    }

    /// Sends one verdict back: reactions on the indicator's descriptors
    /// that other apps own (see the module's documentation).
    pub async fn send_feedback(&mut self, f: &OutgoingFeedback) -> Result<(), ExchangeError> {
        let indicator = f
            .external_id
            .strip_prefix("te:")
            .filter(|id| is_id(id))
            .ok_or(ExchangeError::Unsupported(
            "feedback for an entry that did not come from ThreatExchange (no te:<indicator id>)",
        ))?;
        let (add, remove) = reactions(f.verdict);
        let descriptors = self.descriptors_of(indicator).await?;
        let mut sent = 0usize;
        for (descriptor, owner) in &descriptors {
            if owner.is_some() && *owner == self.app_id {
                continue;
            }
            let body = encode_query(&[
                ("access_token", self.token.expose().to_owned()),
                ("reactions", add.to_owned()),
                ("reactions_to_remove", remove.to_owned()),
            ]);
            let request = Request::with_body(Method::POST, descriptor.clone(), body.into_bytes())
                .header("content-type", "application/x-www-form-urlencoded");
            let response = graph_ok(self.http.send(request).await?)?;
            // The API answers {"success": true}; anything saying otherwise
            // is a refusal.
            if let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&response.body) {
                if answer.get("success") == Some(&Value::Bool(false)) {
                    return Err(ExchangeError::Refused {
                        status: response.status,
                        message: "the reaction was not taken".into(),
                    });
                }
            }
            sent += 1;
        }
        tracing::debug!(
            descriptors = descriptors.len(),
            reacted = sent,
            verdict = %f.verdict,
            "threatexchange feedback sent"
        );
        Ok(())
    }

    /// The ids and owners of an indicator's descriptors.
    async fn descriptors_of(
        &self,
        indicator: &str,
    ) -> Result<Vec<(String, Option<String>)>, ExchangeError> {
        let mut out = Vec::new();
        let mut after = String::new();
        for _ in 0..MAX_DESCRIPTOR_PAGES {
            let mut query = vec![
                ("access_token", self.token.expose().to_owned()),
                ("fields", "id,owner{id}".to_owned()),
                ("limit", "100".to_owned()),
            ];
            if !after.is_empty() {
                query.push(("after", after.clone()));
            }
            let path = format!("{indicator}/descriptors?{}", encode_query(&query));
            let response = graph_ok(self.http.send(Request::get(path)).await?)?;
            let answer = json_object(&response.body)?;
            let data = answer
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| ExchangeError::Malformed("descriptors: no data list".into()))?;
            for d in data {
                let id = d.get("id").and_then(id_of).ok_or_else(|| {
                    ExchangeError::Malformed("descriptors: one without a numeric id".into())
                })?;
                let owner = d.get("owner").and_then(|o| o.get("id")).and_then(id_of);
                out.push((id, owner));
            }
            match next_after(&answer)? {
                Some(next) if next != after => after = next,
                _ => break,
            }
        }
        Ok(out)
    }
}

/// The answer if it is a success; a Graph API "too many calls" error as
/// [`ExchangeError::RateLimited`]; otherwise what its status means.
fn graph_ok(response: Response) -> Result<Response, ExchangeError> {
    if (200..300).contains(&response.status) {
        return Ok(response);
    }
    let code = serde_json::from_slice::<Value>(&response.body)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64());
    if code.is_some_and(|c| RATE_LIMIT_CODES.contains(&c)) && response.status != 429 {
        return Err(ExchangeError::RateLimited { retry_after: None });
    }
    response.ok()
}

/// One privacy group's pass, as the cursor keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Pass {
    since: u64,
    seen: u64,
    after: String,
}

/// The cursor, for the configured groups (in their order).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cursor {
    /// The index of the group the next page comes from.
    at: usize,
    /// One pass per configured group.
    passes: Vec<Pass>,
}

impl Cursor {
    fn parse(text: &str, groups: &[String]) -> Result<Self, ExchangeError> {
        let mut cursor = Cursor {
            at: 0,
            passes: vec![Pass::default(); groups.len()],
        };
        if text.is_empty() {
            return Ok(cursor);
        }
        let bad = |why: &str| {
            ExchangeError::Config(format!(
                "cursor {:?} is not a threatexchange cursor ({why}): reset the exchange",
                printable(text.as_bytes(), 60)
            ))
        };
        let mut parts = text.split(';');
        if parts.next() != Some(CURSOR_VERSION) {
            return Err(bad("no te1 at its start"));
        }
        let at = parts
            .next()
            .and_then(|p| p.strip_prefix("at="))
            .ok_or_else(|| bad("no at="))?;
        let mut named = BTreeMap::new();
        for part in parts {
            let (group, pass) = part
                .split_once('=')
                .ok_or_else(|| bad("a group without ="))?;
            let mut fields = pass.split(',');
            let (Some(since), Some(seen), Some(after), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad("a group without since,seen,after"));
            };
            let since: u64 = since.parse().map_err(|_| bad("since is not a number"))?;
            let seen: u64 = seen.parse().map_err(|_| bad("seen is not a number"))?;
            if seen < since {
                return Err(bad("seen before since"));
            }
            let after = percent_decode(after).ok_or_else(|| bad("after is not percent-encoded"))?;
            if !is_id(group) {
                return Err(bad("a group that is not an id"));
            }
            named.insert(group.to_owned(), Pass { since, seen, after });
        }
        for (i, group) in groups.iter().enumerate() {
            if let Some(pass) = named.remove(group) {
                cursor.passes[i] = pass;
            }
        }
        cursor.at = groups.iter().position(|g| g == at).unwrap_or(0);
        Ok(cursor)
    }

    fn render(&self, groups: &[String]) -> String {
        let mut out = format!("{CURSOR_VERSION};at={}", groups[self.at]);
        for (group, pass) in groups.iter().zip(&self.passes) {
            let _ = write!(
                out,
                ";{group}={},{},{}",
                pass.since,
                pass.seen,
                percent_encode(&pass.after)
            );
        }
        out
    }

    /// The cursor after `page` of the current group, and whether more
    /// pages wait; an error if the page goes back.
    fn advance(
        mut self,
        groups: &[String],
        page: &UpdatesPage,
    ) -> Result<(String, bool), ExchangeError> {
        let group = &groups[self.at];
        let pass = &mut self.passes[self.at];
        if let Some(oldest) = page.oldest {
            if oldest < pass.seen {
                return Err(ExchangeError::CursorBack(format!(
                    "privacy group {group}: an update of {oldest} after one of {} was read",
                    pass.seen
                )));
            }
        }
        if let Some(next) = &page.after {
            if !pass.after.is_empty() && *next == pass.after {
                return Err(ExchangeError::CursorBack(format!(
                    "privacy group {group}: the next page's token is the one asked for"
                )));
            }
        }
        pass.seen = pass.seen.max(page.newest.unwrap_or(0));
        let more = match &page.after {
            Some(next) => {
                pass.after = next.clone();
                true
            }
            None => {
                pass.since = pass.seen;
                pass.after.clear();
                self.at += 1;
                if self.at == groups.len() {
                    self.at = 0;
                    false
                } else {
                    true
                }
            }
        };
        Ok((self.render(groups), more))
    }
}

/// A page of updates, read.
#[derive(Debug, Default)]
struct UpdatesPage {
    items: Vec<ImportItem>,
    skipped: Vec<Skipped>,
    /// Records in `data`.
    records: usize,
    /// The earliest and latest `last_updated` of its records.
    oldest: Option<u64>,
    newest: Option<u64>,
    /// The `after` token of the next page, if there is one.
    after: Option<String>,
}

/// Reads a `/threat_updates` answer.
fn parse_updates(body: &[u8], wanted: &Wanted) -> Result<UpdatesPage, ExchangeError> {
    let answer = json_object(body)?;
    let data = match answer.get("data") {
        Some(Value::Array(data)) => data,
        _ => {
            return Err(ExchangeError::Malformed(
                "threat_updates: no data list".into(),
            ))
        }
    };
    let mut page = UpdatesPage {
        records: data.len(),
        after: next_after(&answer)?,
        ..UpdatesPage::default()
    };
    for (i, record) in data.iter().enumerate() {
        let update = read_update(record, wanted);
        if let Some(t) = update.time {
            page.oldest = Some(page.oldest.map_or(t, |o| o.min(t)));
            page.newest = Some(page.newest.map_or(t, |n| n.max(t)));
        }
        let position = Position {
            record: Some(i as u64 + 1),
            ..Position::default()
        };
        match update.outcome {
            Outcome::Item(op) => page.items.push(ImportItem { position, op }),
            Outcome::Skip(id, reason) => page.skipped.push(Skipped {
                id,
                reason: format!("record {}: {reason}", i + 1),
            }),
            Outcome::Ignore => {}
        }
    }
    Ok(page)
}

/// The answer as a JSON object, or why not (never its contents).
fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ExchangeError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            if let Some(error) = map.get("error") {
                let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
                return Err(ExchangeError::Malformed(format!(
                    "a success that carries an error (code {code})"
                )));
            }
            Ok(map)
        }
        Ok(_) => Err(ExchangeError::Malformed("not a JSON object".into())),
        Err(e) => Err(ExchangeError::Malformed(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        ))),
    }
}

/// The `after` token of the next page if the answer has a `next` link:
/// `paging.cursors.after`, else the link's own `after` parameter.
fn next_after(answer: &serde_json::Map<String, Value>) -> Result<Option<String>, ExchangeError> {
    let paging = match answer.get("paging") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(paging)) => paging,
        Some(_) => return Err(ExchangeError::Malformed("paging is not an object".into())),
    };
    let next = match paging.get("next") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(next)) => next,
        Some(_) => return Err(ExchangeError::Malformed("paging.next is not a link".into())),
    };
    let after = paging
        .get("cursors")
        .and_then(|c| c.get("after"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| query_param(next, "after"))
        .filter(|a| !a.is_empty());
    match after {
        Some(after) => Ok(Some(after)),
        None => Err(ExchangeError::Malformed(
            "a next page without an after token".into(),
        )),
    }
}

/// What one update record asks.
enum Outcome {
    Item(ImportOp),
    /// Not for this exchange (a type the filters leave out).
    Ignore,
    /// Malformed: the record's id if it had one, and why (never values).
    Skip(Option<String>, String),
}

struct Update {
    time: Option<u64>,
    outcome: Outcome,
}

fn read_update(record: &Value, wanted: &Wanted) -> Update {
    let time = record.get("last_updated").and_then(unix_time);
    let outcome = read_outcome(record, wanted);
    Update { time, outcome }
}

fn read_outcome(record: &Value, wanted: &Wanted) -> Outcome {
    let Value::Object(record) = record else {
        return Outcome::Skip(None, "not a JSON object".into());
    };
    let Some(id) = record.get("id").and_then(id_of) else {
        return Outcome::Skip(None, "no numeric id".into());
    };
    let skip = |reason: &str| Outcome::Skip(Some(id.clone()), reason.to_owned());
    let should_delete = match record.get("should_delete") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return skip("should_delete is not true or false"),
    };
    let api_type = match record.get("type") {
        Some(Value::String(t)) if !t.is_empty() => Some(t.as_str()),
        None | Some(Value::Null) => None,
        Some(_) => return skip("type is not text"),
    };
    // The descriptors still visible to the group: (status, tags) each.
    let descriptors = match record.get("descriptors") {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => match d.get("data") {
            Some(Value::Array(list)) => {
                let mut out = Vec::with_capacity(list.len());
                for (n, d) in list.iter().enumerate() {
                    let Value::Object(d) = d else {
                        return skip(&format!("descriptor {} is not an object", n + 1));
                    };
                    let status = d.get("status").and_then(Value::as_str).unwrap_or("");
                    out.push((status == "NON_MALICIOUS", tags_of(d.get("tags"))));
                }
                Some(out)
            }
            _ => return skip("descriptors has no data list"),
        },
        Some(_) => return skip("descriptors is not an object"),
    };
    let external_id = format!("te:{id}");
    let known = api_type.map(|t| hash_type(t, &[]).is_some());
    let harmful: Vec<&Vec<String>> = descriptors
        .iter()
        .flatten()
        .filter(|(non_malicious, _)| !non_malicious)
        .map(|(_, tags)| tags)
        .collect();
    if should_delete || harmful.is_empty() {
        return match known {
            // A withdrawal of a type never taken: nothing to do.
            Some(false) => Outcome::Ignore,
            _ => Outcome::Item(ImportOp::RetractExternal { external_id }),
        };
    }
    let Some(api_type) = api_type else {
        return skip("no type");
    };
    // Any descriptor's media_type_video makes an MD5 a video's.
    let all_tags: Vec<String> = descriptors
        .iter()
        .flatten()
        .flat_map(|(_, tags)| tags.iter().cloned())
        .collect();
    let Some(name) = hash_type(api_type, &all_tags) else {
        return skip(&format!(
            "indicator type {:?} is not one hashfed takes",
            api_type.chars().take(40).collect::<String>()
        ));
    };
    if !wanted.takes(name) {
        // Not (or no longer) something this exchange takes: withdrawn if
        // it was taken before (a photo MD5 that was a video's), else a
        // withdrawal that finds nothing.
        return Outcome::Item(ImportOp::RetractExternal { external_id });
    }
    let value = match record.get("indicator") {
        Some(Value::String(v)) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => return skip("no indicator"),
    };
    let mut labels: Vec<String> = harmful.into_iter().flatten().cloned().collect();
    labels.sort();
    labels.dedup();
    Outcome::Item(ImportOp::Add {
        signal: RawSignal {
            type_name: name.to_owned(),
            value,
        },
        labels,
        external_id: Some(external_id),
    })
}

/// A descriptor's tags, in either shape the API uses.
fn tags_of(tags: Option<&Value>) -> Vec<String> {
    let list: &[Value] = match tags {
        Some(Value::Array(list)) => list,
        Some(Value::Object(o)) => match o.get("data") {
            Some(Value::Array(list)) => list,
            _ => &[],
        },
        _ => &[],
    };
    list.iter()
        .filter_map(|t| match t {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("text").and_then(Value::as_str),
            _ => None,
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A Graph API id: digits, as text or a number.
fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if is_id(s) => Some(s.clone()),
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// A Unix time in seconds, as a number or as digits.
fn unix_time(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

fn encode_query(pairs: &[(&str, String)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(name);
        out.push('=');
        out.push_str(&percent_encode(value));
    }
    out
}

/// The parameter `name` of a link's query, decoded.
fn query_param(link: &str, name: &str) -> Option<String> {
    let query = link.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(&v.replace('+', " ")))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn groups() -> Vec<String> {
        vec!["1001".into(), "1002".into()]
    }

    fn all() -> Wanted {
        Wanted::from_filter(&[]).unwrap()
    }

    fn page(v: Value) -> UpdatesPage {
        parse_updates(v.to_string().as_bytes(), &all()).unwrap()
    }

    fn descriptor(tags: Value, status: &str) -> Value {
        json!({"id": "9001", "owner": {"id": "77"}, "tags": tags, "status": status})
    }

    fn update(id: u64, t: u64, api_type: &str, value: &str, descriptors: Option<Value>) -> Value {
        let mut u = json!({
            "id": id.to_string(), "indicator": value, "type": api_type,
            "last_updated": t, "should_delete": false,
        });
        if let Some(d) = descriptors {
            u["descriptors"] = json!({ "data": d });
        }
        u
    }

    #[test]
    fn cursor_round_trips_and_follows_the_configuration() {
        let g = groups();
        let start = Cursor::parse("", &g).unwrap();
        assert_eq!(start.at, 0);
        assert_eq!(start.passes, vec![Pass::default(); 2]);
        let c = Cursor {
            at: 1,
            passes: vec![
                Pass {
                    since: 10,
                    seen: 10,
                    after: String::new(),
                },
                Pass {
                    since: 0,
                    seen: 7,
                    after: "QV;=,%x y".into(),
                },
            ],
        };
        let text = c.render(&g);
        assert_eq!(text, "te1;at=1002;1001=10,10,;1002=0,7,QV%3B%3D%2C%25x%20y");
        assert_eq!(Cursor::parse(&text, &g).unwrap(), c);
        // A group no longer followed is dropped; a new one starts at 0; an
        // `at` no longer followed starts the round again.
        let other = vec!["1002".to_owned(), "1003".to_owned()];
        let moved = Cursor::parse(&text, &other).unwrap();
        assert_eq!(moved.at, 0);
        assert_eq!(moved.passes[0], c.passes[1]);
        assert_eq!(moved.passes[1], Pass::default());
        let elsewhere = Cursor::parse("te1;at=1001;1001=3,4,", &other).unwrap();
        assert_eq!(elsewhere.at, 0);
        for bad in [
            "ncmec:123",
            "te1",
            "te1;1001=1,2,",
            "te1;at=1001;1001=1,2",
            "te1;at=1001;1001=x,2,",
            "te1;at=1001;1001=3,2,",
            "te1;at=1001;1001=1,2,%zz",
            "te1;at=1001;abc=1,2,",
        ] {
            assert!(
                matches!(Cursor::parse(bad, &g), Err(ExchangeError::Config(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn passes_go_group_by_group_and_never_back() {
        let g = groups();
        let next = |after: Option<&str>, oldest, newest| UpdatesPage {
            after: after.map(str::to_owned),
            oldest,
            newest,
            ..UpdatesPage::default()
        };
        let c = Cursor::parse("", &g).unwrap();
        let (text, more) = c.advance(&g, &next(Some("A1"), Some(5), Some(9))).unwrap();
        assert!(more);
        assert_eq!(text, "te1;at=1001;1001=0,9,A1;1002=0,0,");
        // The last page of the first group: its pass is done.
        let c = Cursor::parse(&text, &g).unwrap();
        let (text, more) = c.advance(&g, &next(None, Some(9), Some(12))).unwrap();
        assert!(more);
        assert_eq!(text, "te1;at=1002;1001=12,12,;1002=0,0,");
        // The second group's only page ends the round.
        let c = Cursor::parse(&text, &g).unwrap();
        let (text, more) = c.advance(&g, &next(None, None, None)).unwrap();
        assert!(!more);
        assert_eq!(text, "te1;at=1001;1001=12,12,;1002=0,0,");
        // Older than what was read: back. The same token again: back.
        let c = Cursor::parse(&text, &g).unwrap();
        let back = c.clone().advance(&g, &next(None, Some(11), Some(20)));
        assert!(
            matches!(back, Err(ExchangeError::CursorBack(_))),
            "{back:?}"
        );
        let c = Cursor::parse("te1;at=1001;1001=12,14,A7;1002=0,0,", &g).unwrap();
        let same = c.clone().advance(&g, &next(Some("A7"), Some(14), Some(15)));
        assert!(
            matches!(same, Err(ExchangeError::CursorBack(_))),
            "{same:?}"
        );
        // The same second again is no step back.
        assert!(c.advance(&g, &next(Some("A8"), Some(14), Some(14))).is_ok());
    }

    #[test]
    fn updates_become_adds_and_withdrawals() {
        let pdq = "f".repeat(64);
        let p = page(json!({
            "data": [
                update(1, 100, "HASH_PDQ", &pdq, Some(json!([
                    descriptor(json!({"data": [{"id": "1", "text": "tvec"}, {"id": "2", "text": "gifct"}]}), "MALICIOUS"),
                    descriptor(json!(["gifct", " extra "]), "SUSPICIOUS"),
                    descriptor(json!(["ignored-tag"]), "NON_MALICIOUS"),
                ]))),
                update(2, 100, "HASH_MD5", "d41d8cd98f00b204e9800998ecf8427e",
                    Some(json!([descriptor(json!(["media_type_video"]), "MALICIOUS")]))),
                update(3, 101, "HASH_MD5", "d41d8cd98f00b204e9800998ecf8427e",
                    Some(json!([descriptor(Value::Null, "MALICIOUS")]))),
                update(4, 101, "HASH_VIDEO_MD5", "00", Some(json!([descriptor(json!([]), "UNKNOWN")]))),
                update(5, 102, "HASH_TMK", "abcd", Some(json!([descriptor(json!([]), "MALICIOUS")]))),
                {"id": 6, "type": "HASH_PDQ", "indicator": pdq, "last_updated": "103",
                 "should_delete": true, "descriptors": {"data": []}},
                // Descriptors gone (ThreatExchange issue 834).
                update(7, 104, "HASH_PDQ", &pdq, None),
                // Nobody calls it harmful any more.
                update(8, 104, "HASH_PDQ", &pdq, Some(json!([descriptor(json!(["x"]), "NON_MALICIOUS")]))),
                // A withdrawal of a type never taken.
                {"id": "9", "type": "URI", "should_delete": true, "last_updated": 104},
            ],
            "paging": {"cursors": {"before": "B", "after": "AFTER"}, "next": "https://x/v1/1/threat_updates?access_token=secret&after=AFTER"},
        }));
        assert_eq!(p.records, 9);
        assert_eq!((p.oldest, p.newest), (Some(100), Some(104)));
        assert_eq!(p.after.as_deref(), Some("AFTER"));
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        let ops: Vec<&ImportOp> = p.items.iter().map(|i| &i.op).collect();
        let add = |t: &str, v: &str, labels: &[&str], id: u32| ImportOp::Add {
            signal: RawSignal {
                type_name: t.into(),
                value: v.into(),
            },
            labels: labels.iter().map(|l| l.to_string()).collect(),
            external_id: Some(format!("te:{id}")),
        };
        let gone = |id: u32| ImportOp::RetractExternal {
            external_id: format!("te:{id}"),
        };
        assert_eq!(
            ops,
            vec![
                &add("pdq", &pdq, &["extra", "gifct", "tvec"], 1),
                &add(
                    "video_md5",
                    "d41d8cd98f00b204e9800998ecf8427e",
                    &["media_type_video"],
                    2
                ),
                &add("md5", "d41d8cd98f00b204e9800998ecf8427e", &[], 3),
                &add("video_md5", "00", &[], 4),
                &add("tmk", "abcd", &[], 5),
                &gone(6),
                &gone(7),
                &gone(8),
            ]
        );
        assert_eq!(p.items[1].position.record, Some(2));
    }

    #[test]
    fn filters_take_their_types_and_withdraw_the_rest() {
        let video_only = Wanted::from_filter(&["video_md5".into()]).unwrap();
        assert_eq!(video_only.api_types(), "HASH_MD5,HASH_VIDEO_MD5");
        assert_eq!(
            Wanted::from_filter(&["PDQ".into()]).unwrap().api_types(),
            "HASH_PDQ"
        );
        assert_eq!(
            all().api_types(),
            "HASH_PDQ,HASH_MD5,HASH_VIDEO_MD5,HASH_TMK"
        );
        assert!(matches!(
            Wanted::from_filter(&["sha1".into()]),
            Err(ExchangeError::Config(_))
        ));
        let body = json!({"data": [
            update(1, 1, "HASH_MD5", "aa", Some(json!([descriptor(json!(["media_type_video"]), "MALICIOUS")]))),
            // A photo MD5: not taken, so withdrawn if it was taken as a video's.
            update(2, 1, "HASH_MD5", "bb", Some(json!([descriptor(json!([]), "MALICIOUS")]))),
        ]});
        let p = parse_updates(body.to_string().as_bytes(), &video_only).unwrap();
        assert!(
            matches!(&p.items[0].op, ImportOp::Add { signal, .. } if signal.type_name == "video_md5")
        );
        assert_eq!(
            p.items[1].op,
            ImportOp::RetractExternal {
                external_id: "te:2".into()
            }
        );
    }

    #[test]
    fn malformed_records_are_skipped_with_reasons_not_values() {
        let secret_value = "c0ffee".repeat(10);
        let p = page(json!({"data": [
            42,
            {"indicator": secret_value, "type": "HASH_PDQ"},
            {"id": "x1", "indicator": secret_value},
            {"id": "3", "type": "HASH_PDQ", "descriptors": {"data": [descriptor(json!([]), "MALICIOUS")]}},
            {"id": "4", "type": "URI", "indicator": secret_value, "descriptors": {"data": [descriptor(json!([]), "MALICIOUS")]}},
            {"id": "5", "type": "HASH_PDQ", "indicator": secret_value, "should_delete": "yes"},
            {"id": "6", "type": "HASH_PDQ", "indicator": secret_value, "descriptors": {"data": [7]}},
            {"id": "7", "type": "HASH_PDQ", "indicator": secret_value, "descriptors": []},
            {"id": "8", "indicator": secret_value, "descriptors": {"data": [descriptor(json!([]), "MALICIOUS")]}},
            {"id": "9", "type": 5, "indicator": secret_value},
        ]}));
        assert!(p.items.is_empty(), "{:?}", p.items);
        assert_eq!(p.skipped.len(), 10);
        assert_eq!(p.skipped[0].id, None);
        assert_eq!(p.skipped[3].id.as_deref(), Some("3"));
        for s in &p.skipped {
            assert!(!s.reason.contains("c0ffee"), "{s:?}");
            assert!(s.reason.starts_with("record "), "{s:?}");
        }
        assert!(p.skipped[4].reason.contains("URI"), "{:?}", p.skipped[4]);
    }

    #[test]
    fn unparsable_pages_are_malformed() {
        for bad in [
            &b"<html>oops</html>"[..],
            b"[1, 2]",
            b"{\"data\": {}}",
            b"{\"paging\": {}}",
            b"{\"data\": [], \"paging\": 3}",
            b"{\"data\": [], \"paging\": {\"next\": \"https://x/y?limit=1\"}}",
            b"{\"data\": [], \"paging\": {\"next\": 5}}",
            b"{\"error\": {\"code\": 190, \"message\": \"bad\"}}",
            b"{\"data\": [{\"id\": \"1\"",
        ] {
            assert!(
                matches!(parse_updates(bad, &all()), Err(ExchangeError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // The after token from the link when the cursors do not say it.
        let p = page(
            json!({"data": [], "paging": {"next": "https://x/1/threat_updates?limit=5&after=QQ%3D%3D"}}),
        );
        assert_eq!(p.after.as_deref(), Some("QQ=="));
        // No next: the last page, whatever its cursors say.
        let p = page(json!({"data": [], "paging": {"cursors": {"after": "Z"}}}));
        assert_eq!(p.after, None);
    }

    #[test]
    fn graph_errors_map_to_exchange_errors() {
        let answer = |status: u16, body: &str| Response {
            status,
            headers: Default::default(),
            body: body.as_bytes().to_vec().into(),
        };
        let limited = graph_ok(answer(
            400,
            r#"{"error":{"message":"Application request limit reached","code":4}}"#,
        ));
        assert!(
            matches!(limited, Err(ExchangeError::RateLimited { .. })),
            "{limited:?}"
        );
        let token = graph_ok(answer(
            400,
            r#"{"error":{"message":"Invalid OAuth access token.","type":"OAuthException","code":190}}"#,
        ));
        assert!(
            matches!(token, Err(ExchangeError::Refused { status: 400, .. })),
            "{token:?}"
        );
        assert!(matches!(
            graph_ok(answer(500, "{}")),
            Err(ExchangeError::Server { status: 500 })
        ));
        assert!(graph_ok(answer(200, "{}")).is_ok());
    }

    #[test]
    fn queries_are_encoded_and_reactions_mapped() {
        let q = encode_query(&[
            ("access_token", "123|ab c".into()),
            ("fields", UPDATE_FIELDS.into()),
        ]);
        assert!(
            q.starts_with("access_token=123%7Cab%20c&fields=id%2Cindicator%2C"),
            "{q}"
        );
        assert!(q.contains("descriptors%7Bid%2Cowner%7Bid%7D"), "{q}");
        assert_eq!(
            percent_decode(&percent_encode("a|b{c}=%")).as_deref(),
            Some("a|b{c}=%")
        );
        assert_eq!(
            query_param("https://h/p?a=1&after=x%2By+z", "after").as_deref(),
            Some("x+y z")
        );
        assert_eq!(query_param("https://h/p?a=1", "after"), None);
        assert_eq!(
            reactions(Verdict::Confirmed),
            ("HELPFUL,SAW_THIS_TOO", "DISAGREE_WITH_TAGS")
        );
        assert_eq!(
            reactions(Verdict::FalsePositive),
            ("DISAGREE_WITH_TAGS", "HELPFUL,SAW_THIS_TOO")
        );
    }
}
