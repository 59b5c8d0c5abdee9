//! The NCMEC Hash Sharing v2 client against a stand-in of the API, written
//! from the same public description (python-threatexchange's
//! `clients/ncmec/hash_api.py` and its test samples): HTTP Basic auth on
//! every request, `GET v2/status`, `v2/members`, `v2/entries?from=&to=`
//! answering a `<queryResult>` of images, videos and their tombstones in
//! row order (not time order), paged by `<paging><next>` links carrying
//! `start`, `size` and `max`, `GET v2/feedback/{type}/reasons` and
//! `PUT v2/entries/{esp}/{id}/{type}/feedback`.
//!
//! The stand-in keeps one row per entry; a change gives the row a new
//! sequence number and timestamp, so a range's paging (by sequence, up to
//! the range's `max` as of its first page) never skips a row that did not
//! change, and a changed row turns up again in a later range. It can
//! misbehave once on demand at the Nth entries request: 429 with
//! Retry-After, 500, stall, cut connection, a truncated page, the previous
//! page again, a `next` that goes back (cursor reset), a forgotten paging
//! link (410); and its data can be cursed (every row in one second).
//!
//! A driver fetches in a loop as the fetcher does (fetch until `!more`,
//! each returned cursor into the next call, a crash that loses a page and
//! a restart from the saved cursor midway), applying items as the importer
//! does, and the result must equal the stand-in's live entries.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashfed::config::{ExchangeConfig, ExchangeFilters, ExchangeKind};
use hashfed::exchange::http::{Http, MAX_BODY};
use hashfed::exchange::ncmec::Client;
use hashfed::exchange::{Credentials, ExchangeError, OutgoingFeedback};
use hashfed::import::ImportOp;
use hashfed::model::{Signal, Verdict};

use super::standin::{handler, Reply, Req, StandIn};

const USER: &str = "esp-user";
const PASSWORD: &str = "s3cret: pass";
/// The stand-in's "now" when a test starts (2023-11-14).
const T0: i64 = 1_700_000_000;
const NS: &str = "https://hashsharing.ncmec.org/hashsharing/v2";

// ---------------------------------------------------------------- stand-in

/// A misbehaviour, once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// 429 with `Retry-After: 7`.
    TooMany,
    /// 500.
    Fail,
    /// No answer.
    Stall,
    /// The connection closed without an answer.
    Cut,
    /// The page cut in half.
    Truncated,
    /// The previous answer again.
    Duplicate,
    /// The right page, with a `next` back to the range's first record
    /// and an hour earlier.
    ResetBack,
    /// 410: the paging link is no longer known.
    Forgotten,
}

#[derive(Clone, Debug)]
struct Row {
    member: u32,
    id: String,
    video: bool,
    deleted: bool,
    /// Served without an `<id>` (malformed at the source).
    bad: bool,
    classification: Option<&'static str>,
    /// (element name, value); a value of "" is a link.
    fingerprints: Vec<(String, String)>,
    ts: i64,
    seq: u64,
}

impl Row {
    fn external_id(&self) -> String {
        format!("ncmec:{}:{}", self.member, self.id)
    }

    /// What a client should hold for it (`None`: nothing).
    fn live(&self) -> Option<BTreeSet<(String, String)>> {
        let values: BTreeSet<_> = self
            .fingerprints
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .cloned()
            .collect();
        (!self.deleted && !self.bad && !values.is_empty()).then_some(values)
    }
}

#[derive(Default)]
struct Ncmec {
    root: String,
    page_size: usize,
    rows: HashMap<(u32, String), Row>,
    /// seq → key, for paging in row order.
    by_seq: BTreeMap<u64, (u32, String)>,
    seq: u64,
    /// Timestamps given to changes when cursed; otherwise the clock's.
    cursed: Option<i64>,
    /// Entries request number (1-based) → fault.
    faults: HashMap<usize, Fault>,
    entries_requests: usize,
    /// Requests for a range's first page.
    first_pages: usize,
    last_answer: Vec<u8>,
    /// Feedback PUTs and reason GETs, as received.
    feedback: Vec<Req>,
    unauthorised: usize,
}

type Shared = Arc<Mutex<Ncmec>>;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(seed: u64, chars: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < chars {
        out.push_str(&format!("{:016x}", splitmix(seed.wrapping_add(i))));
        i += 1;
    }
    out.truncate(chars);
    out
}

