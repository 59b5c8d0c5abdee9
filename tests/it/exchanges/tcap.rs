//! TCAP's client against a stand-in of its API, written from the same
//! public description (python-threatexchange's `techagainstterrorism`
//! client and its tests, TCAP's hash list pages): `POST
//! /tcap/token-auth/tcap/` with `{"username", "password"}` answers a JWT
//! (400 for bad credentials); `GET /tcap/api/hash-list/v2/all?order=asc&
//! limit&after` wants `Authorization: Bearer <jwt>` (401 for a missing or
//! expired one) and answers `{count, next, previous, checkpoint, results}`
//! in `(updated_on, id)` order after the `'{UTC},{id}'` checkpoint. On
//! demand it misbehaves: a truncated page, bad records, 429 with
//! Retry-After, 5xx, a stall, a cut connection, the last page again, a
//! reset to the beginning, every token expired.
//!
//! Driven as the fetcher drives it (fetch until `!more`, feeding back each
//! cursor, losing a page with its cursor now and then as a crash would,
//! rebuilding the client from the saved cursor now and then), the client
//! must collect exactly the stand-in's live records (adds minus deletions).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hashfed::config::{ExchangeConfig, ExchangeFilters, ExchangeKind};
use hashfed::exchange::http::Http;
use hashfed::exchange::{tcap, Client, Credentials, ExchangeError, OutgoingFeedback, Skipped};
use hashfed::import::ImportOp;
use hashfed::model::{Signal, Verdict};
use serde_json::{json, Value};

use super::standin::{handler, Reply, Req, StandIn};

const USER: &str = "hotline-a";
const PASSWORD: &str = "correct horse battery";

/// Microseconds of the stand-in's clock where its history starts.
const EPOCH_US: u64 = 1_704_901_040_222_779;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Truncated,
    BadRecords,
    TooMany(u64),
    Fail(u16),
    Stall,
    Cut,
    Duplicate,
    /// Ignores `after`: the first page of everything.
    Reset,
    /// Every token issued so far has expired.
    Expire,
}

#[derive(Clone, Debug)]
struct Rec {
    id: u64,
    algorithm: &'static str,
    digest: String,
    ideology: &'static str,
    deleted: bool,
    updated_us: u64,
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

impl Rec {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "hash_digest": self.digest,
            "algorithm": self.algorithm,
            "ideology": self.ideology,
            "file_type": if self.algorithm == "PDQ" { "png" } else { "mp4" },
            "deleted": self.deleted,
            "updated_on": self.updated_us as f64 / 1e6,
            "created_on": "2025-03-03T23:05:22.587000",
        })
    }
}

#[derive(Default)]
struct Api {
    records: HashMap<u64, Rec>,
    order: BTreeMap<(u64, u64), u64>,
    clock_us: u64,
    next_id: u64,
    tokens: HashSet<String>,
    issued: u64,
    logins: u64,
    refused_tokens: u64,
    faults: VecDeque<Fault>,
    last_page: Option<Vec<u8>>,
    port: u16,
    /// Requests for anything but the login and the list (such as
    /// feedback, which TCAP's client does not send).
    strays: Vec<Req>,
}

impl Api {
    fn new() -> Api {
        Api {
            clock_us: EPOCH_US,
            next_id: 1,
            ..Api::default()
        }
    }

    /// A new instant; records changed in it share their `updated_on`.
    fn tick(&mut self) {
        self.clock_us += 1;
    }

    fn touch(&mut self, rec: Rec) {
        if let Some(old) = self.records.get(&rec.id) {
            self.order.remove(&(old.updated_us, old.id));
        }
        let rec = Rec {
            updated_us: self.clock_us,
            ..rec
        };
        self.order.insert((rec.updated_us, rec.id), rec.id);
        self.records.insert(rec.id, rec);
    }

    fn add(&mut self, algorithm: &'static str, digest: String) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let ideology = if id % 3 == 0 { "Far-Right" } else { "Islamist" };
        self.touch(Rec {
            id,
            algorithm,
            digest,
            ideology,
            deleted: false,
            updated_us: 0,
        });
        id
    }

    fn delete(&mut self, count: usize, skip: usize) {
        let mut ids: Vec<u64> = self
            .records
            .values()
            .filter(|r| !r.deleted)
            .map(|r| r.id)
            .collect();
        ids.sort();
        for id in ids.into_iter().skip(skip).take(count) {
            if let Some(rec) = self.records.get(&id).cloned() {
                self.touch(Rec {
                    deleted: true,
                    ..rec
                });
            }
        }
    }

