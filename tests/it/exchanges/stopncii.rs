//! StopNCII's client against a stand-in of its API, written from the same
//! public description (python-threatexchange's `stopncii/api.py` and its
//! tests): `GET /v1/FetchHashes?startTimestamp&pageSize[&nextPageToken]`
//! and `POST /v1/SubmitFeedback`, both behind `Ocp-Apim-Subscription-Key`
//! and a per-endpoint `x-functions-key` (401 otherwise); pages of
//! `{count, nextPageToken, nextSetTimestamp, hasMoreRecords, hashRecords}`
//! ordered by `lastModtimestamp`, page tokens that the stand-in can forget
//! (400), and misbehaviour on demand: a truncated page, bad records in a
//! page, 429 with Retry-After, 5xx, a stall, a cut connection, the last
//! page again, a reset to the very beginning, a `nextSetTimestamp` that
//! goes back.
//!
//! A client is driven as the fetcher drives it (fetch until `!more`,
//! feeding back each cursor; now and then a page is lost with its cursor,
//! as a crash before its batch is written loses it, and now and then the
//! client is rebuilt from the saved cursor, as after a restart), and what
//! it collected must be exactly the stand-in's live hashes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashfed::config::{ExchangeConfig, ExchangeFilters, ExchangeKind};
use hashfed::exchange::http::Http;
use hashfed::exchange::{stopncii, Client, Credentials, ExchangeError, OutgoingFeedback, Skipped};
use hashfed::import::ImportOp;
use hashfed::model::{Signal, Verdict};
use serde_json::{json, Value};

use super::standin::{handler, Reply, Req, StandIn};

const SUBSCRIPTION: &str = "sub-0123456789";
const FETCH_KEY: &str = "fetch-abcdef";
const FEEDBACK_KEY: &str = "feedback-fedcba";

/// Seconds of the stand-in's clock where its history starts.
const EPOCH: u64 = 1_625_000_000;

/// A way the stand-in misbehaves, once, on the next FetchHashes.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// A page cut in half.
    Truncated,
    /// The page, with bad records among the good and a count too large.
    BadRecords,
    /// 429 with `Retry-After`.
    TooMany(u64),
    /// A 5xx.
    Fail(u16),
    /// No answer.
    Stall,
    /// The connection closed without an answer.
    Cut,
    /// The previous page again.
    Duplicate,
    /// Every page token handed out so far is refused from now on.
    ForgetTokens,
    /// The query is ignored: the first page of everything.
    Reset,
}

#[derive(Clone, Debug)]
struct Rec {
    kind: &'static str,
    value: String,
    status: &'static str,
    modified: u64,
    seq: u64,
    tags: Vec<&'static str>,
}

impl Rec {
    fn json(&self) -> Value {
        let mut v = json!({
            "lastModtimestamp": self.modified,
            "signalType": self.kind,
            "hashValue": self.value,
            "hashStatus": self.status,
            "caseNumbers": {format!("case-{}", self.seq): self.status},
        });
        if self.seq % 3 == 0 {
            v["hashRegions"] = json!(["UK"]);
        }
        // Providers' feedback, in values python-threatexchange's enum does
        // not know too ("Undefined", as in its own samples): a record is
        // taken whatever its feedback says.
        if !self.tags.is_empty() {
            let value = if self.seq % 2 == 0 {
                "Blocked"
            } else {
                "Undefined"
            };
            v["CSPFeedbacks"] =
                json!([{"source": "Facebook", "feedbackValue": value, "tags": self.tags}]);
        } else if self.seq % 5 == 0 {
            v["CSPFeedbacks"] =
                json!([{"source": "TikTok", "feedbackValue": "RandomFeedbackValue"}]);
        }
        v
    }
}