fn fingerprints(n: u64, version: u64, video: bool) -> Vec<(String, String)> {
    let seed = n.wrapping_mul(1000).wrapping_add(version);
    let f = |name: &str, value: String| (name.to_owned(), value);
    if video {
        if n % 97 == 3 {
            // Large fingerprints only, as links: nothing to keep.
            return vec![
                f("tmk-pdqf", String::new()),
                f("videntifier", String::new()),
            ];
        }
        vec![
            f("md5", hex(seed, 32)),
            f("ssvh-pdna", hex(seed ^ 1, 64)),
            f("ssvh-safer-hash", hex(seed ^ 2, 48)),
            f("tmk-pdqf", String::new()),
            f("videntifier", String::new()),
        ]
    } else {
        let mut fps = vec![f("md5", hex(seed, 32)), f("sha1", hex(seed ^ 3, 40))];
        if (n + version) % 3 != 0 {
            fps.push(f("pdq", hex(seed ^ 4, 64)));
        }
        if n % 5 == 0 {
            fps.push(f("pdna", format!("{}AA==", hex(seed ^ 5, 188))));
            fps.push(f("netclean", hex(seed ^ 6, 40)));
        }
        fps
    }
}

impl Ncmec {
    fn put(&mut self, mut row: Row) {
        self.seq += 1;
        row.seq = self.seq;
        let key = (row.member, row.id.clone());
        if let Some(old) = self.rows.get(&key) {
            self.by_seq.remove(&old.seq);
        }
        self.by_seq.insert(row.seq, key.clone());
        self.rows.insert(key, row);
    }

    /// Adds entry `n` (version 0) at `ts`.
    fn add(&mut self, n: u64, ts: i64) {
        let video = n % 4 == 3;
        self.put(Row {
            member: [42, 43, 101][(n % 3) as usize],
            id: format!("{}-{n}", if video { "vid" } else { "img" }),
            video,
            deleted: false,
            bad: n % 1009 == 7,
            classification: [Some("A1"), Some("A2"), Some("B1"), None][(n % 4) as usize],
            fingerprints: fingerprints(n, 0, video),
            ts: self.cursed.unwrap_or(ts),
            seq: 0,
        });
    }

    fn key_of(n: u64) -> (u32, String) {
        let video = n % 4 == 3;
        (
            [42, 43, 101][(n % 3) as usize],
            format!("{}-{n}", if video { "vid" } else { "img" }),
        )
    }

    fn delete(&mut self, n: u64, ts: i64) {
        if let Some(mut row) = self.rows.get(&Self::key_of(n)).cloned() {
            row.deleted = true;
            row.fingerprints.clear();
            row.ts = self.cursed.unwrap_or(ts);
            self.put(row);
        }
    }

    fn update(&mut self, n: u64, version: u64, ts: i64) {
        if let Some(mut row) = self.rows.get(&Self::key_of(n)).cloned() {
            row.deleted = false;
            row.fingerprints = fingerprints(n, version, row.video);
            row.classification = Some("A1");
            row.ts = self.cursed.unwrap_or(ts);
            self.put(row);
        }
    }

    /// Changes dated `ts`: `adds` entries after the existing ones, every
    /// `delete_every`th entry deleted, and every `update_every`th (from the
    /// second) given new fingerprints.
    fn churn(&mut self, ts: i64, adds: u64, delete_every: usize, update_every: usize) {
        let n = self.rows.len() as u64;
        for i in n..n + adds {
            self.add(i, ts);
        }
        for i in (0..n).step_by(delete_every) {
            self.delete(i, ts);
        }
        for i in (1..n).step_by(update_every) {
            self.update(i, 1, ts);
        }
    }

    fn live(&self) -> HashMap<String, BTreeSet<(String, String)>> {
        self.rows
            .values()
            .filter_map(|r| r.live().map(|v| (r.external_id(), v)))
            .collect()
    }

