//! NCMEC's Hash Sharing API v2, written from its public description
//! (python-threatexchange's `exchanges/clients/ncmec/hash_api.py` and the
//! samples in its tests; NCMEC's own documentation is behind a login).
//!
//! # The API as used here
//!
//! * **Where.** Each *environment* is a database of its own under a path
//!   of NCMEC's hosts: `industry` (`/hashsharing`, upstream's first and the
//!   default here), `industry-exploitative` (`/exploitative-hashsharing`),
//!   `law-enforcement` (`/csam-hashsharing`), `ngo` (`/npo`),
//!   `exploitative` (`/exploitative`), `ngo-generative-ai`
//!   (`/generative-ai-csam`) and `ngo-generative-ai-exploitative`
//!   (`/generative-ai-exploitative`); upstream's spellings (`NGO`,
//!   `test_Industry`, ...) work too, the test environments being the same
//!   paths on NCMEC's test hosts. `filters.environment` names one and the
//!   endpoint gives the host: its path is appended to the endpoint's
//!   unless the endpoint already ends with it (`https://report.cybertip.org`
//!   and `https://report.cybertip.org/hashsharing` are the same). With no
//!   environment, an endpoint with a path is taken as the environment's
//!   root as it is (a proxy), and one without gets `/hashsharing`.
//! * **Auth.** HTTP Basic with the credentials file's `user` and
//!   `password`, on every request.
//! * **`GET v2/status`** says who we are (`<status><member id="..">`):
//!   [`Client::status`]. **`GET v2/members`** lists the members
//!   ([`Client::members`]).
//! * **`GET v2/entries?from=..&to=..`** answers the entries changed in that
//!   time range (UTC, `YYYY-MM-DDTHH:MM:SSZ`) as a `<queryResult>` of
//!   `<images>` and `<videos>` (`<image>`, `<video>`, and the tombstones
//!   `<deletedImage>`, `<deletedVideo>`), parsed by
//!   `import::ncmec_xml` (the file importer's parser, so external ids,
//!   labels and type names are the same as a file import's), and a
//!   `<paging><next>` link to the rest of the range. The link is a path
//!   under the environment's root (`/v2/entries?from=..&to=..&start=2001&
//!   size=1000&max=3000`), followed as it is. Entries within a range do
//!   **not** come in time order, so nothing short of a finished range says
//!   that everything before some time is in.
//! * **`PUT v2/entries/{esp}/{entry}/{type}/feedback`** votes on one
//!   fingerprint of an entry: `<feedbackSubmission><affirmative/>` or
//!   `<negative><reasonIds><guid>..` with one of the reasons
//!   `GET v2/feedback/{type}/reasons` offers ([`Client::send_feedback`]).
//!
//! # Fingerprints
//!
//! Every fingerprint with a value is kept, under the element's own name as
//! the file importer writes it (`md5`, `sha1`, `pdq`, `pdna`, `netclean`,
//! `videntifier`, `tmk-pdqf`, `ssvh-...`): `pdq` is matched as PDQ, `md5`
//! and `sha1` exactly, `pdna` as the opaque `photodna`, and the others as
//! opaque values under their own names until hashfed has their signal
//! types. Large fingerprints (TMK+PDQF, Videntifier) may come as links to
//! be fetched one by one, whose answer the public description does not
//! show; they are not fetched, and an entry with nothing but links is
//! skipped with that reason. `filters.signal_types`, when given, keeps
//! only those types' additions (deletions always pass).
//!
//! # The cursor
//!
//! One of:
//!
//! * `""`: from the beginning (a range from 1970).
//! * `v1 from=<F>`: everything changed before `F` (Unix seconds) is in; the
//!   next fetch asks for the range from `F` to now less
//!   [`SETTLE_SECS`] (changes that recent may still be arriving).
//! * `v1 from=<F> to=<T> at=<A> next=<link>`: within the range `F..T`,
//!   the rest of which is at NCMEC's `next` link (everything after
//!   `next=`, verbatim), received at `A`.
//!
//! Why so: the range's start only moves once the whole range has been
//! paged, because entries come out of time order; and within a range the
//! position is NCMEC's own link, never a timestamp, so a range in which
//! every entry has the same timestamp (NCMEC's "cursed second") is paged
//! like any other: no loop, no skip. Fetching the same cursor again (after
//! a crash, before the page's records were stored) asks for the same page,
//! or for a range that contains it. A link older than
//! [`LINK_LIFETIME_SECS`] (NCMEC does not want them kept long), or one the
//! service no longer knows (HTTP 400, 404 or 410), starts its range again
//! from its first page: entries come again, none is missed. A `next` link
//! that goes back (a range starting or ending earlier than ours, or a page
//! not after the one it follows) is refused as
//! [`ExchangeError::CursorBack`], and the cursor stays where it was.
//!
//! Ranges meet end to start (the next `from` is the last `to`), as
//! python-threatexchange's do: an entry changed in that very second may
//! come twice, which changes nothing. NCMEC chooses the page size (its
//! links say `size=1000`); the public description shows no size on a
//! range's first request, so `page_size` is not sent.
//!
//! Nothing here logs credentials or fingerprint values; page logs carry
//! counts only.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::Method;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::http::{Http, Request, Response};
use super::text::{form_decode, percent_encode};
use super::{Credentials, ExchangeError, OutgoingFeedback, Page, Secret, Skipped};
use crate::config::ExchangeConfig;
use crate::import::ncmec_xml::NcmecXmlParser;
use crate::import::{snippet, ImportOp};
use crate::model::{SignalType, Verdict};

