//! A node's exchange fetcher under crashes and a misbehaving service
//! (issue 17: "the fetch completes or reports a clear error in `exchange
//! status`, never stalls, never loses or duplicates an entry"), against
//! the ThreatExchange stand-in of `threatexchange.rs` (its many updates
//! per second, churn and faults):
//!
//! - a real `hashfed serve` SIGKILLed at random moments while it writes
//!   the pages of a 50k-entry service, restarted each time while the
//!   service changes: after every kill the store verifies and the
//!   exchange's state (cursor and counts) agrees with the records it
//!   covers; in the end the set is the service's live entries, each once;
//! - a running node whose service rate-limits, fails, stalls, answers
//!   garbage, cuts connections, hands back the previous page or starts
//!   its paging over, for a while: `hashfed exchange status` says so in words
//!   (never the token), the node serves on, and once the service recovers
//!   the schedule's next try completes, the error clears and the set
//!   converges.
//!
//! `HASHFED_EXCHANGE_KILLS` kills (default 6); the service's entries and
//! changes and the kill points come from `HASHFED_EXCHANGE_SEED` (random
//! if unset, printed either way so a run can be repeated).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashfed::model::exchange::ExchangeState;
use hashfed::store::{Store, StoreOptions};

use super::threatexchange::{
    comparable, live_model, node_dir_with, node_entries, node_exchange, node_model, start,
    start_paced, Fault, Graph, SECRET_PART,
};
use crate::nodes::process::{hashfed, kill, serve};
use crate::nodes::{self, eventually, TestNode};

/// Updates the service holds at the start.
const ENTRIES: usize = 50_000;
/// Entries the service adds at every second restart (with withdrawals
/// and changes).
const CHURN_ADDS: usize = 2_000;
/// Updates per page.
const PAGE: u32 = 500;
/// How long the stand-in takes for each answer: the whole fetch then
/// lasts a few seconds, so the kills land in the middle of it.
const PACE: Duration = Duration::from_millis(25);

fn kills() -> u32 {
    std::env::var("HASHFED_EXCHANGE_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6)
}

fn seed() -> u64 {
    std::env::var("HASHFED_EXCHANGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            now.unwrap().as_nanos() as u64
        })
}

/// Every external id of `entries` once (else the node holds an entry
/// twice), as a model to compare with the service's.
fn once(entries: Vec<(String, (String, String))>) -> HashMap<String, (String, String)> {
    let n = entries.len();
    let model: HashMap<_, _> = entries.into_iter().collect();
    assert_eq!(model.len(), n, "an external id is held more than once");
    model
}

/// What the stopped node in `dir` holds, after its store verifies
/// offline: the exchange's state, the set's head, its entries (each
/// once).
fn stopped(dir: &Path) -> (ExchangeState, u64, HashMap<String, (String, String)>) {
    let store = Store::open(&dir.join("store"), &StoreOptions::default()).unwrap();
    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let state = store
        .exchange_state("gifct")
        .unwrap()
        .map(|b| ExchangeState::from_bytes(&b).expect("the stored state reads back"))
        .unwrap_or_default();
    let head = store
        .set(&"node/gifct".parse().unwrap())
        .map_or(0, |s| s.head_seq);
    (state, head, once(node_entries(&store)))
}

