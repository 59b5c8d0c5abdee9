//! The ThreatExchange client against a stand-in Graph API written from
//! Meta's public description (and python-threatexchange's client of it):
//! `/<group>/threat_updates` pages of `{"data": [...], "paging": {"cursors":
//! {"after"}, "next"}}` in `last_updated` order (an indicator changed again
//! moves to the end), `start_time` inclusive, `types`, `limit`, the
//! `access_token` on every request, Graph API errors as JSON; feedback as
//! `GET /<indicator>/descriptors` and `POST /<descriptor>` with reactions.
//! It misbehaves on demand: a malformed page, 429 with Retry-After, 500, a
//! stall, a cut connection, the previous page again, paging reset to the
//! start.
//!
//! A client driven in a loop (fetch until caught up, feeding back each
//! cursor, restarting from a saved cursor midway, dropping a page as a
//! crash would) must end with exactly the stand-in's live entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashfed::config::{ExchangeConfig, ExchangeFilters, ExchangeKind};
use hashfed::exchange::http::{Http, MAX_BODY};
use hashfed::exchange::threatexchange::Client;
use hashfed::exchange::{Credentials, ExchangeError, OutgoingFeedback, Page};
use hashfed::import::ImportOp;
use hashfed::model::{Signal, Verdict};
use serde_json::{json, Value};

use super::standin::{handler, Handler, Reply, Req, StandIn};

pub(super) const TOKEN: &str = "1234567890|s3cr3tAppSecretForTheStandIn";
pub(super) const SECRET_PART: &str = "s3cr3tAppSecretForTheStandIn";
const APP_ID: &str = "1234567890";
const OTHER_APP: &str = "555000111";
const VERSION: &str = "/v21.0";
const GROUPS: [&str; 2] = ["1001", "1002"];
/// Updates per second of the stand-in's clock: many share a second.
const PER_SECOND: u64 = 500;

/// What the stand-in can do wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    Malformed,
    TooMany,
    Server,
    Stall,
    Cut,
    Duplicate,
    Reset,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Live,
    /// Every descriptor says NON_MALICIOUS.
    NonMalicious,
    /// `should_delete: true`.
    Deleted,
    /// Descriptors gone (ThreatExchange issue 834).
    NoDescriptors,
}

struct Indicator {
    group: usize,
    api_type: &'static str,
    value: String,
    tags: Vec<String>,
    state: State,
    time: u64,
}

/// A feed entry: an indicator, or a malformed record.
#[derive(Clone, Copy)]
enum Entry {
    Indicator,
    Garbage(u8),
}

/// The stand-in's ThreatExchange.
pub(super) struct Graph {
    port: u16,
    indicators: HashMap<u64, Indicator>,
    /// Per group, the update list: (time, id) in order.
    feeds: [BTreeMap<(u64, u64), Entry>; 2],
    clock: u64,
    events: u64,
    next_id: u64,
    rng: u64,
    garbage: usize,
    /// Misbehaviour: `fault` on every `every`-th page request that has an
    /// `after` token, `left` more times.
    pub(super) fault: Option<Fault>,
    pub(super) every: usize,
    pub(super) left: usize,
    with_after: usize,
    pub(super) injected: Vec<Fault>,
    /// When each fault was met.
    pub(super) injected_at: Vec<std::time::Instant>,
    /// The `Retry-After` (seconds) of [`Fault::TooMany`].
    pub(super) retry_after: u64,
    last_body: [Option<Vec<u8>>; 2],
    /// Requests seen, and the feedback posts.
    requests: usize,
    limits: Vec<String>,
    posts: Vec<Req>,
}

const TAGS: [&str; 6] = [
    "gifct",
    "tvec",
    "media_type_video",
    "hash_sharing",
    "group:example",
    "media_type_photo",
];

impl Graph {
    pub(super) fn new(seed: u64) -> Self {
        Graph {
            port: 0,
            indicators: HashMap::new(),
            feeds: [BTreeMap::new(), BTreeMap::new()],
            clock: 1_700_000_000,
            events: 0,
            next_id: 100_000_000_000,
            rng: seed | 1,
            garbage: 0,
            fault: None,
            every: 3,
            left: 0,
            with_after: 0,
            injected: Vec::new(),
            injected_at: Vec::new(),
            retry_after: 1,
            last_body: [None, None],
            requests: 0,
            limits: Vec::new(),
            posts: Vec::new(),
        }
    }