    fn handle(&mut self, req: &Req) -> Reply {
        let expected = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        if req.header("authorization") != Some(expected.as_str()) {
            self.unauthorised += 1;
            return Reply::Respond {
                status: 401,
                headers: vec![(
                    "www-authenticate".into(),
                    "Basic realm=\"hashsharing\"".into(),
                )],
                body: b"Unauthorized".to_vec(),
            };
        }
        let Some(route) = req.route().strip_prefix(self.root.as_str()) else {
            return Reply::status(404, "no such environment");
        };
        let parts: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", ["v2", "status"]) => xml(&format!(
                "<status xmlns=\"{NS}\"><ipAddress>127.0.0.1</ipAddress>\
                 <username>{USER}</username><member id=\"1\">Test Hotline</member></status>"
            )),
            ("GET", ["v2", "members"]) => xml(&format!(
                "<members xmlns=\"{NS}\"><member id=\"42\">Example Member</member>\
                 <member id=\"43\">Example Member2</member></members>"
            )),
            ("GET", ["v2", "feedback", kind, "reasons"]) => {
                self.feedback.push(req.clone());
                xml(&format!(
                    "<availableFeedbackReasons xmlns=\"{NS}\">\
                     <reason guid=\"01234567-abcd-0123-4567-012345678900\" name=\"Example Reason 1\" type=\"{kind}\"/>\
                     <reason guid=\"11234567-abcd-0123-4567-012345678900\" name=\"Benign Collision\" type=\"{kind}\"/>\
                     </availableFeedbackReasons>"
                ))
            }
            ("PUT", ["v2", "entries", _esp, _id, _kind, "feedback"]) => {
                self.feedback.push(req.clone());
                xml(&format!("<submissionResult xmlns=\"{NS}\"/>"))
            }
            ("GET", ["v2", "entries"]) => self.entries(req),
            _ => Reply::status(404, "no such page"),
        }
    }

    fn entries(&mut self, req: &Req) -> Reply {
        self.entries_requests += 1;
        let fault = self.faults.remove(&self.entries_requests);
        match fault {
            Some(Fault::TooMany) => return Reply::too_many(7),
            Some(Fault::Fail) => return Reply::status(500, "internal error"),
            Some(Fault::Stall) => return Reply::Stall,
            Some(Fault::Cut) => return Reply::Cut,
            Some(Fault::Forgotten) if req.query("start").is_some() => {
                return Reply::status(410, "paging expired")
            }
            Some(Fault::Duplicate) if !self.last_answer.is_empty() => {
                return Reply::ok("application/xml", self.last_answer.clone())
            }
            _ => {}
        }
        let (Some(from), Some(to)) = (
            req.query("from").as_deref().and_then(parse_ts),
            req.query("to").as_deref().and_then(parse_ts),
        ) else {
            return Reply::status(400, "from and to are required");
        };
        let size = req
            .query("size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.page_size);
        let (start, max) = match (req.query("start"), req.query("max")) {
            (Some(start), Some(max)) => match (start.parse::<u64>(), max.parse::<u64>()) {
                (Ok(s), Ok(m)) => (s, m),
                _ => return Reply::status(400, "bad paging"),
            },
            _ => {
                self.first_pages += 1;
                let max = self
                    .by_seq
                    .iter()
                    .rev()
                    .find(|(_, k)| self.rows[*k].ts >= from && self.rows[*k].ts <= to)
                    .map_or(0, |(s, _)| *s);
                (1, max)
            }
        };
        let mut page = Vec::new();
        let mut more = false;
        let in_order = (start <= max).then(|| self.by_seq.range(start..=max));
        for (_, key) in in_order.into_iter().flatten() {
            let row = &self.rows[key];
            if row.ts < from || row.ts > to {
                continue;
            }
            if page.len() == size {
                more = true;
                break;
            }
            page.push(row);
        }
        let next = match (fault, more) {
            (Some(Fault::ResetBack), _) => Some(next_link(from - 3600, to, 1, size, max)),
            (_, true) => page
                .last()
                .map(|last| next_link(from, to, last.seq + 1, size, max)),
            _ => None,
        };
        let mut body = entries_xml(&page, next.as_deref());
        if fault == Some(Fault::Truncated) {
            body.truncate(body.len() / 2);
        } else {
            self.last_answer = body.clone();
        }
        Reply::ok("application/xml", body)
    }
}

fn xml(body: &str) -> Reply {
    Reply::ok(
        "application/xml",
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n{body}"),
    )
}

fn next_link(from: i64, to: i64, start: u64, size: usize, max: u64) -> String {
    let enc = |t: i64| format_ts(t).replace(':', "%3A");
    format!(
        "/v2/entries?from={}&to={}&start={start}&size={size}&max={max}",
        enc(from),
        enc(to)
    )
}