/// The stand-in's state: StopNCII's records and what it was sent.
#[derive(Default)]
struct Api {
    records: HashMap<(&'static str, String), Rec>,
    /// `(lastModtimestamp, seq)` to record, the order pages follow.
    order: BTreeMap<(u64, u64), (&'static str, String)>,
    clock: u64,
    seq: u64,
    /// Page tokens carry it; bumping it forgets them all.
    epoch: u64,
    faults: VecDeque<Fault>,
    /// The next page that ends a pass says its `nextSetTimestamp` is before
    /// the pass's start.
    set_back: bool,
    last_page: Option<Vec<u8>>,
    fetches: u64,
    refused_tokens: u64,
    feedback: Vec<(Option<String>, Option<String>, Value)>,
    feedback_failures: u32,
}

impl Api {
    fn new() -> Api {
        Api {
            clock: EPOCH,
            ..Api::default()
        }
    }

    /// A new second of the stand-in's clock.
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn put(
        &mut self,
        kind: &'static str,
        value: String,
        status: &'static str,
        tags: &[&'static str],
    ) {
        self.seq += 1;
        let key = (kind, value.clone());
        if let Some(old) = self.records.get(&key) {
            self.order.remove(&(old.modified, old.seq));
        }
        let rec = Rec {
            kind,
            value,
            status,
            modified: self.clock,
            seq: self.seq,
            tags: tags.to_vec(),
        };
        self.order.insert((rec.modified, rec.seq), key.clone());
        self.records.insert(key, rec);
    }

    /// 100,000 records: five seconds of 20,000 each (pages inside a second
    /// are told apart by the token, not the timestamp), mostly image PDQs,
    /// `Active` and `Received`, with some video MD5s and TMKs.
    fn fill_100k(&mut self) {
        for second in 0..5u64 {
            self.tick();
            for i in 0..20_000u64 {
                let n = second * 20_000 + i;
                match n % 50 {
                    0 => self.put("VideoMD5", md5(n), "Received", &[]),
                    1 => self.put("VideoTMK", format!("{:016x}", n + 1), "Active", &[]),
                    _ => self.put(
                        "ImagePDQ",
                        pdq(n),
                        if n % 2 == 0 { "Active" } else { "Received" },
                        &[],
                    ),
                }
            }
        }
    }

    /// Sets the status of the `n`th record (in key order) that has `from`.
    fn restatus(&mut self, count: usize, from: &str, to: &'static str, skip: usize) {
        let mut keys: Vec<_> = self
            .records
            .values()
            .filter(|r| r.status == from)
            .map(|r| (r.kind, r.value.clone(), r.tags.clone()))
            .collect();
        keys.sort();
        for (kind, value, tags) in keys.into_iter().skip(skip).take(count) {
            self.put(kind, value, to, &tags);
        }
    }

    /// What a client should hold: live hashes of the types it takes, with
    /// one of `categories` if any.
    fn live(&self, categories: &[&str]) -> HashSet<(String, String)> {
        self.records
            .values()
            .filter(|r| matches!(r.status, "Active" | "Received"))
            .filter(|r| categories.is_empty() || r.tags.iter().any(|t| categories.contains(t)))
            .map(|r| {
                let kind = match r.kind {
                    "ImagePDQ" => "pdq",
                    "VideoMD5" => "video_md5",
                    _ => "videotmk",
                };
                (kind.to_owned(), r.value.clone())
            })
            .collect()
    }

    fn answer(&mut self, req: Req) -> Reply {
        let denied = || {
            Reply::Respond {
                status: 401,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"statusCode": 401, "message": "Access denied due to invalid subscription key."}"#.to_vec(),
            }
        };
        if req.header("ocp-apim-subscription-key") != Some(SUBSCRIPTION) {
            return denied();
        }
        match (req.method.as_str(), req.route()) {
            ("GET", "/v1/FetchHashes") if req.header("x-functions-key") == Some(FETCH_KEY) => {
                self.fetch_hashes(&req)
            }
            ("POST", "/v1/SubmitFeedback")
                if req.header("x-functions-key") == Some(FEEDBACK_KEY) =>
            {
                if self.feedback_failures > 0 {
                    self.feedback_failures -= 1;
                    return Reply::status(503, "busy");
                }
                let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
                    return Reply::status(400, "not JSON");
                };
                self.feedback.push((
                    req.header("content-type").map(str::to_owned),
                    req.header("x-functions-key").map(str::to_owned),
                    body,
                ));
                Reply::ok("application/json", "{}")
            }
            (_, "/v1/FetchHashes" | "/v1/SubmitFeedback") => denied(),
            _ => Reply::status(404, "no such function"),
        }
    }

    fn fetch_hashes(&mut self, req: &Req) -> Reply {
        self.fetches += 1;
        let fault = self.faults.pop_front();
        match fault {
            Some(Fault::TooMany(secs)) => return Reply::too_many(secs),
            Some(Fault::Fail(status)) => return Reply::status(status, "internal error"),
            Some(Fault::Stall) => return Reply::Stall,
            Some(Fault::Cut) => return Reply::Cut,
            Some(Fault::Duplicate) => {
                if let Some(last) = &self.last_page {
                    return Reply::ok("application/json", last.clone());
                }
            }
            Some(Fault::ForgetTokens) => self.epoch += 1,
            _ => {}
        }
        let (Some(start), Some(size)) = (
            req.query("startTimestamp")
                .and_then(|s| s.parse::<u64>().ok()),
            req.query("pageSize")
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| (1..=10_000).contains(n)),
        ) else {
            return Reply::status(400, "startTimestamp and pageSize are required");
        };
        let mut from = (start, 0);
        if let Some(token) = req.query("nextPageToken") {
            match parse_token(&token) {
                Some((epoch, at, modified, seq)) if epoch == self.epoch && at == start => {
                    from = (modified, seq + 1)
                }
                _ => {
                    self.refused_tokens += 1;
                    return Reply::status(400, "The continuation token is not valid.");
                }
            }
        }
        if matches!(fault, Some(Fault::Reset)) {
            from = (0, 0);
        }
        let mut keys = self.order.range(from..);
        let page: Vec<&Rec> = keys
            .by_ref()
            .take(size)
            .filter_map(|(_, key)| self.records.get(key))
            .collect();
        let more = keys.next().is_some();
        let token = match page.last() {
            Some(last) if more => Some(format!(
                "+RID:~{}/{start}/{}/{}==",
                self.epoch, last.modified, last.seq
            )),
            _ => None,
        };
        let mut next_set = page.last().map_or(start, |r| r.modified);
        if !more && self.set_back && start > 10 {
            self.set_back = false;
            next_set = start - 1;
        }
        let mut records: Vec<Value> = page.iter().map(|r| r.json()).collect();
        let mut count = records.len();
        if matches!(fault, Some(Fault::BadRecords)) {
            let at = start.max(EPOCH);
            let bad = [
                json!({"lastModtimestamp": at, "signalType": "ImagePDQ", "hashStatus": "Active"}),
                json!({"lastModtimestamp": at, "signalType": "ImagePDQ", "hashValue": "abc", "hashStatus": "Active"}),
                json!({"lastModtimestamp": at, "signalType": "URL", "hashValue": "https://x.example/", "hashStatus": "Active"}),
                json!({"lastModtimestamp": at, "signalType": "ImagePDQ", "hashValue": pdq(9_999_999), "hashStatus": "Closed"}),
                json!("garbage"),
            ];
            for (i, b) in bad.into_iter().enumerate() {
                records.insert((i * 7).min(records.len()), b);
            }
            count = records.len() + 3;
        }
        let body = json!({
            "count": count,
            "nextSetTimestamp": next_set,
            "nextPageToken": token,
            "hasMoreRecords": more,
            "hashRecords": records,
        })
        .to_string()
        .into_bytes();
        if matches!(fault, Some(Fault::Truncated)) {
            return Reply::ok("application/json", body[..body.len() / 2].to_vec());
        }
        self.last_page = Some(body.clone());
        Reply::ok("application/json", body)
    }
}