    pub(super) fn rand(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn hex(&mut self, bytes: usize) -> String {
        (0..bytes.div_ceil(8))
            .map(|_| format!("{:016x}", self.rand()))
            .collect::<String>()[..bytes * 2]
            .to_owned()
    }

    fn tick(&mut self) -> u64 {
        self.events += 1;
        if self.events % PER_SECOND == 0 {
            self.clock += 1;
        }
        self.clock
    }

    fn add(&mut self, group: usize) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let roll = self.rand() % 100;
        let (api_type, value) = match roll {
            0..70 => ("HASH_PDQ", self.hex(32)),
            70..85 => ("HASH_MD5", self.hex(16)),
            85..93 => ("HASH_VIDEO_MD5", self.hex(16)),
            _ => ("HASH_TMK", self.hex(48)),
        };
        let mut tags = Vec::new();
        for _ in 0..self.rand() % 4 {
            let tag = TAGS[(self.rand() % TAGS.len() as u64) as usize].to_owned();
            tags.push(tag);
        }
        let state = if self.rand() % 50 == 0 {
            State::NonMalicious
        } else {
            State::Live
        };
        let time = self.tick();
        self.indicators.insert(
            id,
            Indicator {
                group,
                api_type,
                value,
                tags,
                state,
                time,
            },
        );
        self.feeds[group].insert((time, id), Entry::Indicator);
        // Now and then a malformed record beside it.
        if self.rand() % 997 == 0 {
            let gid = self.next_id;
            self.next_id += 1;
            let kind = (self.rand() % 3) as u8;
            self.feeds[group].insert((time, gid), Entry::Garbage(kind));
            self.garbage += 1;
        }
        id
    }

    /// Changes an indicator: it moves to the end of its group's list.
    fn change(&mut self, id: u64, state: State, retag: bool) {
        let time = self.tick();
        let new_tags = retag.then(|| vec![format!("retagged-{}", self.rand() % 7)]);
        let Some(ind) = self.indicators.get_mut(&id) else {
            return;
        };
        self.feeds[ind.group].remove(&(ind.time, id));
        ind.time = time;
        ind.state = state;
        if let Some(tags) = new_tags {
            ind.tags = tags;
        }
        self.feeds[ind.group].insert((time, id), Entry::Indicator);
    }

    /// Some random indicator's id.
    fn pick(&mut self) -> u64 {
        let n = self.rand() % self.indicators.len() as u64;
        // HashMap order is arbitrary but fixed; ids are dense.
        100_000_000_000 + n
    }

    /// Adds `adds` indicators, then deletes, flips and retags some.
    pub(super) fn churn(&mut self, adds: usize, deletes: usize, flips: usize, retags: usize) {
        for _ in 0..adds {
            let group = usize::from(self.rand() % 5 >= 3);
            self.add(group);
        }
        for i in 0..deletes {
            let id = self.pick();
            let state = if i % 2 == 0 {
                State::Deleted
            } else {
                State::NoDescriptors
            };
            self.change(id, state, false);
        }
        for i in 0..flips {
            let id = self.pick();
            // Some come back.
            let state = if i % 3 == 0 {
                State::Live
            } else {
                State::NonMalicious
            };
            self.change(id, state, false);
        }
        for _ in 0..retags {
            let id = self.pick();
            self.change(id, State::Live, true);
        }
    }