fn entries_xml(rows: &[&Row], next: Option<&str>) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<queryResult xmlns=\"{NS}\">\n"
    );
    for (video, tag) in [(false, "images"), (true, "videos")] {
        let of_kind: Vec<&&Row> = rows.iter().filter(|r| r.video == video).collect();
        match of_kind.iter().map(|r| r.ts).max() {
            None => {
                let _ = writeln!(out, "<{tag} count=\"0\"/>");
            }
            Some(max) => {
                let _ = writeln!(
                    out,
                    "<{tag} count=\"{}\" maxTimestamp=\"{}\">",
                    of_kind.len(),
                    format_ts(max)
                );
                for row in of_kind {
                    let name = match (video, row.deleted) {
                        (false, false) => "image",
                        (true, false) => "video",
                        (false, true) => "deletedImage",
                        (true, true) => "deletedVideo",
                    };
                    let _ = write!(
                        out,
                        "<{name}><member id=\"{0}\">Member {0}</member><timestamp>{1}</timestamp>",
                        row.member,
                        format_ts(row.ts)
                    );
                    if !row.bad {
                        let _ = write!(out, "<id>{}</id>", row.id);
                    }
                    if !row.deleted {
                        if let Some(c) = row.classification {
                            let _ = write!(out, "<classification>{c}</classification>");
                        }
                        out.push_str("<fingerprints>");
                        for (kind, value) in &row.fingerprints {
                            if value.is_empty() {
                                let _ = write!(
                                    out,
                                    "<{kind} rel=\"self\" href=\"/v2/entries/{}/fingerprints/{}\"/>",
                                    row.seq,
                                    kind.to_uppercase().replace('-', "_")
                                );
                            } else {
                                let _ = write!(out, "<{kind}>{value}</{kind}>");
                            }
                        }
                        out.push_str("</fingerprints>");
                    }
                    let _ = writeln!(out, "</{name}>");
                }
                let _ = writeln!(out, "</{tag}>");
            }
        }
    }
    if let Some(next) = next {
        let _ = writeln!(
            out,
            "<paging><next>{}</next></paging>",
            next.replace('&', "&amp;")
        );
    }
    out.push_str("</queryResult>\n");
    out.into_bytes()
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_ts(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z`.
fn parse_ts(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let s = s.split('.').next()?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match (d.as_slice(), t.as_slice()) {
        ([y, m, d], [h, mi, se]) => {
            Some(days_from_civil(*y, *m, *d) * 86_400 + h * 3600 + mi * 60 + se)
        }
        _ => None,
    }
}

fn base64(bytes: &[u8]) -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Api {
    standin: StandIn,
    state: Shared,
    clock: Arc<AtomicI64>,
    _tmp: tempfile::TempDir,
}

impl Api {
    /// A stand-in under `root` with `n` entries (`cursed`: all in one
    /// second), pages of `page_size`.
    async fn start(root: &str, n: u64, page_size: usize, cursed: bool) -> Api {
        let tmp = tempfile::tempdir().unwrap();
        let mut ncmec = Ncmec {
            root: root.to_owned(),
            page_size,
            ..Ncmec::default()
        };
        for i in 0..n {
            // Out of time order: row order and timestamps disagree.
            let ts = if cursed {
                T0 - 1000
            } else {
                T0 - 100 - (splitmix(i) % 100_000_000) as i64
            };
            ncmec.add(i, ts);
        }
        if cursed {
            ncmec.cursed = Some(T0 + 5);
        }
        let state: Shared = Arc::new(Mutex::new(ncmec));
        let served = state.clone();
        let standin = StandIn::start(
            tmp.path(),
            handler(move |req| served.lock().unwrap().handle(&req)),
        )
        .await;
        Api {
            standin,
            state,
            clock: Arc::new(AtomicI64::new(T0)),
            _tmp: tmp,
        }
    }

    fn config(&self, endpoint_path: &str, filters: ExchangeFilters) -> ExchangeConfig {
        ExchangeConfig {
            kind: ExchangeKind::Ncmec,
            name: "ncmec-test".into(),
            set: "hotline/ncmec".into(),
            endpoint: self.standin.endpoint(endpoint_path),
            credentials: "unused".into(),
            interval_secs: 300,
            ca_file: None,
            timeout_secs: 1,
            page_size: 1000,
            filters,
        }
    }

    fn client_for(&self, config: &ExchangeConfig, password: &str) -> Client {
        let http = Http::new(
            &config.endpoint,
            Some(&self.standin.ca_file),
            Duration::from_millis(700),
            MAX_BODY,
        )
        .unwrap();
        let credentials = Credentials::from_fields([
            ("user".to_owned(), USER.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ]);
        let clock = self.clock.clone();
        Client::new(config, credentials, http)
            .unwrap()
            .with_clock(move || clock.load(Ordering::SeqCst))
    }

    fn client(&self) -> Client {
        self.client_for(&self.config("", ExchangeFilters::default()), PASSWORD)
    }

    fn advance(&self, secs: i64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    fn now(&self) -> i64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn live(&self) -> HashMap<String, BTreeSet<(String, String)>> {
        self.state.lock().unwrap().live()
    }
}

// ------------------------------------------------------------------ driver

/// What a client collected, applied as the importer applies it: an entry's
/// adds in a page replace what it had, a tombstone removes it.
#[derive(Default)]
struct Collected {
    entries: HashMap<String, BTreeSet<(String, String)>>,
    pages: usize,
    skipped: usize,
    errors: Vec<ExchangeError>,
}

impl Collected {
    fn apply(&mut self, items: &[hashfed::import::ImportItem]) {
        let mut fresh = HashSet::new();
        for item in items {
            match &item.op {
                ImportOp::Add {
                    signal,
                    external_id: Some(external_id),
                    labels,
                } => {
                    assert!(labels.iter().any(|l| l.starts_with("media:")), "{labels:?}");
                    if fresh.insert(external_id.clone()) {
                        self.entries.insert(external_id.clone(), BTreeSet::new());
                    }
                    self.entries
                        .entry(external_id.clone())
                        .or_default()
                        .insert((signal.type_name.clone(), signal.value.clone()));
                }
                ImportOp::RetractExternal { external_id } => {
                    self.entries.remove(external_id);
                    fresh.remove(external_id);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

/// When the driver pretends to crash.
#[derive(Clone, Copy, Default)]
struct Crashes {
    /// After receiving this page (1-based) and before storing it: the page
    /// is lost, a new client starts from the saved cursor.
    lose_page: Option<usize>,
    /// After storing this page: a new client starts from it.
    restart_after: Option<usize>,
}

/// Fetches until caught up, retrying errors at once (a real fetcher backs
/// off), with `on_page` called after each stored page.
async fn drive(
    api: &Api,
    make: &dyn Fn() -> Client,
    cursor: &mut String,
    got: &mut Collected,
    crashes: Crashes,
    on_page: &mut dyn FnMut(usize),
) {
    let mut client = make();
    let mut failures_in_a_row = 0;
    let mut received = 0;
    loop {
        match client.fetch(cursor).await {
            Ok(page) => {
                failures_in_a_row = 0;
                received += 1;
                if crashes.lose_page == Some(received) {
                    client = make();
                    continue;
                }
                got.pages += 1;
                got.apply(&page.items);
                got.skipped += page.skipped.len();
                for s in &page.skipped {
                    assert!(s.reason.len() < 200, "{s:?}");
                    assert!(!s.reason.contains("<md5>"), "{s:?}");
                }
                assert_ne!(page.cursor, "");
                *cursor = page.cursor;
                on_page(got.pages);
                if crashes.restart_after == Some(received) {
                    client = make();
                }
                if !page.more {
                    return;
                }
            }
            Err(e) => {
                assert!(e.retryable(), "{e}");
                got.errors.push(e);
                failures_in_a_row += 1;
                assert!(failures_in_a_row < 5, "no convergence: {:?}", got.errors);
            }
        }
        assert!(
            received < 10_000,
            "looping: {} entries requests",
            api.state.lock().unwrap().entries_requests
        );
    }
}

fn assert_converged(api: &Api, got: &Collected) {
    let want = api.live();
    if got.entries != want {
        let missing = want
            .keys()
            .filter(|k| !got.entries.contains_key(*k))
            .count();
        let extra = got
            .entries
            .keys()
            .filter(|k| !want.contains_key(*k))
            .count();
        let differ = want
            .iter()
            .filter(|(k, v)| got.entries.get(*k).is_some_and(|g| g != *v))
            .count();
        panic!(
            "not converged: {} wanted, {} held; {missing} missing, {extra} extra, {differ} differ",
            want.len(),
            got.entries.len()
        );
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursed_second_of_100k_entries_then_updates_and_deletions_converge() {
    let started = Instant::now();
    let n = 100_000;
    let api = Api::start("/hashsharing", n, 1000, true).await;
    let make = || api.client();
    let mut cursor = String::new();
    let mut got = Collected::default();
    // Changes while the range is being paged: stamped now, after the range.
    let state = api.state.clone();
    let mut during = |page: usize| {
        if page == 30 {
            let mut s = state.lock().unwrap();
            for i in (0..n).step_by(101) {
                s.delete(i, T0);
            }
            for i in (50..n).step_by(211) {
                s.update(i, 1, T0);
            }
        }
    };
    drive(
        &api,
        &make,
        &mut cursor,
        &mut got,
        Crashes {
            lose_page: Some(40),
            restart_after: Some(70),
        },
        &mut during,
    )
    .await;
    // Every page of the one second once (the lost one twice), no loop;
    // entries changed before their page came leave the range for the next.
    assert!((95..=100).contains(&got.pages), "{}", got.pages);
    {
        let s = api.state.lock().unwrap();
        assert_eq!(s.entries_requests, got.pages + 1);
        assert_eq!(s.first_pages, 1);
    }
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    assert!(got.skipped > 0);
    assert!(cursor.starts_with("v1 from="), "{cursor}");
    assert!(!cursor.contains("next="), "{cursor}");
    // Caught up: asking again changes nothing and asks nothing.
    let page = api.client().fetch(&cursor).await.unwrap();
    assert!(page.items.is_empty() && !page.more);
    assert_eq!(page.cursor, cursor);

    // Later: the changes made while paging, and more, all in one second.
    api.advance(600);
    {
        let mut s = api.state.lock().unwrap();
        for i in n..n + 3000 {
            s.add(i, T0 + 5);
        }
        for i in (7..n).step_by(307) {
            s.delete(i, T0 + 5);
        }
        for i in (9..n).step_by(401) {
            s.update(i, 2, T0 + 5);
        }
    }
    drive(
        &api,
        &make,
        &mut cursor,
        &mut got,
        Crashes::default(),
        &mut |_| {},
    )
    .await;
    assert_converged(&api, &got);
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    assert!(api.live().len() > 90_000);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// An initial fetch of `n` entries in pages of 250 with `fault` at the
/// `at`th entries request, a crash and a restart on the way, then updates
/// and deletions; returns the errors seen.
async fn with_fault(fault: Fault, at: usize, cursed: bool) -> (Api, Collected) {
    let n = 10_000;
    let api = Api::start("/hashsharing", n, 250, cursed).await;
    api.state.lock().unwrap().faults.insert(at, fault);
    let make = || api.client();
    let mut cursor = String::new();
    let mut got = Collected::default();
    drive(
        &api,
        &make,
        &mut cursor,
        &mut got,
        Crashes {
            lose_page: Some(at + 2),
            restart_after: Some(at + 4),
        },
        &mut |_| {},
    )
    .await;
    assert_converged(&api, &got);
    api.advance(300);
    {
        let mut s = api.state.lock().unwrap();
        s.churn(api.now() - 100, 500, 37, 53);
        let at = s.entries_requests + 2;
        s.faults.insert(at, fault);
    }
    api.advance(300);
    drive(
        &api,
        &make,
        &mut cursor,
        &mut got,
        Crashes::default(),
        &mut |_| {},
    )
    .await;
    assert_converged(&api, &got);
    (api, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_errors_with_retry_after_and_converge() {
    let (_api, got) = with_fault(Fault::TooMany, 5, false).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    for e in &got.errors {
        assert!(
            matches!(e, ExchangeError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(7)),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_converge() {
    let (_api, got) = with_fault(Fault::Fail, 3, true).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    assert!(got
        .errors
        .iter()
        .all(|e| matches!(e, ExchangeError::Server { status: 500 })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalls_time_out_and_converge() {
    let started = Instant::now();
    let (_api, got) = with_fault(Fault::Stall, 4, false).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    assert!(got
        .errors
        .iter()
        .all(|e| matches!(e, ExchangeError::Timeout(_))));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_converge() {
    let (_api, got) = with_fault(Fault::Cut, 6, true).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    assert!(got
        .errors
        .iter()
        .all(|e| matches!(e, ExchangeError::Transport(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_pages_are_refused_whole_and_converge() {
    let (_api, got) = with_fault(Fault::Truncated, 7, false).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    for e in &got.errors {
        assert!(matches!(e, ExchangeError::Malformed(_)), "{e:?}");
        assert!(!e.to_string().contains("<md5>"), "{e}");
    }
    // Records malformed at the source are skipped, counted, and named.
    assert!(got.skipped >= 10, "{}", got.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_page_is_a_cursor_going_back_and_converges() {
    let (_api, got) = with_fault(Fault::Duplicate, 5, true).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    assert!(got
        .errors
        .iter()
        .all(|e| matches!(e, ExchangeError::CursorBack(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_reset_is_refused_and_converges() {
    let (_api, got) = with_fault(Fault::ResetBack, 8, false).await;
    assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
    for e in &got.errors {
        assert!(matches!(e, ExchangeError::CursorBack(_)), "{e:?}");
        assert!(e.to_string().contains("before ours"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_or_old_paging_links_start_their_range_again() {
    // The service forgets a link (410): the range starts again, no error.
    let (api, got) = with_fault(Fault::Forgotten, 5, true).await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    assert_eq!(api.state.lock().unwrap().first_pages, 4);

    // A link kept longer than NCMEC wants: not followed, the range starts
    // again.
    let api = Api::start("/hashsharing", 3000, 500, false).await;
    let mut client = api.client();
    let first = client.fetch("").await.unwrap();
    assert!(first.more && first.cursor.contains(" next=/v2/entries?"));
    api.advance(hashfed::exchange::ncmec::LINK_LIFETIME_SECS + 1);
    let mut got = Collected::default();
    got.apply(&first.items);
    let mut cursor = first.cursor;
    drive(
        &api,
        &|| api.client(),
        &mut cursor,
        &mut got,
        Crashes::default(),
        &mut |_| {},
    )
    .await;
    assert_converged(&api, &got);
    assert_eq!(api.state.lock().unwrap().first_pages, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_repeats_after_a_crash() {
    let api = Api::start("/hashsharing", 2000, 300, true).await;
    let mut client = api.client();
    let first = client.fetch("").await.unwrap();
    let second = client.fetch(&first.cursor).await.unwrap();
    // The same cursor again, from a new client: the same page.
    let again = api.client().fetch(&first.cursor).await.unwrap();
    assert_eq!(again.items, second.items);
    assert_eq!(again.cursor, second.cursor);
    assert!(second.cursor.contains("start=601"), "{}", second.cursor);
    // A cursor that is not ours is refused, for an operator to reset.
    let e = client.fetch("next=/v2/entries").await.unwrap_err();
    assert!(
        matches!(e, ExchangeError::Config(_)) && !e.retryable(),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_arrives_with_path_body_and_auth() {
    let api = Api::start("/hashsharing", 10, 100, false).await;
    let pdq = Signal::parse("pdq", &hex(1, 64)).unwrap();
    let md5 = Signal::parse("md5", &hex(2, 32)).unwrap();
    let pdna = Signal::parse("pdna", "AP8Q").unwrap();
    let sha256 = Signal::parse("sha256", &hex(3, 64)).unwrap();
    let feedback = |id: &str, signal: &Signal, verdict, reason: &str| OutgoingFeedback {
        external_id: id.into(),
        signal: signal.clone(),
        verdict,
        reason: reason.into(),
    };
    let mut client = api.client();
    client
        .send_feedback(&feedback("ncmec:42:img-1", &pdq, Verdict::Confirmed, ""))
        .await
        .unwrap();
    client
        .send_feedback(&feedback(
            "ncmec:43:img-2",
            &md5,
            Verdict::FalsePositive,
            "benign_collision",
        ))
        .await
        .unwrap();
    // No member in the id: ours, from v2/status.
    client
        .send_feedback(&feedback("ncmec:img 3", &pdna, Verdict::Confirmed, ""))
        .await
        .unwrap();
    // filters.member_id is the ESP id feedback is sent as.
    let config = api.config(
        "",
        ExchangeFilters {
            member_id: "77".into(),
            ..ExchangeFilters::default()
        },
    );
    let mut as_77 = api.client_for(&config, PASSWORD);
    as_77
        .send_feedback(&feedback(
            "ncmec:42:img-4",
            &md5,
            Verdict::FalsePositive,
            "Example Reason 1",
        ))
        .await
        .unwrap();
    // Refusals: not NCMEC's, no such type, no such reason.
    let e = client
        .send_feedback(&feedback("tcap:1", &md5, Verdict::Confirmed, ""))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::Config(_)), "{e}");
    let e = client
        .send_feedback(&feedback("ncmec:42:img-1", &sha256, Verdict::Confirmed, ""))
        .await
        .unwrap_err();
    assert!(matches!(e, ExchangeError::Unsupported(_)), "{e}");
    let e = client
        .send_feedback(&feedback(
            "ncmec:42:img-1",
            &md5,
            Verdict::FalsePositive,
            "other",
        ))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("benign_collision"), "{e}");

    let s = api.state.lock().unwrap();
    let auth = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
    let seen: Vec<(String, String)> = s
        .feedback
        .iter()
        .map(|r| {
            assert_eq!(r.header("authorization"), Some(auth.as_str()));
            (r.method.clone(), r.path.clone())
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT", "/hashsharing/v2/entries/42/img-1/PDQ/feedback"),
            ("GET", "/hashsharing/v2/feedback/MD5/reasons"),
            ("PUT", "/hashsharing/v2/entries/43/img-2/MD5/feedback"),
            ("PUT", "/hashsharing/v2/entries/1/img%203/PDNA/feedback"),
            ("GET", "/hashsharing/v2/feedback/MD5/reasons"),
            ("PUT", "/hashsharing/v2/entries/77/img-4/MD5/feedback"),
        ]
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
    );
    let puts: Vec<&Req> = s.feedback.iter().filter(|r| r.method == "PUT").collect();
    for put in &puts {
        assert_eq!(
            put.header("content-type"),
            Some("application/xml; charset=utf-8")
        );
        let body = String::from_utf8(put.body.clone()).unwrap();
        assert!(
            body.contains(&format!("<feedbackSubmission xmlns=\"{NS}\">")),
            "{body}"
        );
    }
    let body = |i: usize| String::from_utf8(puts[i].body.clone()).unwrap();
    assert!(body(0).contains("<affirmative/>"), "{}", body(0));
    assert!(
        body(1).contains(
            "<negative><reasonIds><guid>11234567-abcd-0123-4567-012345678900</guid></reasonIds></negative>"
        ),
        "{}",
        body(1)
    );
    assert!(body(3).contains("<guid>01234567-abcd-0123-4567-012345678900</guid>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_members_environments_and_bad_credentials() {
    let api = Api::start("/npo", 1200, 500, false).await;
    // The NGO environment: its root on the host.
    let ngo = api.config(
        "",
        ExchangeFilters {
            environment: "ngo".into(),
            ..ExchangeFilters::default()
        },
    );
    let mut client = api.client_for(&ngo, PASSWORD);
    assert_eq!(client.root(), "/npo");
    let me = client.status().await.unwrap();
    assert_eq!((me.id.as_str(), me.name.as_str()), ("1", "Test Hotline"));
    let members = client.members().await.unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0].id, "42");
    let mut cursor = String::new();
    let mut got = Collected::default();
    let make = || api.client_for(&ngo, PASSWORD);
    drive(
        &api,
        &make,
        &mut cursor,
        &mut got,
        Crashes::default(),
        &mut |_| {},
    )
    .await;
    assert_converged(&api, &got);
    // The endpoint may carry the environment's path itself.
    let full = api.config("/npo", ExchangeFilters::default());
    assert_eq!(api.client_for(&full, PASSWORD).root(), "/npo");
    // The default environment is industry's, which this host does not have.
    let e = api.client().fetch("").await.unwrap_err();
    assert!(
        matches!(e, ExchangeError::Refused { status: 404, .. }),
        "{e}"
    );
    // Wrong password: refused, not retried, and never printed.
    let before = api.state.lock().unwrap().unauthorised;
    let mut wrong = api.client_for(&ngo, "guess");
    for e in [
        wrong.fetch("").await.unwrap_err(),
        wrong.status().await.unwrap_err(),
    ] {
        assert!(
            matches!(e, ExchangeError::Refused { status: 401, .. }),
            "{e}"
        );
        assert!(!e.retryable());
        assert!(!e.to_string().contains(PASSWORD) && !e.to_string().contains("guess"));
    }
    assert!(!format!("{wrong:?}").contains("guess"));
    assert_eq!(api.state.lock().unwrap().unauthorised, before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_client_from_its_config_and_credentials_file() {
    use std::os::unix::fs::PermissionsExt;
    let api = Api::start("/hashsharing", 500, 200, false).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("ncmec.toml");
    std::fs::write(
        &creds,
        format!("user = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut config = api.config("/hashsharing", ExchangeFilters::default());
    config.credentials = "ncmec.toml".into();
    config.ca_file = Some(api.standin.ca_file.display().to_string());
    config.filters.signal_types = vec!["pdq".into()];
    let mut client = hashfed::exchange::Client::for_node(dir.path(), &config).unwrap();
    let mut cursor = String::new();
    let mut items = Vec::new();
    loop {
        let page = client.fetch(&cursor).await.unwrap();
        items.extend(page.items);
        cursor = page.cursor;
        if !page.more {
            break;
        }
    }
    // Only PDQ additions (and tombstones, of which there are none yet).
    let pdq: usize = api
        .live()
        .values()
        .map(|v| v.iter().filter(|(t, _)| t == "pdq").count())
        .sum();
    assert!(pdq > 0);
    assert_eq!(items.len(), pdq);
    assert!(items.iter().all(|i| matches!(
        &i.op,
        ImportOp::Add { signal, .. } if signal.type_name == "pdq"
    )));
}

// -------------------------------------------------------------- the node

/// The stand-in as a node's exchange meets it: the node's client reads the
/// real clock, so changes are dated on it (the initial rows are years in
/// the past).
impl super::node::Service for Api {
    fn live(&self) -> super::node::Model {
        self.live()
            .into_iter()
            .map(|(id, values)| {
                let values = values
                    .iter()
                    .map(|(t, v)| super::node::normal(t, v))
                    .collect();
                (id, values)
            })
            .collect()
    }

    /// New entries, deletions and updates (new fingerprints), dated as late
    /// as a change may still be arriving at NCMEC's answers: just inside
    /// the client's settle window, after every range it has finished, so
    /// its next range takes them a second later (a change dated now would
    /// wait out the whole window).
    fn churn(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ts = now - (hashfed::exchange::ncmec::SETTLE_SECS - 1);
        self.state.lock().unwrap().churn(ts, 2_000, 97, 89);
    }

    fn feedback_received(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.feedback.iter().filter(|r| r.method == "PUT").count()
    }

    /// A negative vote with the reason NCMEC calls "Benign Collision", on
    /// the entry's PDQ, as its member.
    fn check_feedback(&self, external_id: &str, _pdq: &str) {
        let s = self.state.lock().unwrap();
        let put = s.feedback.iter().find(|r| r.method == "PUT").unwrap();
        let (member, entry) = external_id
            .strip_prefix("ncmec:")
            .and_then(|rest| rest.split_once(':'))
            .unwrap();
        assert_eq!(
            put.path,
            format!("/hashsharing/v2/entries/{member}/{entry}/PDQ/feedback")
        );
        let auth = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        assert_eq!(put.header("authorization"), Some(auth.as_str()));
        let body = String::from_utf8(put.body.clone()).unwrap();
        assert!(
            body.contains(
                "<negative><reasonIds><guid>11234567-abcd-0123-4567-012345678900</guid></reasonIds></negative>"
            ),
            "{body}"
        );
    }
}

/// A real node with an NCMEC exchange in its `hashfed.toml`: 100k entries
/// at start, then new, changed and deleted ones; a provider's false
/// positive goes back as one negative vote, once, across a restart
/// (`node::keeps_current`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_keeps_100k_entries_current_and_votes_once() {
    let api = Api::start("/hashsharing", 100_000, 1000, false).await;
    let mut config = api.config("", ExchangeFilters::default());
    config.credentials = "ncmec.toml".into();
    let setup = super::node::Setup {
        config,
        ca_file: &api.standin.ca_file,
        credentials: format!("user = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
        secrets: &[PASSWORD],
    };
    super::node::keeps_current(&api, setup).await;
}