fn parse_token(token: &str) -> Option<(u64, u64, u64, u64)> {
    let inner = token.strip_prefix("+RID:~")?.strip_suffix("==")?;
    let mut parts = inner.split('/').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next()??,
        parts.next()??,
        parts.next()??,
    ))
}

fn pdq(i: u64) -> String {
    let i = u128::from(i) + 1;
    format!(
        "{:032x}{:032x}",
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835),
        i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f_1656_67b1_9e37_79f9)
    )
}

fn md5(i: u64) -> String {
    format!(
        "{:032x}",
        (u128::from(i) + 1).wrapping_mul(0xd6e8_feb8_6659_fd93_a5a5_5a5a_0f0f_f0f1)
    )
}

type Shared = Arc<Mutex<Api>>;

fn lock(api: &Mutex<Api>) -> MutexGuard<'_, Api> {
    api.lock().unwrap_or_else(|p| p.into_inner())
}

async fn standin(tmp: &tempfile::TempDir, api: &Shared) -> StandIn {
    let api = api.clone();
    StandIn::start(tmp.path(), handler(move |req| lock(&api).answer(req))).await
}

fn config(s: &StandIn, page_size: u32, categories: &[&str]) -> ExchangeConfig {
    ExchangeConfig {
        kind: ExchangeKind::Stopncii,
        name: "stopncii".into(),
        set: "hotline-a/ncii".into(),
        endpoint: s.endpoint("/v1"),
        credentials: "stopncii.toml".into(),
        interval_secs: 300,
        ca_file: None,
        timeout_secs: 2,
        page_size,
        filters: ExchangeFilters {
            categories: categories.iter().map(|c| c.to_string()).collect(),
            ..ExchangeFilters::default()
        },
    }
}