    /// hashfed's type name for an indicator.
    fn type_name(ind: &Indicator) -> &'static str {
        match ind.api_type {
            "HASH_PDQ" => "pdq",
            "HASH_MD5" if ind.tags.iter().any(|t| t == "media_type_video") => "video_md5",
            "HASH_MD5" => "md5",
            "HASH_VIDEO_MD5" => "video_md5",
            _ => "tmk",
        }
    }

    /// The live entries of the types `take` accepts, as the client should
    /// end up with them.
    fn live(&self, take: impl Fn(&str) -> bool) -> Model {
        self.indicators
            .iter()
            .filter(|(_, ind)| ind.state == State::Live && take(Self::type_name(ind)))
            .map(|(id, ind)| {
                let mut labels = ind.tags.clone();
                labels.sort();
                labels.dedup();
                (
                    format!("te:{id}"),
                    (Self::type_name(ind).to_owned(), ind.value.clone(), labels),
                )
            })
            .collect()
    }

    fn record(&self, id: u64, ind: &Indicator) -> Value {
        let mut r = json!({
            "id": id.to_string(),
            "indicator": ind.value,
            "type": ind.api_type,
            "last_updated": ind.time,
            "should_delete": ind.state == State::Deleted,
        });
        let (status_a, status_b) = match ind.state {
            State::NonMalicious => ("NON_MALICIOUS", "NON_MALICIOUS"),
            _ => ("MALICIOUS", "SUSPICIOUS"),
        };
        let half = ind.tags.len() / 2;
        match ind.state {
            State::NoDescriptors => {}
            State::Deleted => r["descriptors"] = json!({"data": []}),
            _ => {
                // Two owners, the two tag shapes the API uses.
                let a: Vec<Value> = ind.tags[..half]
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"id": i.to_string(), "text": t}))
                    .collect();
                r["descriptors"] = json!({"data": [
                    {"id": format!("{id}1"), "owner": {"id": APP_ID}, "tags": {"data": a}, "status": status_a},
                    {"id": format!("{id}2"), "owner": {"id": OTHER_APP}, "tags": &ind.tags[half..], "status": status_b},
                ]});
            }
        }
        r
    }

    fn garbage(id: u64, time: u64, kind: u8) -> Value {
        match kind {
            0 => json!({"type": "HASH_PDQ", "indicator": "ab".repeat(32), "last_updated": time}),
            1 => json!({"id": id.to_string(), "type": "HASH_PDQ", "last_updated": time,
                        "descriptors": {"data": [{"id": "1", "status": "MALICIOUS"}]}}),
            _ => json!({"id": id.to_string(), "type": "HASH_PDQ", "indicator": "cd".repeat(32),
                        "last_updated": time, "should_delete": "perhaps"}),
        }
    }

    fn graph_error(status: u16, code: u32, message: &str) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"error": {"message": message, "type": "OAuthException", "code": code}})
                .to_string()
                .into_bytes(),
        }
    }

    fn answer(&mut self, req: Req) -> Reply {
        self.requests += 1;
        let route = req.route().to_owned();
        let Some(rest) = route.strip_prefix(VERSION) else {
            return Self::graph_error(400, 100, "Unknown path");
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (req.method.as_str(), parts.as_slice()) {
            ("GET", [group, "threat_updates"]) => {
                if req.query("access_token").as_deref() != Some(TOKEN) {
                    return Self::graph_error(400, 190, "Invalid OAuth access token.");
                }
                match GROUPS.iter().position(|g| g == group) {
                    Some(g) => self.threat_updates(&req, g),
                    None => Self::graph_error(400, 100, "Unsupported get request."),
                }
            }
            ("GET", [indicator, "descriptors"]) => {
                if req.query("access_token").as_deref() != Some(TOKEN) {
                    return Self::graph_error(400, 190, "Invalid OAuth access token.");
                }
                let known = indicator
                    .parse::<u64>()
                    .is_ok_and(|id| self.indicators.contains_key(&id));
                if !known {
                    return Self::graph_error(400, 100, "Unsupported get request.");
                }
                Reply::ok(
                    "application/json",
                    json!({"data": [
                        {"id": format!("{indicator}1"), "owner": {"id": APP_ID}},
                        {"id": format!("{indicator}2"), "owner": {"id": OTHER_APP}},
                    ]})
                    .to_string(),
                )
            }
            ("POST", [_descriptor]) => {
                let form = form(&req);
                if form.query("access_token").as_deref() != Some(TOKEN) {
                    return Self::graph_error(400, 190, "Invalid OAuth access token.");
                }
                self.posts.push(req);
                Reply::ok("application/json", r#"{"success":true}"#)
            }
            _ => Self::graph_error(400, 100, "Unsupported request."),
        }
    }

    fn threat_updates(&mut self, req: &Req, g: usize) -> Reply {
        let fields = req.query("fields").unwrap_or_default();
        for needed in [
            "id",
            "indicator",
            "type",
            "last_updated",
            "should_delete",
            "descriptors{",
        ] {
            if !fields.split(',').any(|f| f.starts_with(needed)) {
                return Self::graph_error(400, 100, "Missing fields");
            }
        }
        let limit: usize = req
            .query("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(25)
            .min(5000);
        self.limits.push(limit.to_string());
        let mut start: u64 = req
            .query("start_time")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut after = match req.query("after") {
            None => None,
            Some(a) => match decode_key(&a) {
                Some(key) => Some(key),
                None => return Self::graph_error(400, 100, "Invalid cursor"),
            },
        };
        let types: Option<Vec<String>> = req
            .query("types")
            .map(|t| t.split(',').map(str::to_owned).collect());
        if after.is_some() {
            self.with_after += 1;
            if let Some(fault) = self.fault {
                if self.left > 0 && self.with_after % self.every == 0 {
                    self.left -= 1;
                    self.injected.push(fault);
                    self.injected_at.push(std::time::Instant::now());
                    match fault {
                        Fault::Malformed => {
                            return Reply::ok("application/json", r#"{"data": [{"id": "1", "indic"#)
                        }
                        Fault::TooMany => return Reply::too_many(self.retry_after),
                        Fault::Server => {
                            return Self::graph_error(500, 2, "An unexpected error has occurred.")
                        }
                        Fault::Stall => return Reply::Stall,
                        Fault::Cut => return Reply::Cut,
                        Fault::Duplicate => {
                            let body = self.last_body[g].clone().unwrap_or_default();
                            return Reply::ok("application/json", body);
                        }
                        Fault::Reset => {
                            start = 0;
                            after = None;
                        }
                    }
                }
            }
        }
        let lower = match after {
            Some(key) => std::ops::Bound::Excluded(key),
            None => std::ops::Bound::Included((start, 0)),
        };
        let mut data = Vec::new();
        let mut last = None;
        let mut more = false;
        for (&(time, id), &entry) in self.feeds[g].range((lower, std::ops::Bound::Unbounded)) {
            if time < start {
                continue;
            }
            let record = match entry {
                Entry::Garbage(kind) => Self::garbage(id, time, kind),
                Entry::Indicator => {
                    let ind = &self.indicators[&id];
                    if let Some(types) = &types {
                        if !types.iter().any(|t| t == ind.api_type) {
                            continue;
                        }
                    }
                    self.record(id, ind)
                }
            };
            if data.len() == limit {
                more = true;
                break;
            }
            data.push(record);
            last = Some((time, id));
        }
        let mut answer = json!({"data": data});
        if let Some((time, id)) = last {
            let key = format!("{time}x{id}");
            answer["paging"] = json!({"cursors": {"before": "MAo=", "after": key}});
            if more {
                // As the Graph API does: the whole query again, token and all.
                answer["paging"]["next"] = json!(format!(
                    "https://127.0.0.1:{}{VERSION}/{}/threat_updates?access_token={}&fields={}&limit={limit}&after={key}",
                    self.port,
                    GROUPS[g],
                    TOKEN.replace('|', "%7C"),
                    fields
                ));
            }
        }
        let body = answer.to_string().into_bytes();
        self.last_body[g] = Some(body.clone());
        Reply::ok("application/json", body)
    }
}

fn decode_key(text: &str) -> Option<(u64, u64)> {
    let (t, id) = text.split_once('x')?;
    Some((t.parse().ok()?, id.parse().ok()?))
}

/// A POST's form body, read as a query.
fn form(req: &Req) -> Req {
    Req {
        method: req.method.clone(),
        path: format!("/?{}", String::from_utf8_lossy(&req.body)),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

type Model = HashMap<String, (String, String, Vec<String>)>;

pub(super) async fn start(graph: &Arc<Mutex<Graph>>, tmp: &tempfile::TempDir) -> StandIn {
    let shared = graph.clone();
    start_with(
        graph,
        tmp,
        handler(move |req| shared.lock().unwrap().answer(req)),
    )
    .await
}

/// The stand-in, taking `pace` for every answer: a service that is not
/// instant, so a fetch of many pages lasts long enough to be killed in
/// the middle.
pub(super) async fn start_paced(
    graph: &Arc<Mutex<Graph>>,
    tmp: &tempfile::TempDir,
    pace: Duration,
) -> StandIn {
    let shared = graph.clone();
    let paced: Handler = Arc::new(move |req| {
        let shared = shared.clone();
        Box::pin(async move {
            tokio::time::sleep(pace).await;
            shared.lock().unwrap().answer(req)
        })
    });
    start_with(graph, tmp, paced).await
}

async fn start_with(graph: &Arc<Mutex<Graph>>, tmp: &tempfile::TempDir, h: Handler) -> StandIn {
    let s = StandIn::start(tmp.path(), h).await;
    graph.lock().unwrap().port = s.addr.port();
    s
}

fn config(s: &StandIn, page_size: u32, signal_types: &[&str]) -> ExchangeConfig {
    ExchangeConfig {
        kind: ExchangeKind::Threatexchange,
        name: "gifct".into(),
        set: "node/gifct".into(),
        endpoint: s.endpoint(VERSION),
        credentials: "te.toml".into(),
        interval_secs: 300,
        ca_file: None,
        timeout_secs: 5,
        page_size,
        filters: ExchangeFilters {
            privacy_groups: GROUPS.iter().map(|g| g.to_string()).collect(),
            signal_types: signal_types.iter().map(|t| t.to_string()).collect(),
            ..ExchangeFilters::default()
        },
    }
}

fn client(s: &StandIn, config: &ExchangeConfig, token: &str, timeout: Duration) -> Client {
    let http = Http::new(&config.endpoint, Some(&s.ca_file), timeout, MAX_BODY).unwrap();
    let credentials = Credentials::from_fields([("token".to_owned(), token.to_owned())]);
    Client::new(config, credentials, http).unwrap()
}

fn apply(model: &mut Model, page: &Page) {
    for item in &page.items {
        match &item.op {
            ImportOp::Add {
                signal,
                labels,
                external_id,
            } => {
                let id = external_id.clone().expect("adds carry te: ids");
                assert!(id.starts_with("te:"), "{id}");
                model.insert(
                    id,
                    (
                        signal.type_name.clone(),
                        signal.value.clone(),
                        labels.clone(),
                    ),
                );
            }
            ImportOp::RetractExternal { external_id } => {
                model.remove(external_id);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn expected_error(fault: Fault, e: &ExchangeError) -> bool {
    match (fault, e) {
        (Fault::Malformed, ExchangeError::Malformed(_)) => true,
        (Fault::TooMany, ExchangeError::RateLimited { retry_after }) => {
            *retry_after == Some(Duration::from_secs(1))
        }
        (Fault::Server, ExchangeError::Server { status: 500 }) => true,
        (Fault::Stall, ExchangeError::Timeout(_)) => true,
        (Fault::Cut, ExchangeError::Transport(_)) => true,
        (Fault::Duplicate | Fault::Reset, ExchangeError::CursorBack(_)) => true,
        _ => false,
    }
}

/// How a drive went.
#[derive(Default)]
struct Drive {
    pages: usize,
    errors: usize,
    skipped: usize,
}

/// Fetches until caught up, from `cursor`: every error must be the one the
/// stand-in's fault means, and is retried with the same cursor; `hook`
/// runs once per page count, before its fetch, and may change the
/// stand-in, restart the client (`Some(new client)`) or drop the page as a
/// crash before storing it would (`true`).
async fn drive(
    graph: &Arc<Mutex<Graph>>,
    client: &mut Client,
    cursor: &mut String,
    model: &mut Model,
    mut hook: impl FnMut(usize, &mut Graph) -> (Option<Client>, bool),
) -> Drive {
    let mut run = Drive::default();
    let mut retries = 0;
    let mut hooked = None;
    loop {
        // Once per page count (not again for a retry or a refetch).
        let mut crash = false;
        if hooked != Some(run.pages) {
            hooked = Some(run.pages);
            let (restart, crashing) = hook(run.pages, &mut graph.lock().unwrap());
            if let Some(fresh) = restart {
                *client = fresh;
            }
            crash = crashing;
        }
        let before = graph.lock().unwrap().injected.len();
        let result = client.fetch(cursor).await;
        let injected = graph.lock().unwrap().injected[before..].to_vec();
        assert!(injected.len() <= 1, "{injected:?}");
        match (result, injected.first()) {
            (Ok(page), None) => {
                retries = 0;
                assert!(
                    !page.cursor.contains(SECRET_PART) && !page.cursor.contains("access_token"),
                    "a cursor must not carry the token: {}",
                    page.cursor
                );
                if crash {
                    // Killed before the page and its cursor were stored:
                    // the same cursor again.
                    continue;
                }
                run.pages += 1;
                run.skipped += page.skipped.len();
                for s in &page.skipped {
                    assert!(
                        !s.reason.contains("abab") && !s.reason.contains("cdcd"),
                        "{s:?}"
                    );
                }
                apply(model, &page);
                *cursor = page.cursor;
                if !page.more {
                    return run;
                }
            }
            (Ok(_), Some(fault)) => panic!("{fault:?} went unnoticed"),
            (Err(e), Some(&fault)) => {
                assert!(expected_error(fault, &e), "{fault:?} came back as {e:?}");
                assert!(e.retryable(), "{e}");
                assert!(!e.to_string().contains(SECRET_PART), "{e}");
                run.errors += 1;
                retries += 1;
                assert!(retries < 20, "no progress");
            }
            (Err(e), None) => panic!("an error without a fault: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_on_100k_updates_across_two_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(7)));
    graph.lock().unwrap().churn(100_000, 5_000, 1_000, 2_000);
    let s = start(&graph, &tmp).await;
    let cfg = config(&s, 1000, &[]);
    let mut c = client(&s, &cfg, TOKEN, Duration::from_secs(20));
    let mut cursor = String::new();
    let mut model = Model::new();

    let run = drive(&graph, &mut c, &mut cursor, &mut model, |pages, g| {
        // Changes while a pass is under way: they move to the end.
        if pages == 40 {
            g.churn(2_000, 1_000, 200, 500);
        }
        // A restart from the saved cursor, and crashes before storing.
        let restart = (pages == 60).then(|| client(&s, &cfg, TOKEN, Duration::from_secs(20)));
        (restart, pages == 20 || pages == 75)
    })
    .await;
    {
        let g = graph.lock().unwrap();
        let live = g.live(|_| true);
        assert!(live.len() > 90_000, "{}", live.len());
        assert_eq!(model.len(), live.len());
        assert!(
            model == live,
            "the client's entries differ from the live ones"
        );
        assert!(run.pages >= 100, "{}", run.pages);
        assert!(
            run.skipped >= g.garbage && g.garbage > 0,
            "{} {}",
            run.skipped,
            g.garbage
        );
        assert!(g.limits.iter().all(|l| l == "1000"));
    }

    // Updates and deletions since: only they (and the last second again)
    // are read.
    graph.lock().unwrap().churn(3_000, 2_000, 300, 700);
    let run = drive(&graph, &mut c, &mut cursor, &mut model, |_, _| {
        (None, false)
    })
    .await;
    assert!(run.pages <= 12, "{}", run.pages);
    let live = graph.lock().unwrap().live(|_| true);
    assert!(model == live, "incremental updates did not converge");

    // Nothing new: one page per group.
    let run = drive(&graph, &mut c, &mut cursor, &mut model, |_, _| {
        (None, false)
    })
    .await;
    assert_eq!(run.pages, 2);
    assert!(model == live);
}

async fn misbehaving(fault: Fault) {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(fault as u64 + 11)));
    {
        let mut g = graph.lock().unwrap();
        g.churn(10_000, 800, 200, 300);
        g.fault = Some(fault);
        g.every = 3;
        g.left = if fault == Fault::Stall { 2 } else { 3 };
    }
    let s = start(&graph, &tmp).await;
    let cfg = config(&s, 500, &[]);
    let timeout = if fault == Fault::Stall {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(20)
    };
    let mut c = client(&s, &cfg, TOKEN, timeout);
    let mut cursor = String::new();
    let mut model = Model::new();
    let run = drive(&graph, &mut c, &mut cursor, &mut model, |pages, g| {
        if pages == 9 {
            g.churn(500, 300, 50, 50);
        }
        let restart = (pages == 12).then(|| client(&s, &cfg, TOKEN, timeout));
        (restart, pages == 5)
    })
    .await;
    let g = graph.lock().unwrap();
    assert_eq!(g.left, 0, "{fault:?}: not every fault was met");
    assert_eq!(run.errors, g.injected.len());
    let live = g.live(|_| true);
    assert!(live.len() > 9_000);
    assert!(model == live, "{fault:?}: did not converge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_page_is_reported_and_retried() {
    misbehaving(Fault::Malformed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_say_when_to_come_back() {
    misbehaving(Fault::TooMany).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    misbehaving(Fault::Server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_answer_times_out() {
    misbehaving(Fault::Stall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_is_retried() {
    misbehaving(Fault::Cut).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_page_again_is_a_cursor_going_back() {
    misbehaving(Fault::Duplicate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_reset_to_the_start_is_a_cursor_going_back() {
    misbehaving(Fault::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_take_only_their_signal_types() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(3)));
    graph.lock().unwrap().churn(4_000, 300, 100, 200);
    let s = start(&graph, &tmp).await;
    let cfg = config(&s, 700, &["video_md5", "tmk"]);
    let mut c = client(&s, &cfg, TOKEN, Duration::from_secs(20));
    let (mut cursor, mut model) = (String::new(), Model::new());
    drive(&graph, &mut c, &mut cursor, &mut model, |_, _| {
        (None, false)
    })
    .await;
    let live = graph
        .lock()
        .unwrap()
        .live(|t| t == "video_md5" || t == "tmk");
    assert!(!live.is_empty());
    assert!(model == live);
    assert!(model
        .values()
        .all(|(t, _, _)| t == "video_md5" || t == "tmk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_reacts_on_other_apps_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(5)));
    let id = graph.lock().unwrap().add(0);
    let s = start(&graph, &tmp).await;
    let cfg = config(&s, 100, &[]);
    let mut c = client(&s, &cfg, TOKEN, Duration::from_secs(20));
    let signal = Signal::parse("pdq", &"0".repeat(64)).unwrap();
    for (verdict, add, remove) in [
        (
            Verdict::Confirmed,
            "HELPFUL,SAW_THIS_TOO",
            "DISAGREE_WITH_TAGS",
        ),
        (
            Verdict::FalsePositive,
            "DISAGREE_WITH_TAGS",
            "HELPFUL,SAW_THIS_TOO",
        ),
    ] {
        c.send_feedback(&OutgoingFeedback {
            external_id: format!("te:{id}"),
            signal: signal.clone(),
            verdict,
            reason: "benign_collision".into(),
        })
        .await
        .unwrap();
        let mut g = graph.lock().unwrap();
        // Only the other app's descriptor: an app cannot react to its own.
        assert_eq!(g.posts.len(), 1, "{verdict}");
        let post = g.posts.remove(0);
        assert_eq!(
            post.path,
            format!("{VERSION}/{id}2"),
            "no token in the path"
        );
        assert_eq!(
            post.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form = form(&post);
        assert_eq!(form.query("access_token").as_deref(), Some(TOKEN));
        assert_eq!(form.query("reactions").as_deref(), Some(add));
        assert_eq!(form.query("reactions_to_remove").as_deref(), Some(remove));
    }
    // Entries from elsewhere have nothing to react to.
    let before = graph.lock().unwrap().requests;
    let other = c
        .send_feedback(&OutgoingFeedback {
            external_id: "ncmec:1:2".into(),
            signal,
            verdict: Verdict::Confirmed,
            reason: String::new(),
        })
        .await;
    assert!(
        matches!(other, Err(ExchangeError::Unsupported(_))),
        "{other:?}"
    );
    assert_eq!(graph.lock().unwrap().requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_is_refused_and_never_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(9)));
    graph.lock().unwrap().churn(10, 0, 0, 0);
    let s = start(&graph, &tmp).await;
    let cfg = config(&s, 100, &[]);
    let wrong = "1234567890|notTheRightSecretAtAll";
    let mut c = client(&s, &cfg, wrong, Duration::from_secs(20));
    let e = c.fetch("").await.unwrap_err();
    assert!(
        matches!(e, ExchangeError::Refused { status: 400, .. }),
        "{e:?}"
    );
    assert!(!e.retryable());
    let shown = format!("{e} {e:?} {c:?}");
    assert!(!shown.contains("notTheRightSecret"), "{shown}");
    assert!(shown.contains("Invalid OAuth access token"), "{shown}");

    // Configuration the client cannot work with.
    let http = || Http::new(&cfg.endpoint, Some(&s.ca_file), Duration::from_secs(1), 1).unwrap();
    let token = || Credentials::from_fields([("token".to_owned(), TOKEN.to_owned())]);
    let mut no_groups = cfg.clone();
    no_groups.filters.privacy_groups.clear();
    assert!(matches!(
        Client::new(&no_groups, token(), http()),
        Err(ExchangeError::Config(_))
    ));
    let mut bad_group = cfg.clone();
    bad_group.filters.privacy_groups = vec!["gifct".into()];
    assert!(matches!(
        Client::new(&bad_group, token(), http()),
        Err(ExchangeError::Config(_))
    ));
    assert!(matches!(
        Client::new(&cfg, Credentials::from_fields(Vec::new()), http()),
        Err(ExchangeError::Credentials { .. })
    ));
    let mut c = Client::new(&cfg, token(), http()).unwrap();
    assert!(matches!(
        c.fetch("ncmec;whatever").await,
        Err(ExchangeError::Config(_))
    ));
}

/// The node's view of its exchange's set: external id → (type, hex value)
/// of the matchable entries.
pub(super) fn node_model(db: &hashfed::database::Database) -> HashMap<String, (String, String)> {
    node_entries(db.store()).into_iter().collect()
}

/// The matchable entries of the exchange's set in `store`, each as
/// (external id, (type, hex value)), all of them: an id twice is an
/// entry the node holds twice.
pub(super) fn node_entries(store: &hashfed::store::Store) -> Vec<(String, (String, String))> {
    let set: hashfed::model::SetId = "node/gifct".parse().unwrap();
    let Ok(entries) = store.entries(Some(&set)) else {
        return Vec::new();
    };
    entries
        .map(Result::unwrap)
        .filter(|e| !e.retracted)
        .map(|e| {
            (
                e.data.external_id.clone().unwrap(),
                (
                    e.data.signal.kind().name().to_owned(),
                    e.data.signal.value_hex(),
                ),
            )
        })
        .collect()
}

/// The exchange `gifct` as a node runs it against the stand-in `s`: the
/// stand-in's CA trusted, fetched again every second once caught up.
pub(super) fn node_exchange(s: &StandIn, page_size: u32) -> ExchangeConfig {
    let mut exchange = config(s, page_size, &[]);
    exchange.ca_file = Some(s.ca_file.to_str().unwrap().to_owned());
    exchange.interval_secs = 1;
    exchange
}

/// A node directory (`node`, in a fresh temp dir) with `exchange` in its
/// `hashfed.toml` and the stand-in's token in its credentials file (mode
/// 0600, as the node requires).
pub(super) fn node_dir_with(exchange: ExchangeConfig) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (node_tmp, dir) = crate::nodes::node_dir("node");
    let creds = dir.join(&exchange.credentials);
    std::fs::write(&creds, format!("token = \"{TOKEN}\"\n")).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut node_config = hashfed::identity::load_config(&dir).unwrap();
    node_config.exchanges.push(exchange);
    std::fs::write(
        dir.join("hashfed.toml"),
        toml::to_string(&node_config).unwrap(),
    )
    .unwrap();
    (node_tmp, dir)
}

/// The stand-in's live entries as the node should hold them: the values
/// of the hex types as the node prints them, the opaque type's (TMK)
/// value not compared (its text is read as base64).
pub(super) fn live_model(graph: &Graph) -> HashMap<String, (String, String)> {
    graph
        .live(|_| true)
        .into_iter()
        .map(|(id, (t, v, _))| (id, (t, v.to_ascii_lowercase())))
        .collect()
}

/// `model` with the opaque types' values blanked, for comparing.
pub(super) fn comparable(
    mut model: HashMap<String, (String, String)>,
) -> HashMap<String, (String, String)> {
    for (t, v) in model.values_mut() {
        // A video's MD5 is an MD5 (hashfed's signal types alias it).
        if t == "video_md5" {
            *t = "md5".into();
        }
        if !matches!(t.as_str(), "pdq" | "md5") {
            v.clear();
        }
    }
    model
}

impl super::node::Service for Mutex<Graph> {
    fn live(&self) -> super::node::Model {
        self.lock()
            .unwrap()
            .live(|_| true)
            .into_iter()
            .map(|(id, (t, v, _))| (id, [super::node::normal(&t, &v)].into()))
            .collect()
    }

    /// New indicators, withdrawals, flips and new tags.
    fn churn(&self) {
        self.lock().unwrap().churn(1_000, 300, 100, 100);
    }

    fn feedback_received(&self) -> usize {
        self.lock().unwrap().posts.len()
    }

    /// One reaction on the descriptor: "disagree with the tags".
    fn check_feedback(&self, _external_id: &str, _pdq: &str) {
        let g = self.lock().unwrap();
        assert_eq!(
            form(&g.posts[0]).query("reactions").as_deref(),
            Some("DISAGREE_WITH_TAGS")
        );
    }
}

/// A real node with a ThreatExchange exchange in its `hashfed.toml`:
/// 100k updates across two groups at start, then adds, withdrawals and
/// retags; a provider's false positive reaches the service as one
/// reaction, once, across a restart (`node::keeps_current`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_keeps_100k_updates_current_and_reacts_once() {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(11)));
    graph.lock().unwrap().churn(100_000, 0, 0, 0);
    let s = start(&graph, &tmp).await;
    let setup = super::node::Setup {
        config: config(&s, 1000, &[]),
        ca_file: &s.ca_file,
        credentials: format!("token = \"{TOKEN}\"\n"),
        secrets: &[SECRET_PART],
    };
    super::node::keeps_current(&*graph, setup).await;
}