    /// Records changed without changing their hash (a new ideology).
    fn retouch(&mut self, count: usize) {
        let mut ids: Vec<u64> = self.records.keys().copied().collect();
        ids.sort();
        for id in ids.into_iter().rev().take(count) {
            if let Some(rec) = self.records.get(&id).cloned() {
                self.touch(Rec {
                    ideology: "Far-Right",
                    ..rec
                });
            }
        }
    }

    fn live(&self) -> HashMap<String, (String, String)> {
        self.records
            .values()
            .filter(|r| !r.deleted)
            .map(|r| {
                let kind = match r.algorithm {
                    "PDQ" => "pdq",
                    "MD5" => "md5",
                    "SHA256" => "sha256",
                    _ => "sha512",
                };
                (
                    format!("tcap:{}", r.id),
                    (kind.to_owned(), r.digest.clone()),
                )
            })
            .collect()
    }

    fn issue(&mut self) -> String {
        self.issued += 1;
        let token = format!("eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo{}.sig", self.issued);
        self.tokens.insert(token.clone());
        token
    }

    fn answer(&mut self, req: Req) -> Reply {
        match (req.method.as_str(), req.route()) {
            ("POST", "/tcap/token-auth/tcap/") => self.login(&req),
            ("GET", "/tcap/api/hash-list/v2/all") => self.hash_list(&req),
            _ => {
                self.strays.push(req);
                Reply::status(404, "{\"detail\": \"Not found.\"}")
            }
        }
    }

    fn login(&mut self, req: &Req) -> Reply {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        if body["username"] != USER || body["password"] != PASSWORD {
            return Reply::status(
                400,
                "{\"non_field_errors\": [\"Unable to log in with provided credentials.\"]}",
            );
        }
        self.logins += 1;
        let token = self.issue();
        Reply::ok(
            "application/json",
            json!({"token": token, "user": {"id": 7, "username": USER}}).to_string(),
        )
    }

    fn hash_list(&mut self, req: &Req) -> Reply {
        let token = req
            .header("authorization")
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        if !self.tokens.contains(token) {
            self.refused_tokens += 1;
            return Reply::Respond {
                status: 401,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"detail": "Given token not valid for any token type", "code": "token_not_valid"}"#.to_vec(),
            };
        }
        let fault = self.faults.pop_front();
        match fault {
            Some(Fault::TooMany(secs)) => return Reply::too_many(secs),
            Some(Fault::Fail(status)) => return Reply::status(status, "Server Error (500)"),
            Some(Fault::Stall) => return Reply::Stall,
            Some(Fault::Cut) => return Reply::Cut,
            Some(Fault::Duplicate) => {
                if let Some(last) = &self.last_page {
                    return Reply::ok("application/json", last.clone());
                }
            }
            Some(Fault::Expire) => {
                self.tokens.clear();
                self.refused_tokens += 1;
                return Reply::status(401, "{\"detail\": \"Token is expired\"}");
            }
            _ => {}
        }
        if req.query("order").as_deref() != Some("asc") {
            return Reply::status(400, "order=asc expected");
        }
        let limit = req
            .query("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .unwrap_or(1000)
            .clamp(1, 10_000);
        let mut from = (0, 0);
        if let Some(after) = req.query("after").filter(|a| !a.is_empty()) {
            let parsed = after.split_once(',').and_then(|(at, id)| {
                let at: f64 = at.parse().ok()?;
                Some((
                    (at * 1e6).round() as u64,
                    id.parse::<u64>().ok()?.checked_add(1)?,
                ))
            });
            match parsed {
                Some(key) => from = key,
                None => return Reply::status(400, "{\"after\": [\"Invalid checkpoint.\"]}"),
            }
        }
        if matches!(fault, Some(Fault::Reset)) {
            from = (0, 0);
        }
        let total = self.order.range(from..).count();
        let page: Vec<&Rec> = self
            .order
            .range(from..)
            .take(limit)
            .filter_map(|(_, id)| self.records.get(id))
            .collect();
        let more = total > page.len();
        let checkpoint = page
            .last()
            .map(|r| format!("{},{}", seconds(r.updated_us), r.id))
            .unwrap_or_default();
        let mut results: Vec<Value> = page.iter().map(|r| r.json()).collect();
        if matches!(fault, Some(Fault::BadRecords)) {
            let at = page.first().map_or(EPOCH_US, |r| r.updated_us) as f64 / 1e6;
            let bad = [
                json!({"updated_on": at, "algorithm": "PDQ", "hash_digest": pdq(9_999_999), "deleted": false}),
                json!({"id": 9_999_998, "algorithm": "PDQ", "hash_digest": pdq(9_999_998)}),
                json!({"id": 9_999_997, "updated_on": at, "algorithm": "PDQ", "hash_digest": "abc"}),
                json!({"id": 9_999_996, "updated_on": at, "hash_digest": pdq(9_999_996)}),
                json!(["not", "an", "object"]),
            ];
            for (i, b) in bad.into_iter().enumerate() {
                results.insert((i * 5).min(results.len()), b);
            }
        }
        let body = json!({
            "count": total,
            "next": more.then(|| format!(
                "https://127.0.0.1:{}/tcap/api/hash-list/v2/all?limit={limit}&offset={limit}&order=asc",
                self.port
            )),
            "previous": null,
            "checkpoint": checkpoint,
            "results": results,
        })
        .to_string()
        .into_bytes();
        if matches!(fault, Some(Fault::Truncated)) {
            return Reply::ok("application/json", body[..body.len() * 2 / 3].to_vec());
        }
        self.last_page = Some(body.clone());
        Reply::ok("application/json", body)
    }
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
    let shared = api.clone();
    let s = StandIn::start(tmp.path(), handler(move |req| lock(&shared).answer(req))).await;
    lock(api).port = s.addr.port();
    s
}