fn credentials(fields: &[(&str, &str)]) -> Credentials {
    Credentials::from_fields(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn all_keys() -> Credentials {
    credentials(&[
        ("subscription_key", SUBSCRIPTION),
        ("fetch_function_key", FETCH_KEY),
        ("feedback_function_key", FEEDBACK_KEY),
    ])
}

fn client_with(
    s: &StandIn,
    config: &ExchangeConfig,
    creds: Credentials,
    timeout: Duration,
) -> Client {
    let http = Http::new(&config.endpoint, Some(&s.ca_file), timeout, 64 << 20).unwrap();
    Client::Stopncii(stopncii::Client::new(config, creds, http).unwrap())
}

/// What a driven client collected.
#[derive(Default)]
struct Run {
    /// External id to (type, value), as a store would hold them.
    entries: HashMap<String, (String, String)>,
    cursor: String,
    pages: u64,
    items: u64,
    skipped: Vec<Skipped>,
    errors: Vec<ExchangeError>,
}

impl Run {
    fn held(&self) -> HashSet<(String, String)> {
        self.entries.values().cloned().collect()
    }

    fn apply(&mut self, op: ImportOp) {
        self.items += 1;
        match op {
            ImportOp::Add {
                signal,
                external_id: Some(id),
                labels,
            } => {
                assert!(labels.contains(&"stopncii".to_owned()), "{labels:?}");
                assert!(labels.iter().all(|l| !l.starts_with("case")), "{labels:?}");
                self.entries.insert(id, (signal.type_name, signal.value));
            }
            ImportOp::RetractExternal { external_id } => {
                self.entries.remove(&external_id);
            }
            other => panic!("the client should give ids to everything: {other:?}"),
        }
    }
}

/// Fetches until caught up, as the fetcher does; `hook` runs after each
/// stored page of this call that has more after it (to change the stand-in
/// mid-pass), with the page's number.
async fn drive(
    make: &dyn Fn() -> Client,
    run: &mut Run,
    api: &Shared,
    mut hook: impl FnMut(u64, &mut Api),
) {
    let mut client = make();
    let mut failures = 0;
    let mut answers = 0u64;
    let mut stored = 0u64;
    loop {
        let page = match client.fetch(&run.cursor).await {
            Ok(page) => page,
            Err(e) => {
                failures += 1;
                assert!(failures < 25, "no progress at {:?}: {e}", run.cursor);
                run.errors.push(e);
                continue;
            }
        };
        failures = 0;
        answers += 1;
        // A crash before the page's batch was written: page and cursor are
        // lost together, and the same cursor is fetched again.
        if answers % 7 == 3 {
            continue;
        }
        // A restart: a new client from the saved cursor.
        if answers % 11 == 5 {
            client = make();
        }
        run.pages += 1;
        stored += 1;
        run.skipped.extend(page.skipped);
        for item in page.items {
            run.apply(item.op);
        }
        run.cursor = page.cursor;
        if !page.more {
            return;
        }
        hook(stored, &mut lock(api));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_then_updates_and_deletions_converge() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    lock(&api).fill_100k();
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 1000, &[]);
    let make = || client_with(&s, &cfg, all_keys(), Duration::from_secs(5));
    let mut run = Run::default();
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert!(run.skipped.is_empty(), "{:?}", run.skipped);
    assert_eq!(run.held().len(), 100_000);
    assert_eq!(run.held(), lock(&api).live(&[]));
    assert!(run.pages >= 100, "{}", run.pages);
    assert_eq!(run.cursor, (EPOCH + 5).to_string());

    // Updates: new hashes, withdrawals and deletions, some of them while a
    // pass is under way; a withdrawn hash comes back.
    {
        let mut a = lock(&api);
        a.tick();
        for n in 100_000..103_000u64 {
            a.put("ImagePDQ", pdq(n), "Received", &[]);
        }
        a.restatus(2_000, "Active", "Withdrawn", 0);
        a.restatus(500, "Received", "Deleted", 0);
    }
    drive(&make, &mut run, &api, |page, a| {
        if page == 2 {
            a.tick();
            for n in 103_000..103_500u64 {
                a.put("ImagePDQ", pdq(n), "Active", &[]);
            }
            a.restatus(300, "Active", "Withdrawn", 0);
            a.restatus(10, "Withdrawn", "Active", 0);
        }
    })
    .await;
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let live = lock(&api).live(&[]);
    assert_eq!(live.len(), 100_000 + 3_500 - 2_000 - 500 - 300 + 10);
    assert_eq!(run.held(), live);

    // Caught up: another fetch changes nothing.
    let before = run.held();
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert_eq!(run.held(), before);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_is_survived_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    {
        let mut a = lock(&api);
        for second in 0..4u64 {
            a.tick();
            for i in 0..5_000u64 {
                let n = second * 5_000 + i;
                a.put("ImagePDQ", pdq(n), "Active", &[]);
            }
        }
    }
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 500, &[]);
    let make = || client_with(&s, &cfg, all_keys(), Duration::from_millis(1500));
    let mut run = Run::default();
    let first = [
        Fault::TooMany(7),
        Fault::Fail(500),
        Fault::Truncated,
        Fault::BadRecords,
        Fault::Cut,
        Fault::Duplicate,
        Fault::Fail(503),
        Fault::Stall,
        Fault::Reset,
        Fault::ForgetTokens,
    ];
    drive(&make, &mut run, &api, |page, a| {
        if page % 3 == 1 {
            if let Some(fault) = first.get(page as usize / 3) {
                a.faults.push_back(*fault);
            }
        }
        // The list changes while the first pass runs.
        if page == 10 {
            a.tick();
            for n in 20_000..21_000u64 {
                a.put("ImagePDQ", pdq(n), "Active", &[]);
            }
            a.restatus(700, "Active", "Deleted", 0);
        }
    })
    .await;
    assert_eq!(run.held(), lock(&api).live(&[]));

    // A second pass, from a later start: a reset now goes back, and so does
    // a pass that ends before it began.
    {
        let mut a = lock(&api);
        a.tick();
        for n in 21_000..23_000u64 {
            a.put("ImagePDQ", pdq(n), "Active", &[]);
        }
        a.restatus(1_000, "Active", "Withdrawn", 100);
        a.faults.push_back(Fault::Reset);
        a.set_back = true;
    }
    drive(&make, &mut run, &api, |page, a| {
        if page == 2 {
            a.faults.push_back(Fault::Duplicate);
        }
    })
    .await;
    let a = lock(&api);
    assert_eq!(run.held(), a.live(&[]));

    let seen = |what: &str, f: &dyn Fn(&ExchangeError) -> bool| {
        assert!(
            run.errors.iter().any(f),
            "no {what} among {:#?}",
            run.errors
        );
    };
    seen(
        "429",
        &|e| matches!(e, ExchangeError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(7)),
    );
    seen("500", &|e| {
        matches!(e, ExchangeError::Server { status: 500 })
    });
    seen("503", &|e| {
        matches!(e, ExchangeError::Server { status: 503 })
    });
    seen(
        "truncated",
        &|e| matches!(e, ExchangeError::Malformed(m) if m.contains("truncated")),
    );
    seen("cut", &|e| matches!(e, ExchangeError::Transport(_)));
    seen("stall", &|e| matches!(e, ExchangeError::Timeout(_)));
    seen(
        "repeated page",
        &|e| matches!(e, ExchangeError::CursorBack(m) if m.contains("same page")),
    );
    seen(
        "reset",
        &|e| matches!(e, ExchangeError::CursorBack(m) if m.contains("modified at")),
    );
    seen(
        "set back",
        &|e| matches!(e, ExchangeError::CursorBack(m) if m.contains("nextSetTimestamp")),
    );
    assert!(run.errors.iter().all(ExchangeError::retryable));
    // The forgotten token was refused once, and the pass started again.
    assert!(a.refused_tokens >= 1);
    // The bad records were skipped, with reasons, and nothing stopped.
    let reasons: Vec<&str> = run.skipped.iter().map(|s| s.reason.as_str()).collect();
    for expected in [
        "missing \"hashValue\"",
        "pdq value must be",
        "\"url\" is not taken",
        "unknown hashStatus",
        "not a JSON object",
        "partial page",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected}: {reasons:#?}"
        );
    }
    for r in &reasons {
        assert!(!r.contains("abc") && !r.contains("x.example"), "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_keep_tagged_hashes_only() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    {
        let mut a = lock(&api);
        a.tick();
        for n in 0..12_000u64 {
            let tags: &[&'static str] = match n % 4 {
                0 => &["Nude"],
                1 => &["Objectionable", "Nude"],
                2 => &["Objectionable"],
                _ => &[],
            };
            a.put("ImagePDQ", pdq(n), "Active", tags);
        }
    }
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 1000, &["nude"]);
    let make = || client_with(&s, &cfg, all_keys(), Duration::from_secs(5));
    let mut run = Run::default();
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert_eq!(run.held().len(), 6_000);
    assert_eq!(run.held(), lock(&api).live(&["Nude"]));
    // Hashes that lose their tag leave; hashes that gain it come.
    {
        let mut a = lock(&api);
        a.tick();
        for n in (0..400u64).map(|k| k * 4) {
            a.put("ImagePDQ", pdq(n), "Active", &["Objectionable"]);
        }
        for n in (0..300u64).map(|k| k * 4 + 3) {
            a.put("ImagePDQ", pdq(n), "Active", &["Nude"]);
        }
    }
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert_eq!(run.held().len(), 6_000 - 400 + 300);
    assert_eq!(run.held(), lock(&api).live(&["Nude"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_checked_and_feedback_arrives_in_stopnciis_words() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    {
        let mut a = lock(&api);
        a.tick();
        a.put("ImagePDQ", pdq(1), "Active", &[]);
    }
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 100, &[]);
    let timeout = Duration::from_secs(5);

    for creds in [
        credentials(&[
            ("subscription_key", "wrong"),
            ("fetch_function_key", FETCH_KEY),
        ]),
        credentials(&[
            ("subscription_key", SUBSCRIPTION),
            ("fetch_function_key", "wrong"),
        ]),
    ] {
        let mut c = client_with(&s, &cfg, creds, timeout);
        match c.fetch("").await {
            Err(e @ ExchangeError::Refused { status: 401, .. }) => {
                assert!(!e.retryable());
                assert!(
                    !e.to_string().contains(SUBSCRIPTION) && !e.to_string().contains(FETCH_KEY)
                );
            }
            other => panic!("{other:?}"),
        }
    }
    // Missing fields are refused when the client is made.
    let http = Http::new(&cfg.endpoint, Some(&s.ca_file), timeout, 1 << 20).unwrap();
    let e = stopncii::Client::new(
        &cfg,
        credentials(&[("subscription_key", SUBSCRIPTION)]),
        http,
    )
    .unwrap_err();
    assert!(e.to_string().contains("fetch_function_key"), "{e}");

    let mut c = client_with(&s, &cfg, all_keys(), timeout);
    let page = c.fetch("").await.unwrap();
    let Some(ImportOp::Add {
        external_id: Some(id),
        ..
    }) = page.items.first().map(|i| i.op.clone())
    else {
        panic!("{page:?}");
    };
    let signal = Signal::parse("pdq", &pdq(1)).unwrap();
    assert_eq!(id, stopncii::external_id(&signal));
    let confirmed = OutgoingFeedback {
        external_id: id.clone(),
        signal: signal.clone(),
        verdict: Verdict::Confirmed,
        reason: String::new(),
    };
    let rejected = OutgoingFeedback {
        verdict: Verdict::FalsePositive,
        reason: "benign_collision".into(),
        ..confirmed.clone()
    };
    c.send_feedback(&confirmed).await.unwrap();
    lock(&api).feedback_failures = 1;
    assert!(matches!(
        c.send_feedback(&rejected).await,
        Err(ExchangeError::Server { status: 503 })
    ));
    c.send_feedback(&rejected).await.unwrap();
    {
        let a = lock(&api);
        assert_eq!(a.feedback.len(), 2);
        for (content_type, key, _) in &a.feedback {
            assert_eq!(content_type.as_deref(), Some("application/json"));
            assert_eq!(key.as_deref(), Some(FEEDBACK_KEY));
        }
        assert_eq!(
            a.feedback[0].2,
            json!({"count": 1, "hashFeedbacks": [{"hashValue": pdq(1), "feedbackValue": "Blocked", "tags": []}]})
        );
        assert_eq!(
            a.feedback[1].2,
            json!({"count": 1, "hashFeedbacks": [{"hashValue": pdq(1), "feedbackValue": "NotBlocked", "tags": ["benign_collision"]}]})
        );
    }
    // Feedback needs its own function key.
    let mut fetch_only = client_with(
        &s,
        &cfg,
        credentials(&[
            ("subscription_key", SUBSCRIPTION),
            ("fetch_function_key", FETCH_KEY),
        ]),
        timeout,
    );
    match fetch_only.send_feedback(&confirmed).await {
        Err(e @ ExchangeError::Credentials { .. }) => {
            assert!(e.to_string().contains("feedback_function_key"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A wrong key for SubmitFeedback is refused by the service.
    let mut wrong = client_with(
        &s,
        &cfg,
        credentials(&[
            ("subscription_key", SUBSCRIPTION),
            ("fetch_function_key", FETCH_KEY),
            ("feedback_function_key", FETCH_KEY),
        ]),
        timeout,
    );
    assert!(matches!(
        wrong.send_feedback(&confirmed).await,
        Err(ExchangeError::Refused { status: 401, .. })
    ));
    assert_eq!(lock(&api).feedback.len(), 2);
}

/// The stand-in as a node's exchange meets it.
impl super::node::Service for Mutex<Api> {
    fn live(&self) -> super::node::Model {
        lock(self)
            .live(&[])
            .into_iter()
            .map(|(kind, value)| {
                let signal = Signal::parse(&kind, &value).unwrap();
                let values = [super::node::normal(&kind, &value)].into();
                (stopncii::external_id(&signal), values)
            })
            .collect()
    }

    /// New hashes, withdrawals and deletions, and records modified again
    /// (their regions, so their labels, change with them).
    fn churn(&self) {
        let mut a = lock(self);
        a.tick();
        for n in 100_000..102_000u64 {
            a.put("ImagePDQ", pdq(n), "Received", &[]);
        }
        a.restatus(1_500, "Active", "Withdrawn", 0);
        a.restatus(500, "Received", "Deleted", 0);
        a.restatus(300, "Active", "Active", 5_000);
    }

    fn feedback_received(&self) -> usize {
        lock(self).feedback.len()
    }

    /// SubmitFeedback with the feedback function's key: "not blocked",
    /// tagged with the reason.
    fn check_feedback(&self, _external_id: &str, pdq: &str) {
        let a = lock(self);
        let (content_type, key, body) = &a.feedback[0];
        assert_eq!(content_type.as_deref(), Some("application/json"));
        assert_eq!(key.as_deref(), Some(FEEDBACK_KEY));
        assert_eq!(
            *body,
            json!({"count": 1, "hashFeedbacks": [{"hashValue": pdq, "feedbackValue": "NotBlocked", "tags": ["benign_collision"]}]})
        );
    }
}

/// A real node with a StopNCII exchange in its `hashfed.toml`: 100k hashes
/// at start, then new, modified, withdrawn and deleted ones; a provider's
/// false positive goes back as one SubmitFeedback, once, across a restart
/// (`node::keeps_current`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_keeps_100k_hashes_current_and_submits_feedback_once() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    lock(&api).fill_100k();
    let s = standin(&tmp, &api).await;
    let setup = super::node::Setup {
        config: config(&s, 1000, &[]),
        ca_file: &s.ca_file,
        credentials: format!(
            "subscription_key = \"{SUBSCRIPTION}\"\nfetch_function_key = \"{FETCH_KEY}\"\n\
             feedback_function_key = \"{FEEDBACK_KEY}\"\n"
        ),
        secrets: &[SUBSCRIPTION, FETCH_KEY, FEEDBACK_KEY],
    };
    super::node::keeps_current(&*api, setup).await;
}