/// Seconds a range stops short of now: entries changed that recently may
/// still be on their way into NCMEC's answers (python-threatexchange
/// stops 5 s short; this is more careful, at no cost but latency).
pub const SETTLE_SECS: i64 = 30;

/// Seconds a `next` link is trusted after it was received (NCMEC asks
/// that paging links not be kept long; python-threatexchange drops them
/// after 12 hours).
pub const LINK_LIFETIME_SECS: i64 = 12 * 60 * 60;

/// The namespace of NCMEC's XML.
pub const NAMESPACE: &str = "https://hashsharing.ncmec.org/hashsharing/v2";

/// The environments: hashfed's name, and the path of its root on NCMEC's
/// hosts (python-threatexchange's `NCMECEnvironment`).
pub const ENVIRONMENTS: [(&str, &str); 7] = [
    ("industry", "/hashsharing"),
    ("industry-exploitative", "/exploitative-hashsharing"),
    ("law-enforcement", "/csam-hashsharing"),
    ("ngo", "/npo"),
    ("exploitative", "/exploitative"),
    ("ngo-generative-ai", "/generative-ai-csam"),
    (
        "ngo-generative-ai-exploitative",
        "/generative-ai-exploitative",
    ),
];

/// The environment used when none is configured.
pub const DEFAULT_ENVIRONMENT: &str = "industry";

/// Longest answer text quoted in an error.
const QUOTE: usize = 80;

/// A member of NCMEC's hash sharing (an ESP, an NGO, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its id (`<member id="..">`).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A reason NCMEC accepts for negative feedback on one fingerprint type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedbackReason {
    /// Its id, which a vote carries.
    pub guid: String,
    /// Its name, for people.
    pub name: String,
}

/// Where the time comes from (Unix seconds): the system clock, or a test's.
type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A client of one NCMEC environment.
pub struct Client {
    http: Http,
    /// The name of the exchange on this node, for logs.
    name: String,
    /// The absolute path of the environment's root ("" or `/hashsharing`).
    root: String,
    /// `Basic ...`.
    authorization: Secret,
    /// `filters.member_id`: the ESP id feedback is sent as.
    member_id: Option<String>,
    /// `filters.signal_types` (empty: all).
    signal_types: Vec<SignalType>,
    /// What NCMEC said that feedback needs (boxed: rarely used).
    asked: Box<Asked>,
    clock: Clock,
}

/// What the client asked NCMEC once and keeps.
#[derive(Debug, Default)]
struct Asked {
    /// Negative feedback reasons by fingerprint type.
    reasons: HashMap<String, Vec<FeedbackReason>>,
    /// Who we are.
    own: Option<Member>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ncmec::Client")
            .field("name", &self.name)
            .field("host", &self.http.host())
            .field("root", &self.root)
            .field("member_id", &self.member_id)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The client for `config`: its endpoint and `filters.environment`
    /// (see the module's description), `filters.member_id` and
    /// `filters.signal_types`; `credentials` must have `user` and
    /// `password`.
    pub fn new(
        config: &ExchangeConfig,
        credentials: Credentials,
        http: Http,
    ) -> Result<Self, ExchangeError> {
        let root = api_root(http.base(), &config.filters.environment)?;
        let user = credentials.get("user")?.expose();
        let password = credentials.get("password")?.expose();
        if user.contains(':') {
            return Err(ExchangeError::Config(
                "the NCMEC user name cannot contain ':' (HTTP Basic auth)".into(),
            ));
        }
        let authorization = Secret(format!(
            "Basic {}",
            base64(format!("{user}:{password}").as_bytes())
        ));
        let member_id = Some(config.filters.member_id.trim())
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        let signal_types = super::signal_types(config)?;
        Ok(Client {
            http,
            name: config.name.clone(),
            root,
            authorization,
            member_id,
            signal_types,
            asked: Box::default(),
            clock: Arc::new(system_now),
        })
    }