fn config(s: &StandIn, page_size: u32) -> ExchangeConfig {
    ExchangeConfig {
        kind: ExchangeKind::Tcap,
        name: "tcap".into(),
        set: "hotline-a/tvec".into(),
        endpoint: s.endpoint("/tcap"),
        credentials: "tcap.toml".into(),
        interval_secs: 300,
        ca_file: None,
        timeout_secs: 2,
        page_size,
        filters: ExchangeFilters::default(),
    }
}

fn credentials(fields: &[(&str, &str)]) -> Credentials {
    Credentials::from_fields(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn login() -> Credentials {
    credentials(&[("username", USER), ("password", PASSWORD)])
}

fn client_with(
    s: &StandIn,
    config: &ExchangeConfig,
    creds: Credentials,
    timeout: Duration,
) -> Client {
    let http = Http::new(&config.endpoint, Some(&s.ca_file), timeout, 64 << 20).unwrap();
    Client::Tcap(tcap::Client::new(config, creds, http).unwrap())
}

#[derive(Default)]
struct Run {
    entries: HashMap<String, (String, String)>,
    cursor: String,
    pages: u64,
    skipped: Vec<Skipped>,
    errors: Vec<ExchangeError>,
}

impl Run {
    fn apply(&mut self, op: ImportOp) {
        match op {
            ImportOp::Add {
                signal,
                external_id: Some(id),
                labels,
            } => {
                assert!(labels.contains(&"tcap".to_owned()), "{labels:?}");
                assert!(
                    labels.iter().any(|l| l.starts_with("ideology:")),
                    "{labels:?}"
                );
                self.entries.insert(id, (signal.type_name, signal.value));
            }
            ImportOp::RetractExternal { external_id } => {
                self.entries.remove(&external_id);
            }
            other => panic!("the client should give ids to everything: {other:?}"),
        }
    }
}

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
        if answers % 7 == 3 {
            continue; // lost with its cursor, as in a crash
        }
        if answers % 11 == 5 {
            client = make(); // a restart from the saved cursor
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

fn fill(api: &Shared, instants: u64, per_instant: u64) {
    let mut a = lock(api);
    for _ in 0..instants {
        a.tick();
        for _ in 0..per_instant {
            let n = a.next_id;
            match n % 40 {
                0 => a.add("MD5", md5(n)),
                1 => a.add("SHA256", format!("{}{}", md5(n), md5(n + 1))),
                2 => a.add("SHA512", format!("{}{}", pdq(n), pdq(n + 1))),
                _ => a.add("PDQ", pdq(n)),
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_then_updates_and_deletions_converge() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    // Four instants of 25,000 records each: a checkpoint's id, not its
    // time, tells pages inside one apart.
    fill(&api, 4, 25_000);
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 1000);
    let make = || client_with(&s, &cfg, login(), Duration::from_secs(5));
    let mut run = Run::default();
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    assert!(run.skipped.is_empty(), "{:?}", run.skipped);
    assert_eq!(run.entries.len(), 100_000);
    assert_eq!(run.entries, lock(&api).live());
    assert!(run.pages >= 100);
    assert_eq!(run.cursor, format!("{},100000", seconds(EPOCH_US + 4)));
    // One login per client: the token is kept while it works.
    let logins = lock(&api).logins;
    assert!((2..20).contains(&logins), "{logins}");

    {
        let mut a = lock(&api);
        a.tick();
        for n in 0..2_000u64 {
            a.add("PDQ", pdq(200_000 + n));
        }
        a.delete(3_000, 0);
        a.retouch(500);
    }
    drive(&make, &mut run, &api, |page, a| {
        if page == 1 {
            a.tick();
            a.delete(400, 10_000);
            for n in 0..300u64 {
                a.add("MD5", md5(300_000 + n));
            }
        }
    })
    .await;
    assert!(run.errors.is_empty(), "{:?}", run.errors);
    let live = lock(&api).live();
    assert_eq!(live.len(), 100_000 + 2_000 - 3_000 - 400 + 300);
    assert_eq!(run.entries, live);
    // Caught up: nothing more.
    let cursor = run.cursor.clone();
    drive(&make, &mut run, &api, |_, _| {}).await;
    assert_eq!(run.cursor, cursor);
    assert_eq!(run.entries, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_is_survived_and_converges() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    fill(&api, 5, 4_000);
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 500);
    let make = || client_with(&s, &cfg, login(), Duration::from_millis(1500));
    let mut run = Run::default();
    let faults = [
        Fault::TooMany(3),
        Fault::Fail(500),
        Fault::Truncated,
        Fault::BadRecords,
        Fault::Cut,
        Fault::Duplicate,
        Fault::Expire,
        Fault::Fail(502),
        Fault::Reset,
        Fault::Stall,
    ];
    drive(&make, &mut run, &api, |page, a| {
        if page % 3 == 1 {
            if let Some(fault) = faults.get(page as usize / 3) {
                a.faults.push_back(*fault);
            }
        }
        if page == 12 {
            a.tick();
            a.delete(900, 0);
            for n in 0..700u64 {
                a.add("PDQ", pdq(500_000 + n));
            }
        }
    })
    .await;
    let a = lock(&api);
    assert_eq!(run.entries, a.live());

    let seen = |what: &str, f: &dyn Fn(&ExchangeError) -> bool| {
        assert!(
            run.errors.iter().any(f),
            "no {what} among {:#?}",
            run.errors
        );
    };
    seen(
        "429",
        &|e| matches!(e, ExchangeError::RateLimited { retry_after: Some(d) } if *d == Duration::from_secs(3)),
    );
    seen("500", &|e| {
        matches!(e, ExchangeError::Server { status: 500 })
    });
    seen("502", &|e| {
        matches!(e, ExchangeError::Server { status: 502 })
    });
    seen(
        "truncated",
        &|e| matches!(e, ExchangeError::Malformed(m) if m.contains("truncated")),
    );
    seen("cut", &|e| matches!(e, ExchangeError::Transport(_)));
    seen("stall", &|e| matches!(e, ExchangeError::Timeout(_)));
    seen(
        "repeated page",
        &|e| matches!(e, ExchangeError::CursorBack(m) if m.contains("did not get past")),
    );
    seen(
        "reset",
        &|e| matches!(e, ExchangeError::CursorBack(m) if m.contains("is before ours")),
    );
    assert!(run.errors.iter().all(ExchangeError::retryable));
    // The expired token was refused and the client logged in again, with
    // no error to show for it.
    assert!(a.refused_tokens >= 1);
    assert!(!run
        .errors
        .iter()
        .any(|e| matches!(e, ExchangeError::Refused { .. })));
    let reasons: Vec<(Option<&str>, &str)> = run
        .skipped
        .iter()
        .map(|s| (s.id.as_deref(), s.reason.as_str()))
        .collect();
    for (id, expected) in [
        (None, "no whole-number \"id\""),
        (Some("tcap:9999998"), "no numeric \"updated_on\""),
        (Some("tcap:9999997"), "pdq value must be"),
        (Some("tcap:9999996"), "no \"algorithm\""),
        (None, "not a JSON object"),
    ] {
        assert!(
            reasons
                .iter()
                .any(|(i, r)| *i == id && r.contains(expected)),
            "{expected}: {reasons:#?}"
        );
    }
    for (_, r) in &reasons {
        assert!(
            !r.contains("abc") && !r.contains(&pdq(9_999_996)[..12]),
            "{r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_tokens_and_feedback() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    fill(&api, 1, 50);
    let s = standin(&tmp, &api).await;
    let cfg = config(&s, 20);
    let timeout = Duration::from_secs(5);

    // Wrong password: refused at the login, not retried.
    let mut c = client_with(
        &s,
        &cfg,
        credentials(&[("username", USER), ("password", "wrong")]),
        timeout,
    );
    match c.fetch("").await {
        Err(e @ ExchangeError::Refused { status: 400, .. }) => {
            assert!(!e.retryable());
            assert!(!e.to_string().contains("wrong"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // Neither a login nor a token: refused when made.
    let http = Http::new(&cfg.endpoint, Some(&s.ca_file), timeout, 1 << 20).unwrap();
    let e = tcap::Client::new(&cfg, credentials(&[("username", USER)]), http).unwrap_err();
    assert!(matches!(e, ExchangeError::Credentials { .. }), "{e}");

    // A token issued elsewhere works until it expires; then, with no
    // login to fall back on, the client says so.
    let token = lock(&api).issue();
    let mut c = client_with(&s, &cfg, credentials(&[("token", &token)]), timeout);
    let page = c.fetch("").await.unwrap();
    assert_eq!(page.items.len(), 20);
    assert!(page.more);
    assert_eq!(lock(&api).logins, 0);
    lock(&api).tokens.clear();
    match c.fetch(&page.cursor).await {
        Err(e @ ExchangeError::Refused { status: 401, .. }) => {
            assert!(!e.to_string().contains(&token), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // A stale token with a login beside it: one login, then on.
    let mut c = client_with(
        &s,
        &cfg,
        credentials(&[
            ("token", &token),
            ("username", USER),
            ("password", PASSWORD),
        ]),
        timeout,
    );
    let next = c.fetch(&page.cursor).await.unwrap();
    assert_eq!(next.items.len(), 20);
    assert_eq!(lock(&api).logins, 1);
    // The same cursor gives the same page.
    let again = c.fetch(&page.cursor).await.unwrap();
    assert_eq!(again.items, next.items);
    assert_eq!(again.cursor, next.cursor);
    // A cursor that is not a checkpoint is refused as configuration.
    assert!(matches!(
        c.fetch("yesterday").await,
        Err(ExchangeError::Config(_))
    ));

    // Feedback: TCAP describes no way to send it.
    let signal = Signal::parse("pdq", &pdq(3)).unwrap();
    let f = OutgoingFeedback {
        external_id: "tcap:3".into(),
        signal,
        verdict: Verdict::FalsePositive,
        reason: String::new(),
    };
    match c.send_feedback(&f).await {
        Err(e @ ExchangeError::Unsupported(_)) => {
            assert!(!e.retryable());
            assert!(e.to_string().contains("feedback"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// The stand-in as a node's exchange meets it.
impl super::node::Service for Mutex<Api> {
    fn live(&self) -> super::node::Model {
        lock(self)
            .live()
            .into_iter()
            .map(|(id, (kind, value))| (id, [super::node::normal(&kind, &value)].into()))
            .collect()
    }

    /// New records, deletions, and records whose ideology (so labels)
    /// changed.
    fn churn(&self) {
        let mut a = lock(self);
        a.tick();
        for n in 0..1_500u64 {
            a.add("PDQ", pdq(200_000 + n));
        }
        for n in 0..200u64 {
            a.add("MD5", md5(300_000 + n));
        }
        a.delete(1_000, 0);
        a.retouch(500);
    }

    /// Nothing may come but logins and list requests.
    fn feedback_received(&self) -> usize {
        lock(self).strays.len()
    }

    fn takes_feedback(&self) -> bool {
        false
    }

    fn check_feedback(&self, _external_id: &str, _pdq: &str) {
        unreachable!("TCAP's client sends no feedback")
    }
}

/// A real node with a TCAP exchange in its `hashfed.toml`: 100k records at
/// start, then new, changed and deleted ones; a provider's false positive
/// on a TCAP entry, which the client cannot send, is dropped from the
/// outbox with an audited reason, nothing reaches the service, and the
/// exchange stays healthy, across a restart (`node::keeps_current`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_keeps_100k_records_current_and_sends_no_feedback() {
    let tmp = tempfile::tempdir().unwrap();
    let api: Shared = Arc::new(Mutex::new(Api::new()));
    fill(&api, 4, 25_000);
    let s = standin(&tmp, &api).await;
    let setup = super::node::Setup {
        config: config(&s, 1000),
        ca_file: &s.ca_file,
        credentials: format!("username = \"{USER}\"\npassword = \"{PASSWORD}\"\n"),
        secrets: &[PASSWORD],
    };
    super::node::keeps_current(&*api, setup).await;
}