/// `hashfed exchange status` of the node in `dir` (through it if it
/// runs): exit code and text.
fn status(dir: &Path) -> (Option<i32>, String) {
    let out = hashfed(&["exchange", "status", "--dir", dir.to_str().unwrap()]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// `hashfed verify` of the stopped node in `dir` passes.
fn verifies(dir: &Path) {
    let out = hashfed(&["verify", "--dir", dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A real node SIGKILLed at random moments of its schedule's fetch (the
/// stand-in in this process, the node a `hashfed serve` process),
/// restarted each time, the service changing between some restarts.
/// After every kill: the store verifies offline, the exchange's counts
/// account for exactly the set's log (they are written in the records'
/// batch, so a kill cannot separate them), the state never goes back, no
/// entry is held twice. In the end: the last run resumes from the stored
/// cursor, the set is the service's live entries, `hashfed verify` is
/// clean and `hashfed exchange status` shows no error.
///
/// A plain test with a runtime of its own for the stand-in, so the test
/// thread can block on the processes it runs.
#[test]
fn a_node_killed_while_it_fetches_loses_and_duplicates_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seed = seed();
    eprintln!("seed {seed} (HASHFED_EXCHANGE_SEED={seed} repeats this run)");
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(seed)));
    graph.lock().unwrap().churn(ENTRIES, 1_000, 300, 300);
    let s = rt.block_on(start_paced(&graph, &tmp, PACE));
    let (_node_tmp, dir) = node_dir_with(node_exchange(&s, PAGE));

    let started = Instant::now();
    let (kills, mut mid_fetch) = (kills(), 0);
    let mut before = ExchangeState::default();
    for round in 0..kills {
        let mut node = serve(&dir);
        let wait = 200 + graph.lock().unwrap().rand() % 1_000;
        std::thread::sleep(Duration::from_millis(wait));
        kill(&mut node.child, "-KILL");

        let (state, head, held) = stopped(&dir);
        assert_eq!(
            head,
            state.added + state.updated + state.retracted,
            "kill {round}: the exchange's counts and the set's log disagree: {state:?}"
        );
        assert!(
            state.pages >= before.pages && state.added >= before.added,
            "kill {round}: the state went back: {before:?} then {state:?}"
        );
        assert!(state.last_error.is_empty(), "{}", state.last_error);
        let live = live_model(&graph.lock().unwrap());
        if comparable(held.clone()) != comparable(live.clone()) {
            mid_fetch += 1;
        }
        eprintln!(
            "kill {round} after {wait} ms: {} pages, {} entries of {} live, log at {head}",
            state.pages,
            held.len(),
            live.len()
        );
        // The service changes under the fetch: new entries, withdrawals,
        // some back again (they move to the end of its lists).
        if round % 2 == 1 {
            graph.lock().unwrap().churn(CHURN_ADDS, 500, 100, 100);
        }
        before = state;
    }
    // The first 50k take several rounds of kills to fetch (later kills
    // may find the node caught up, waiting for its next pass: a moment to
    // die in too).
    assert!(
        mid_fetch >= kills.min(3),
        "only {mid_fetch} of {kills} kills landed before the fetch was done"
    );

    // The last run: it goes on from the stored cursor and catches up. Its
    // first pass ends the round the cursor was in (groups the round is
    // done with wait for the next), so the second pass, a whole round
    // begun after the last change, is the one that must leave the set
    // equal to the service's.
    let mut node = serve(&dir);
    let restarted = Instant::now();
    let from = node.log.lock().unwrap().len();
    let passes = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("exchange fetched"))
            .count()
    };
    while passes(&node.log.lock().unwrap()[from..]) < 2 {
        assert!(
            restarted.elapsed() < Duration::from_secs(120),
            "the fetch never completed after the last restart"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let caught_up = restarted.elapsed();
    kill(&mut node.child, "-TERM");

    let (state, head, held) = stopped(&dir);
    let live = live_model(&graph.lock().unwrap());
    assert!(live.len() > ENTRIES * 9 / 10, "{}", live.len());
    assert_eq!(held.len(), live.len());
    assert!(
        comparable(held) == comparable(live),
        "the node's set is not the service's live entries"
    );
    assert_eq!(head, state.added + state.updated + state.retracted);
    // Resumed, not started over: the last run read fewer pages than a
    // fetch from the start would.
    let indicators = ENTRIES + (kills as usize / 2) * CHURN_ADDS;
    let from_start = (indicators / PAGE as usize) as u64;
    assert!(
        state.pages - before.pages < from_start,
        "the last run read {} pages",
        state.pages - before.pages
    );
    verifies(&dir);
    let (code, text) = status(&dir);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("last error    none"), "{text}");
    assert!(!text.contains(SECRET_PART), "{text}");
    eprintln!(
        "{kills} kills ({mid_fetch} mid-fetch), {} pages in all, {} in the last run; \
         caught up {caught_up:?} after the last restart, {:?} in all",
        state.pages,
        state.pages - before.pages,
        started.elapsed()
    );
    drop(s);
}

/// The failures count `hashfed exchange status` shows ("… (3 failures in
/// a row)"), 0 if none.
fn failures(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_suffix(" failures in a row)"))
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Polls `hashfed exchange status` of the running node in `dir` until
/// `done` holds of its exit code and text (or 60 s pass: then fails).
async fn await_status(dir: &Path, done: impl Fn(Option<i32>, &str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let d = dir.to_owned();
        let (code, text) = tokio::task::spawn_blocking(move || status(&d))
            .await
            .unwrap();
        if done(code, &text) {
            return text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "status never changed as expected: {code:?} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running node (in-process) whose service (seeded with `seed`)
/// misbehaves for a while, each of `faults` in turn, with changes waiting
/// to be fetched. Each time the schedule meets the fault again and again
/// (waiting at least what a `Retry-After` says), `hashfed exchange status`
/// through the node shows the error in words (its fault's `words`) and
/// exits 1, the token nowhere, and the node's match listener still
/// answers; when the service recovers, the schedule's next try completes,
/// the error clears and the set converges, each entry once.
async fn misbehaves_then_recovers(seed: u64, faults: &[(Fault, &str)]) {
    let tmp = tempfile::tempdir().unwrap();
    let graph = Arc::new(Mutex::new(Graph::new(seed)));
    graph.lock().unwrap().churn(5_000, 200, 50, 50);
    // Longer than the first backoff can be (1 s, jittered up to 1.5 s),
    // so honouring it shows.
    graph.lock().unwrap().retry_after = 2;
    let s = start(&graph, &tmp).await;
    let mut exchange = node_exchange(&s, PAGE);
    exchange.timeout_secs = 1;
    let (node_tmp, dir) = node_dir_with(exchange);
    let node = TestNode::start_in(node_tmp, dir.clone()).await;
    let converged =
        || comparable(node_model(&node.db)) == comparable(live_model(&graph.lock().unwrap()));
    eventually(Duration::from_secs(60), converged)
        .await
        .expect("the first fetch never completed");
    let local = node.issue(hashfed::identity::roles::ClientRole::Local);

    for &(fault, words) in faults {
        let started = Instant::now();
        let met = {
            let mut g = graph.lock().unwrap();
            // More than a page per group waits: the pages past the first
            // (those with an `after` token) misbehave, every time.
            g.churn(1_500, 300, 50, 50);
            g.fault = Some(fault);
            g.every = 1;
            g.left = usize::MAX;
            g.injected.len()
        };
        let text = await_status(&dir, |code, text| code == Some(1) && failures(text) >= 2).await;
        let line = text
            .lines()
            .find(|l| l.contains("last error"))
            .unwrap()
            .to_owned();
        assert!(line.contains(words), "{fault:?}: {line}");
        assert!(
            !text.contains(SECRET_PART) && !text.contains("access_token"),
            "{text}"
        );
        assert_eq!(
            nodes::handshake_outcome(&node.dir, node.node().addresses().match_, Some(&local)).await,
            "OK",
            "the node stopped serving while its exchange failed"
        );
        if fault == Fault::TooMany {
            let g = graph.lock().unwrap();
            let at = &g.injected_at[met..];
            for pair in at.windows(2) {
                let gap = pair[1] - pair[0];
                assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
            }
        }

        graph.lock().unwrap().fault = None;
        await_status(&dir, |code, text| {
            code == Some(0) && text.contains("last error    none")
        })
        .await;
        eventually(Duration::from_secs(60), converged)
            .await
            .unwrap_or_else(|| panic!("{fault:?}: never converged after the service recovered"));
        eprintln!(
            "{fault:?}: {line}; recovered {:?} after it began",
            started.elapsed()
        );
    }
    once(node_entries(node.db.store()));
    let (_node_tmp, dir) = node.close().await;
    tokio::task::spawn_blocking(move || verifies(&dir))
        .await
        .unwrap();
}

/// 429 with `Retry-After`, 500, an answer that never comes (past the
/// exchange's one-second timeout), a page that does not parse.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_that_limits_fails_stalls_or_garbles_shows_in_status_until_it_recovers() {
    misbehaves_then_recovers(
        29,
        &[
            (Fault::TooMany, "rate limited (retry after 2s)"),
            (Fault::Server, "the service failed (HTTP 500)"),
            (Fault::Stall, "no answer within 1s"),
            (Fault::Malformed, "malformed answer: "),
        ],
    )
    .await;
}

/// A connection cut without an answer, the previous page again, paging
/// back at the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_that_cuts_or_goes_back_shows_in_status_until_it_recovers() {
    let back = "the service's cursor went back";
    misbehaves_then_recovers(
        31,
        &[
            (Fault::Cut, "HTTP with 127.0.0.1"),
            (Fault::Duplicate, back),
            (Fault::Reset, back),
        ],
    )
    .await;
}