    /// The same client reading the time (Unix seconds) from `clock`
    /// instead of the system's: for tests and tools that replay a
    /// service's history.
    pub fn with_clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The absolute path of the environment's root on the endpoint's host
    /// (`/hashsharing`, ...; "" for the host's root).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The page after `cursor` ("" for the first; the cursor's format is
    /// in the module's description).
    pub async fn fetch(&mut self, cursor: &str) -> Result<Page, ExchangeError> {
        let now = (self.clock)();
        let (from, to, link) = match Cursor::parse(cursor)? {
            Cursor::Caught { from } => {
                let to = now.saturating_sub(SETTLE_SECS);
                if to <= from {
                    return Ok(Page {
                        cursor: cursor.to_owned(),
                        ..Page::default()
                    });
                }
                (from, to, None)
            }
            Cursor::Paging { from, to, at, next } => {
                if now.saturating_sub(at) > LINK_LIFETIME_SECS {
                    tracing::info!(
                        exchange = %self.name,
                        "ncmec: the paging link is more than {LINK_LIFETIME_SECS} s old; \
                         starting its range again"
                    );
                    (from, to, None)
                } else {
                    (from, to, Some(next))
                }
            }
        };
        let (answer, followed) = match link {
            Some(next) => {
                let answer = self.get(&self.link_path(&next)).await?;
                if matches!(answer.status, 400 | 404 | 410) {
                    tracing::warn!(
                        exchange = %self.name,
                        status = answer.status,
                        "ncmec: the service no longer knows the paging link; \
                         starting its range again"
                    );
                    (self.get(&self.range_path(from, to)).await?, None)
                } else {
                    (answer, Some(next))
                }
            }
            None => (self.get(&self.range_path(from, to)).await?, None),
        };
        let answer = answer.ok()?;
        let mut page = parse_page(&answer.body)?;
        if let Some(next) = &page.next {
            check_next(from, to, followed.as_deref(), next)?;
        }
        if !self.signal_types.is_empty() {
            let wanted = &self.signal_types;
            page.items.retain(|item| match &item.op {
                ImportOp::Add { signal, .. } => SignalType::parse(&signal.type_name)
                    .map(|t| wanted.contains(&t))
                    .unwrap_or(false),
                _ => true,
            });
        }
        let more = page.next.is_some();
        let cursor = match page.next {
            Some(next) => Cursor::Paging {
                from,
                to,
                at: now,
                next,
            },
            None => Cursor::Caught { from: to },
        };
        tracing::debug!(
            exchange = %self.name,
            items = page.items.len(),
            skipped = page.skipped.len(),
            more,
            "ncmec page"
        );
        Ok(Page {
            items: page.items,
            skipped: page.skipped,
            cursor: cursor.to_string(),
            more,
        })
    }

    /// Sends one verdict on one fingerprint of an entry: an affirmative
    /// vote for [`Verdict::Confirmed`], a negative one for
    /// [`Verdict::FalsePositive`] with the reason NCMEC offers for that
    /// fingerprint type whose name (or guid) is the feedback's reason
    /// (`benign_collision` matches "Benign Collision"), or its only reason
    /// if it offers one. The ESP id in the path is `filters.member_id`,
    /// else the member in the entry's external id
    /// (`ncmec:<member>:<entry>`), else ours from `v2/status`.
    pub async fn send_feedback(&mut self, f: &OutgoingFeedback) -> Result<(), ExchangeError> {
        let (member, entry) = split_external_id(&f.external_id).ok_or_else(|| {
            ExchangeError::Config(format!(
                "external id {:?} is not an NCMEC entry's (ncmec:<member>:<entry>)",
                snippet(&f.external_id, QUOTE)
            ))
        })?;
        let fingerprint = fingerprint_type(f.signal.kind())?;
        let esp = match (&self.member_id, member) {
            (Some(esp), _) => esp.clone(),
            (None, Some(member)) => member.to_owned(),
            (None, None) => self.status().await?.id,
        };
        let vote = match f.verdict {
            Verdict::Confirmed => "<affirmative/>".to_owned(),
            Verdict::FalsePositive => {
                let guid = self.reason_guid(&fingerprint, &f.reason).await?;
                format!(
                    "<negative><reasonIds><guid>{}</guid></reasonIds></negative>",
                    xml_escape(&guid)
                )
            }
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <feedbackSubmission xmlns=\"{NAMESPACE}\">{vote}</feedbackSubmission>\n"
        );
        let path = format!(
            "{}/v2/entries/{}/{}/{}/feedback",
            self.root,
            percent_encode(&esp),
            percent_encode(entry),
            fingerprint
        );
        let request = Request::with_body(Method::PUT, path, body.into_bytes())
            .header("authorization", self.authorization.expose())
            .header("content-type", "application/xml; charset=utf-8")
            .header("accept", "application/xml");
        self.http.send(request).await?.ok()?;
        tracing::debug!(exchange = %self.name, verdict = %f.verdict, "ncmec feedback sent");
        Ok(())
    }

    /// Who we are to NCMEC (`GET v2/status`).
    pub async fn status(&mut self) -> Result<Member, ExchangeError> {
        if let Some(own) = &self.asked.own {
            return Ok(own.clone());
        }
        let answer = self.get(&format!("{}/v2/status", self.root)).await?.ok()?;
        let members = elements(&answer.body, "status", "member")?;
        let member = match members.as_slice() {
            [one] => member_of(one)?,
            _ => {
                return Err(ExchangeError::Malformed(format!(
                    "status names {} members, not one",
                    members.len()
                )))
            }
        };
        self.asked.own = Some(member.clone());
        Ok(member)
    }

    /// The members of the environment (`GET v2/members`).
    pub async fn members(&mut self) -> Result<Vec<Member>, ExchangeError> {
        let answer = self.get(&format!("{}/v2/members", self.root)).await?.ok()?;
        elements(&answer.body, "", "member")?
            .iter()
            .map(member_of)
            .collect()
    }

    /// The reasons NCMEC accepts for negative feedback on `fingerprint`
    /// (`MD5`, `PDQ`, ...: `GET v2/feedback/{type}/reasons`).
    pub async fn feedback_reasons(
        &mut self,
        fingerprint: &str,
    ) -> Result<Vec<FeedbackReason>, ExchangeError> {
        if let Some(reasons) = self.asked.reasons.get(fingerprint) {
            return Ok(reasons.clone());
        }
        let answer = self
            .get(&format!(
                "{}/v2/feedback/{}/reasons",
                self.root,
                percent_encode(fingerprint)
            ))
            .await?
            .ok()?;
        let reasons = elements(&answer.body, "availableFeedbackReasons", "reason")?
            .into_iter()
            .map(|e| match (e.attr("guid"), e.attr("name")) {
                (Some(guid), name) if !guid.is_empty() => Ok(FeedbackReason {
                    guid: guid.to_owned(),
                    name: name.unwrap_or_default().to_owned(),
                }),
                _ => Err(ExchangeError::Malformed("a reason without a guid".into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.asked
            .reasons
            .insert(fingerprint.to_owned(), reasons.clone());
        Ok(reasons)
    }

    /// The guid of the reason for a negative vote on `fingerprint` that
    /// `wanted` names.
    async fn reason_guid(
        &mut self,
        fingerprint: &str,
        wanted: &str,
    ) -> Result<String, ExchangeError> {
        let reasons = self.feedback_reasons(fingerprint).await?;
        let key = reason_key(wanted);
        let chosen = reasons
            .iter()
            .find(|r| {
                !key.is_empty()
                    && (r.guid.eq_ignore_ascii_case(wanted.trim()) || reason_key(&r.name) == key)
            })
            .or(match reasons.as_slice() {
                [only] => Some(only),
                _ => None,
            });
        match chosen {
            Some(reason) => Ok(reason.guid.clone()),
            None => Err(ExchangeError::Config(format!(
                "NCMEC offers no negative feedback reason {:?} for {fingerprint}; it offers: {}",
                snippet(wanted, QUOTE),
                if reasons.is_empty() {
                    "none".to_owned()
                } else {
                    reasons
                        .iter()
                        .map(|r| reason_key(&r.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
        }
    }

    async fn get(&self, path: &str) -> Result<Response, ExchangeError> {
        self.http
            .send(
                Request::get(path)
                    .header("authorization", self.authorization.expose())
                    .header("accept", "application/xml"),
            )
            .await
    }

    /// The first page of the range `from..to`.
    fn range_path(&self, from: i64, to: i64) -> String {
        format!(
            "{}/v2/entries?from={}&to={}",
            self.root,
            percent_encode(&format_time(from)),
            percent_encode(&format_time(to))
        )
    }

    /// Where a `next` link points: under the environment's root, unless it
    /// already is.
    fn link_path(&self, next: &str) -> String {
        let under_root = !self.root.is_empty()
            && next
                .strip_prefix(self.root.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        if under_root {
            next.to_owned()
        } else {
            format!("{}{next}", self.root)
        }
    }
}

/// Where the cursor says the next page is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Cursor {
    /// Everything changed before `from` is in.
    Caught { from: i64 },
    /// Within the range `from..to`, at the link `next` received at `at`.
    Paging {
        from: i64,
        to: i64,
        at: i64,
        next: String,
    },
}

impl Cursor {
    fn parse(text: &str) -> Result<Self, ExchangeError> {
        let bad = || {
            ExchangeError::Config(format!(
                "cursor {:?} is not an NCMEC client's; `hashfed exchange reset` starts over",
                snippet(text, QUOTE)
            ))
        };
        if text.is_empty() {
            return Ok(Cursor::Caught { from: 0 });
        }
        let rest = text.strip_prefix("v1 ").ok_or_else(bad)?;
        let (fields, next) = match rest.split_once(" next=") {
            Some((fields, next)) => (fields, Some(next)),
            None => (rest, None),
        };
        let mut values = HashMap::new();
        for field in fields.split(' ') {
            let (key, value) = field.split_once('=').ok_or_else(bad)?;
            let value: i64 = value.parse().map_err(|_| bad())?;
            if value < 0 || values.insert(key, value).is_some() {
                return Err(bad());
            }
        }
        let mut take = |key| values.remove(key).ok_or_else(bad);
        let cursor = match next {
            None => Cursor::Caught {
                from: take("from")?,
            },
            Some(next) => {
                if !next.starts_with('/') {
                    return Err(bad());
                }
                Cursor::Paging {
                    from: take("from")?,
                    to: take("to")?,
                    at: take("at")?,
                    next: next.to_owned(),
                }
            }
        };
        if !values.is_empty() {
            return Err(bad());
        }
        Ok(cursor)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cursor::Caught { from } => write!(f, "v1 from={from}"),
            Cursor::Paging { from, to, at, next } => {
                write!(f, "v1 from={from} to={to} at={at} next={next}")
            }
        }
    }
}

/// One page of entries as parsed.
#[derive(Debug, Default)]
struct Parsed {
    items: Vec<crate::import::ImportItem>,
    skipped: Vec<Skipped>,
    next: Option<String>,
}

/// Parses an `entries` answer: a `<queryResult>`, whose bad entries are
/// skipped with their reason, or nothing at all.
fn parse_page(body: &[u8]) -> Result<Parsed, ExchangeError> {
    let mut parser = NcmecXmlParser::new(body);
    let mut page = Parsed::default();
    while let Some((result, id)) = parser.next_with_id() {
        match result {
            Ok(item) => page.items.push(item),
            Err(e) if e.fatal => {
                return Err(ExchangeError::Malformed(format!(
                    "{}: {}",
                    e.position, e.message
                )))
            }
            Err(e) => page.skipped.push(Skipped {
                id,
                reason: format!("{}: {}", e.position, e.message),
            }),
        }
    }
    match parser.root() {
        Some(root) if root.eq_ignore_ascii_case("queryResult") => {}
        Some(root) => {
            return Err(ExchangeError::Malformed(format!(
                "the answer is <{}>, not <queryResult>",
                snippet(root, 40)
            )))
        }
        None => return Err(ExchangeError::Malformed("an empty answer".into())),
    }
    if let Some(problem) = parser.paging_problem() {
        return Err(ExchangeError::Malformed(format!("paging: {problem}")));
    }
    page.next = parser.next_link().map(str::to_owned);
    Ok(page)
}

/// What a `next` link says of where it is.
#[derive(Debug, Default, PartialEq, Eq)]
struct LinkInfo {
    from: Option<i64>,
    to: Option<i64>,
    start: Option<u64>,
}

fn link_info(link: &str) -> LinkInfo {
    let mut info = LinkInfo::default();
    let Some((_, query)) = link.split_once('?') else {
        return info;
    };
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = form_decode(value);
        match key {
            "from" => info.from = parse_time(&value),
            "to" => info.to = parse_time(&value),
            "start" => info.start = value.trim().parse().ok(),
            _ => {}
        }
    }
    info
}

/// Refuses a `next` link that is not a path, or goes back: to a range
/// starting or ending before ours (`from..to`), or to a page that is not
/// after the one just read (`followed`: its link; `None` for the range's
/// first page).
fn check_next(from: i64, to: i64, followed: Option<&str>, next: &str) -> Result<(), ExchangeError> {
    if !next.starts_with('/') || next.starts_with("//") {
        return Err(ExchangeError::Malformed(format!(
            "a next link that is not a path: {:?}",
            snippet(next, QUOTE)
        )));
    }
    let info = link_info(next);
    if let Some(next_from) = info.from.filter(|&f| f < from) {
        return Err(ExchangeError::CursorBack(format!(
            "next page's range starts at {}, before ours at {}",
            format_time(next_from),
            format_time(from)
        )));
    }
    if let Some(next_to) = info.to.filter(|&t| t < to) {
        return Err(ExchangeError::CursorBack(format!(
            "next page's range ends at {}, before ours at {}",
            format_time(next_to),
            format_time(to)
        )));
    }
    if let Some(followed) = followed {
        match (info.start, link_info(followed).start) {
            (Some(start), Some(was)) if start <= was => {
                return Err(ExchangeError::CursorBack(format!(
                    "next page starts at record {start}, not after {was}"
                )))
            }
            _ if next == followed => {
                return Err(ExchangeError::CursorBack(
                    "the next page is the page just read".into(),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The environment's root under the endpoint's path `base`.
fn api_root(base: &str, environment: &str) -> Result<String, ExchangeError> {
    let wanted = environment.trim();
    if wanted.is_empty() && !base.is_empty() {
        return Ok(base.to_owned());
    }
    let wanted = if wanted.is_empty() {
        DEFAULT_ENVIRONMENT
    } else {
        wanted
    };
    let key = |s: &str| -> String {
        let lower = s.to_ascii_lowercase();
        let lower = lower
            .strip_prefix("test_")
            .or_else(|| lower.strip_prefix("test-"))
            .unwrap_or(&lower)
            .to_owned();
        lower
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect()
    };
    let Some((_, path)) = ENVIRONMENTS
        .iter()
        .find(|(name, _)| key(name) == key(wanted))
    else {
        return Err(ExchangeError::Config(format!(
            "filters.environment {:?} is not one of NCMEC's: {}",
            snippet(wanted, QUOTE),
            ENVIRONMENTS.map(|(name, _)| name).join(", ")
        )));
    };
    Ok(if base.ends_with(path) {
        base.to_owned()
    } else {
        format!("{base}{path}")
    })
}

/// `ncmec:<member>:<entry>` → (member, entry); `ncmec:<entry>` → (None,
/// entry). Member ids are numbers, so `ncmec:a:b` is entry `a:b`.
fn split_external_id(external_id: &str) -> Option<(Option<&str>, &str)> {
    let rest = external_id.trim().strip_prefix("ncmec:")?;
    let split = match rest.split_once(':') {
        Some((member, entry))
            if !member.is_empty()
                && member.bytes().all(|b| b.is_ascii_digit())
                && !entry.is_empty() =>
        {
            (Some(member), entry)
        }
        _ => (None, rest),
    };
    (!split.1.is_empty()).then_some(split)
}

/// NCMEC's name for a fingerprint type in feedback (`MD5`, `SHA1`, `PDNA`,
/// `PDQ`, `NETCLEAN`, `VIDENTIFIER`, `TMK_PDQF`, `SSVH_PDNA`,
/// `SSVH_SAFER_HASH`, ...): the element's name upper-cased, `-` as `_`.
fn fingerprint_type(kind: &SignalType) -> Result<String, ExchangeError> {
    Ok(match kind {
        SignalType::Pdq => "PDQ".into(),
        SignalType::Md5 => "MD5".into(),
        SignalType::Sha1 => "SHA1".into(),
        SignalType::Sha256 | SignalType::Blake3 => {
            return Err(ExchangeError::Unsupported(
                "NCMEC has no SHA-256 or BLAKE3 fingerprints to vote on",
            ))
        }
        SignalType::Opaque(name) if name == "photodna" => "PDNA".into(),
        SignalType::Opaque(name) => name
            .chars()
            .map(|c| match c {
                '-' | '.' => '_',
                c => c.to_ascii_uppercase(),
            })
            .collect(),
    })
}

/// A reason's name as a key: lower-case words joined by `_`
/// ("Benign Collision" → `benign_collision`).
fn reason_key(name: &str) -> String {
    name.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join("_")
}

/// One element of a small answer (status, members, reasons).
#[derive(Debug, Default)]
struct Element {
    attrs: Vec<(String, String)>,
    text: String,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn member_of(e: &Element) -> Result<Member, ExchangeError> {
    match e.attr("id").map(str::trim) {
        Some(id) if !id.is_empty() => Ok(Member {
            id: id.to_owned(),
            name: e.text.trim().to_owned(),
        }),
        _ => Err(ExchangeError::Malformed("a member without an id".into())),
    }
}

/// The elements named `name` (local name, any depth) of a small XML
/// answer whose root is `root` (any root if "").
fn elements(body: &[u8], root: &str, name: &str) -> Result<Vec<Element>, ExchangeError> {
    let malformed = |why: String| ExchangeError::Malformed(why);
    let mut reader = Reader::from_reader(body);
    let mut buf = Vec::new();
    let mut depth = 0u64;
    let mut seen_root = false;
    let mut found = Vec::new();
    // The element being read and its depth.
    let mut current: Option<(Element, u64)> = None;
    let attrs_of = |e: &BytesStart<'_>| -> Result<Vec<(String, String)>, ExchangeError> {
        e.attributes()
            .map(|a| {
                let a = a.map_err(|e| malformed(format!("bad attribute: {e}")))?;
                let value = a
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|e| malformed(format!("bad attribute: {e}")))?;
                Ok((
                    String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
                    value.into_owned(),
                ))
            })
            .collect()
    };
    loop {
        buf.clear();
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| malformed(format!("malformed XML: {e}")))?;
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) if current.is_none() => {
                depth += 1;
                let local = e.local_name();
                if depth == 1 {
                    seen_root = true;
                    if !root.is_empty() && !local.as_ref().eq_ignore_ascii_case(root.as_bytes()) {
                        return Err(malformed(format!(
                            "the answer is <{}>, not <{root}>",
                            snippet(&String::from_utf8_lossy(local.as_ref()), 40)
                        )));
                    }
                }
                if local.as_ref() == name.as_bytes() {
                    let element = Element {
                        attrs: attrs_of(&e)?,
                        text: String::new(),
                    };
                    if empty {
                        found.push(element);
                    } else {
                        current = Some((element, depth));
                    }
                }
                if empty {
                    depth -= 1;
                }
            }
            Event::Start(_) => depth += 1,
            Event::Empty(_) => {}
            Event::End(_) => {
                if current.as_ref().is_some_and(|(_, d)| *d == depth) {
                    if let Some((element, _)) = current.take() {
                        found.push(element);
                    }
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) => {
                if let Some((element, d)) = &mut current {
                    if *d == depth {
                        let text = std::str::from_utf8(&t)
                            .map_err(|_| malformed("text is not UTF-8".into()))?;
                        element.text.push_str(text);
                    }
                }
            }
            Event::CData(t) => {
                if let Some((element, d)) = &mut current {
                    if *d == depth {
                        element.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
            }
            Event::GeneralRef(r) => {
                if let Some((element, d)) = &mut current {
                    if *d == depth {
                        let resolved = match r.resolve_char_ref() {
                            Ok(Some(c)) => Some(c.to_string()),
                            _ => quick_xml::escape::resolve_predefined_entity(
                                &String::from_utf8_lossy(&r),
                            )
                            .map(str::to_owned),
                        };
                        element.text.push_str(
                            &resolved.ok_or_else(|| malformed("an unknown entity".into()))?,
                        );
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
        if found.len() > 100_000 {
            return Err(malformed("more than 100000 elements".into()));
        }
    }
    if depth != 0 {
        return Err(malformed("the answer ends inside an element".into()));
    }
    if !seen_root {
        return Err(malformed("an empty answer".into()));
    }
    Ok(found)
}

/// `YYYY-MM-DDTHH:MM:SSZ` (UTC) for Unix seconds (clamped to 1970..9999).
pub(super) fn format_time(unix: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix.clamp(0, 253_402_300_799))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` (fractions
/// dropped).
pub(super) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let s = text.get(range)?;
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let bytes = text.as_bytes();
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    if !(at(4, b'-')
        && at(7, b'-')
        && (at(10, b'T') || at(10, b' '))
        && at(13, b':')
        && at(16, b':'))
    {
        return None;
    }
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(year, month, u8::try_from(num(8..10)?).ok()?).ok()?;
    let clock = time::Time::from_hms(
        u8::try_from(num(11..13)?).ok()?,
        u8::try_from(num(14..16)?).ok()?,
        u8::try_from(num(17..19)?).ok()?,
    )
    .ok()?;
    let mut rest = text.get(19..)?;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = fraction.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" | "" => time::UtcOffset::UTC,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1i8,
                Some(b'-') => -1i8,
                _ => return None,
            };
            let hm = rest.get(1..)?;
            let (h, m) = match hm.split_once(':') {
                Some(hm) => hm,
                None => (hm.get(..2)?, hm.get(2..)?),
            };
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let h: i8 = h.parse().ok()?;
            let m: i8 = m.parse().ok()?;
            time::UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    Some(
        time::PrimitiveDateTime::new(date, clock)
            .assume_offset(offset)
            .unix_timestamp(),
    )
}

pub(super) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding (for HTTP Basic auth).
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>
<status xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
    <ipAddress>127.0.0.1</ipAddress>
    <username>testington</username>
    <member id="1">Sir Testington &amp; Co</member>
</status>"#;

    const REASONS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<availableFeedbackReasons xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
    <reason guid="01234567-abcd-0123-4567-012345678900" name="Example Reason 1" type="Sha1"/>
    <reason guid="11234567-abcd-0123-4567-012345678900" name="Benign Collision" type="Sha1"></reason>
</availableFeedbackReasons>"#;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
    <images count="3" maxTimestamp="2017-10-24T15:10:00Z">
        <image>
            <member id="42">Example Member</member>
            <timestamp>2017-10-24T15:00:00Z</timestamp>
            <id>image1</id>
            <classification>A1</classification>
            <fingerprints>
                <md5>a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1</md5>
                <pdq>f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22</pdq>
            </fingerprints>
        </image>
        <image>
            <member id="42">Example Member</member>
            <id>image2</id>
            <fingerprints><md5>&bogus;</md5></fingerprints>
        </image>
        <deletedImage>
            <member id="43">Example Member2</member>
            <id>image4</id>
        </deletedImage>
    </images>
    <paging>
        <next>/v2/entries?from=2017-10-20T00%3A00%3A00.000Z&amp;to=2017-10-30T00%3A00%3A00.000Z&amp;start=2001&amp;size=1000&amp;max=3000</next>
    </paging>
</queryResult>"#;

    const NEXT: &str = "/v2/entries?from=2017-10-20T00%3A00%3A00.000Z&to=2017-10-30T00%3A00%3A00.000Z&start=2001&size=1000&max=3000";

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        assert_eq!(Cursor::parse("").unwrap(), Cursor::Caught { from: 0 });
        let caught = Cursor::Caught {
            from: 1_508_457_600,
        };
        assert_eq!(caught.to_string(), "v1 from=1508457600");
        let paging = Cursor::Paging {
            from: 1,
            to: 2,
            at: 3,
            next: "/v2/entries?a=1 b&c=d next=x".into(),
        };
        for c in [caught, paging] {
            assert_eq!(Cursor::parse(&c.to_string()).unwrap(), c);
        }
        for bad in [
            "v2 from=1",
            "from=1",
            "v1",
            "v1 ",
            "v1 from=-1",
            "v1 from=x",
            "v1 from=1 from=2",
            "v1 from=1 to=2",
            "v1 from=1 to=2 next=/x",
            "v1 from=1 to=2 at=3 next=x",
            "v1 from=1 to=2 at=3 extra=4 next=/x",
            "garbage",
        ] {
            let e = Cursor::parse(bad).unwrap_err();
            assert!(matches!(e, ExchangeError::Config(_)), "{bad}: {e}");
            assert!(!e.retryable());
        }
    }

    #[test]
    fn times_and_links() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_time(1_508_858_400), "2017-10-24T15:20:00Z");
        assert_eq!(format_time(-5), "1970-01-01T00:00:00Z");
        assert_eq!(parse_time("2017-10-24T15:20:00Z"), Some(1_508_858_400));
        assert_eq!(parse_time("2017-10-24T15:20:00.123Z"), Some(1_508_858_400));
        assert_eq!(parse_time("2017-10-24T17:20:00+02:00"), Some(1_508_858_400));
        assert_eq!(parse_time("2017-10-24T10:20:00-0500"), Some(1_508_858_400));
        assert_eq!(parse_time("2017-10-24T15:20:00"), Some(1_508_858_400));
        for bad in [
            "",
            "2017-10-24",
            "2017-13-24T15:20:00Z",
            "2017-10-24T15:20:00.Z",
            "2017-10-24T15:20:00Q",
            "２017-10-24T15:20:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert_eq!(
            link_info(NEXT),
            LinkInfo {
                from: Some(1_508_457_600),
                to: Some(1_509_321_600),
                start: Some(2001),
            }
        );
        assert_eq!(link_info("/v2/entries"), LinkInfo::default());
        assert_eq!(
            percent_encode("2017-10-20T00:00:00Z"),
            "2017-10-20T00%3A00%3A00Z"
        );
        assert_eq!(form_decode("a%3Ab+c%zz"), "a:b c%zz");
        assert_eq!(
            base64(b"Aladdin:open sesame"),
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
        assert_eq!(xml_escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }

    #[test]
    fn next_links_must_go_forward() {
        let (from, to) = (1_508_457_600, 1_509_321_600);
        // The first page's link, then the one after it.
        check_next(from, to, None, NEXT).unwrap();
        let after = NEXT.replace("start=2001", "start=3001");
        check_next(from, to, Some(NEXT), &after).unwrap();
        // A later end or start of range is no loss.
        check_next(from - 10, to - 10, None, NEXT).unwrap();
        let back = |e: Result<(), ExchangeError>| {
            assert!(matches!(e, Err(ExchangeError::CursorBack(_))), "{e:?}");
        };
        back(check_next(from + 1, to, None, NEXT));
        back(check_next(from, to + 1, None, NEXT));
        back(check_next(from, to, Some(&after), NEXT));
        back(check_next(from, to, Some(NEXT), NEXT));
        // Links without a start: only the same link again is refused.
        check_next(from, to, Some("/v2/entries?page=a"), "/v2/entries?page=b").unwrap();
        back(check_next(
            from,
            to,
            Some("/v2/entries?page=a"),
            "/v2/entries?page=a",
        ));
        for bad in [
            "v2/entries",
            "https://elsewhere/v2/entries",
            "//elsewhere/v2",
        ] {
            assert!(matches!(
                check_next(from, to, None, bad),
                Err(ExchangeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn environments_and_roots() {
        assert_eq!(api_root("", "").unwrap(), "/hashsharing");
        assert_eq!(api_root("/hashsharing", "").unwrap(), "/hashsharing");
        assert_eq!(api_root("/proxy", "").unwrap(), "/proxy");
        assert_eq!(api_root("", "ngo").unwrap(), "/npo");
        assert_eq!(api_root("", "NGO").unwrap(), "/npo");
        assert_eq!(api_root("/npo", "test_NGO").unwrap(), "/npo");
        assert_eq!(api_root("/proxy", "ngo").unwrap(), "/proxy/npo");
        assert_eq!(
            api_root("", "Industry_Exploitative").unwrap(),
            "/exploitative-hashsharing"
        );
        assert_eq!(
            api_root("", "ngo-generative-ai-exploitative").unwrap(),
            "/generative-ai-exploitative"
        );
        assert_eq!(api_root("", "LawEnforcement").unwrap(), "/csam-hashsharing");
        let e = api_root("", "predictive").unwrap_err();
        assert!(matches!(e, ExchangeError::Config(_)));
        assert!(e.to_string().contains("industry, "), "{e}");
    }

    #[test]
    fn external_ids_and_fingerprint_types() {
        assert_eq!(
            split_external_id("ncmec:42:image1"),
            Some((Some("42"), "image1"))
        );
        assert_eq!(split_external_id("ncmec:image1"), Some((None, "image1")));
        assert_eq!(split_external_id("ncmec:a:b"), Some((None, "a:b")));
        assert_eq!(split_external_id("ncmec:42:a:b"), Some((Some("42"), "a:b")));
        assert_eq!(split_external_id("ncmec:42:"), Some((None, "42:")));
        assert_eq!(split_external_id("ncmec:"), None);
        assert_eq!(split_external_id("tcap:1"), None);
        let t = |name: &str| fingerprint_type(&SignalType::parse(name).unwrap());
        for (name, ncmec) in [
            ("pdq", "PDQ"),
            ("md5", "MD5"),
            ("sha1", "SHA1"),
            ("pdna", "PDNA"),
            ("netclean", "NETCLEAN"),
            ("videntifier", "VIDENTIFIER"),
            ("tmk-pdqf", "TMK_PDQF"),
            ("ssvh-pdna", "SSVH_PDNA"),
            ("ssvh_safer_hash", "SSVH_SAFER_HASH"),
        ] {
            assert_eq!(t(name).unwrap(), ncmec);
        }
        assert!(matches!(t("sha256"), Err(ExchangeError::Unsupported(_))));
        assert_eq!(reason_key(" Benign  Collision!"), "benign_collision");
        assert_eq!(reason_key("benign_collision"), "benign_collision");
    }

    #[test]
    fn pages_parse_or_are_malformed() {
        let page = parse_page(PAGE.as_bytes()).unwrap();
        assert_eq!(page.items.len(), 3);
        assert_eq!(page.next.as_deref(), Some(NEXT));
        assert_eq!(page.skipped.len(), 1);
        let skipped = &page.skipped[0];
        assert_eq!(skipped.id.as_deref(), Some("ncmec:42:image2"));
        assert!(
            skipped.reason.contains("unknown entity"),
            "{}",
            skipped.reason
        );
        assert!(matches!(
            &page.items[2].op,
            ImportOp::RetractExternal { external_id } if external_id == "ncmec:43:image4"
        ));
        let last = parse_page(b"<queryResult><images count=\"0\"/></queryResult>").unwrap();
        assert!(last.items.is_empty() && last.next.is_none());
        let bads: [&[u8]; 6] = [
            &PAGE.as_bytes()[..PAGE.len() / 2],
            b"<html><body>Please log in</body></html>",
            b"",
            b"   ",
            b"Internal error",
            b"<queryResult><paging><next>/a</next><next>/b</next></paging></queryResult>",
        ];
        for bad in bads {
            let e = parse_page(bad).unwrap_err();
            assert!(matches!(e, ExchangeError::Malformed(_)), "{e}");
            assert!(e.retryable());
            // Never a value in the message.
            assert!(!e.to_string().contains("a1a1"), "{e}");
        }
    }

    #[test]
    fn small_answers() {
        let members = elements(STATUS.as_bytes(), "status", "member").unwrap();
        assert_eq!(
            member_of(&members[0]).unwrap(),
            Member {
                id: "1".into(),
                name: "Sir Testington & Co".into()
            }
        );
        let reasons = elements(REASONS.as_bytes(), "availableFeedbackReasons", "reason").unwrap();
        assert_eq!(reasons.len(), 2);
        assert_eq!(reasons[1].attr("name"), Some("Benign Collision"));
        assert!(elements(STATUS.as_bytes(), "queryResult", "member").is_err());
        assert!(elements(&STATUS.as_bytes()[..100], "status", "member").is_err());
        assert!(elements(b"", "", "member").is_err());
        let list = elements(
            b"<members><member id=\"1\">A</member><member id=\"2\"/></members>",
            "",
            "member",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(member_of(&Element::default()).is_err());
    }
}
