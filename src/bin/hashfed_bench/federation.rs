//! `hashfed-bench federation`: two real nodes federating over loopback.
//!
//! Node `a` (the origin) and node `b` each get an `init`ed directory, a
//! real sled store and every listener on 127.0.0.1 port 0, and are served
//! in this process (as `tests/it/federation.rs` does), talking to each other
//! over mutual TLS. What it measures, against the targets of the issue:
//!
//! - `origin load`: `--n` random PDQ entries (seeded, labels `["A1"]`)
//!   written into `a/list` with `Database::apply` in batches of
//!   `LOAD_CHUNK`, as an import would. Not part of the sync figure.
//! - `initial sync`: `b` peers with `a` and pulls the whole set. Timed from
//!   `add_peer` on `b` until `b`'s head equals `a`'s (seq and digest);
//!   entries per second against the target of 100,000/s (10 million in
//!   under two minutes). Also: how long until the first records landed, the
//!   rate per tenth of the set (whether it slows as the store grows), and
//!   resident memory after (both nodes share this process, so `b`'s share
//!   is the growth since just before `b` opened its store).
//! - `publish`: with both in sync and `b` subscribed, `PUBLISHES` single
//!   entries published on `a` one at a time (one `apply` with one
//!   `Change::Add` each); per entry the time from the start of the `apply`
//!   on `a` until `b`'s database matches it (`match_exact`, checked at once
//!   and after every change `b`'s database announces). Target: p99 ≤ 200 ms.
//! - `retract`: the same entries retracted one at a time
//!   (`Change::RetractValue`), until `b` no longer matches them.
//! - `replay` (where the sync's time goes): `a`'s log and checkpoints read
//!   straight from its store, the checkpoint signatures verified, and the
//!   records applied with `Database::apply_remote` to a third, node-less
//!   database, each step timed: the store-bound floor of a sync, with no
//!   network, TLS or protobuf in it.
//!
//! `--only PREFIX` skips `publish`/`retract` or `replay` when neither name
//! starts with it (the sync always runs: the others need it). Node
//! directories go under `--dir` (default a temp dir), and are removed at
//! the end unless `--keep`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hashfed::database::Database;
use hashfed::model::signed::{verify_checkpoint, Checkpoint};
use hashfed::model::{EntryData, SetId, SetInfo, Signal};
use hashfed::peers::PeerCard;
use hashfed::server::Node;
use hashfed::signal::pdq::PdqHash;
use hashfed::store::{Change, StoreOptions};
use serde_json::json;

use crate::{Args, Rng};

/// Entries per `Database::apply` when loading the origin.
const LOAD_CHUNK: usize = 10_000;
/// Entries published (then retracted) one at a time.
const PUBLISHES: usize = 1_000;
/// Initial sync target of the issue: entries per second.
const SYNC_TARGET_PER_S: f64 = 100_000.0;
/// Publish/retract → matchable target of the issue: p99, milliseconds.
const LATENCY_TARGET_P99_MS: f64 = 200.0;
/// Longest wait for one published entry to (stop to) match on `b`.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Re-check on `b` at least this often even without a change notice.
const BACKSTOP_POLL: Duration = Duration::from_millis(20);

const SET: &str = "a/list";

/// Runs the mode; see the module documentation.
pub fn run(args: &Args, codes: &[[u64; 4]]) -> anyhow::Result<()> {
    log_warnings();
    let (base, created_base) = match &args.dir {
        Some(d) => (PathBuf::from(d), false),
        None => (
            std::env::temp_dir().join(format!("hashfed-bench-federation-{}", std::process::id())),
            true,
        ),
    };
    let cleanup = Cleanup {
        paths: if created_base {
            vec![base.clone()]
        } else {
            ["a", "b", "replay"].iter().map(|n| base.join(n)).collect()
        },
        keep: args.keep,
    };
    for n in ["a", "b", "replay"] {
        if base.join(n).exists() {
            bail!(
                "{} exists: use another --dir (this mode starts from empty nodes)",
                base.join(n).display()
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let want = |phase: &str| {
        args.only
            .as_ref()
            .is_none_or(|p| phase.starts_with(p.as_str()))
    };
    let result = bench(
        args,
        codes,
        &base,
        &runtime,
        want("publish") || want("retract"),
        want("replay"),
    );
    drop(runtime);
    if args.keep {
        eprintln!("hashfed-bench: node directories kept in {}", base.display());
    }
    drop(cleanup);
    result
}

/// Logs warnings and errors to stderr (`RUST_LOG` overrides).
pub(crate) fn log_warnings() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Removes what the run created, unless `--keep`.
pub(crate) struct Cleanup {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) keep: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.keep {
            for p in &self.paths {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
}

/// One node served in this process.
pub(crate) struct Running {
    dir: PathBuf,
    pub(crate) db: Arc<Database>,
    node: Option<Node>,
}

impl Running {
    pub(crate) async fn start(dir: &Path, name: &str) -> anyhow::Result<Running> {
        Self::start_with(dir, name, |_| Ok(())).await
    }

    /// As [`Running::start`], with `edit` applied to the node's
    /// configuration first.
    pub(crate) async fn start_with(
        dir: &Path,
        name: &str,
        edit: impl FnOnce(&mut hashfed::config::Config) -> anyhow::Result<()>,
    ) -> anyhow::Result<Running> {
        hashfed::identity::init(dir, name).with_context(|| format!("init {}", dir.display()))?;
        // Every listener on an ephemeral loopback port.
        let path = dir.join("hashfed.toml");
        let mut text = std::fs::read_to_string(&path)?;
        for port in ["7701", "7702", "7703", "7709"] {
            text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
        }
        std::fs::write(&path, text)?;
        let mut config = hashfed::identity::load_config(dir)?;
        edit(&mut config)?;
        let db = Arc::new(Database::open(
            &dir.join("store"),
            &StoreOptions::default(),
        )?);
        let node = Node::start(dir, &config, db.clone())
            .await
            .with_context(|| format!("starting node {name}"))?;
        Ok(Running {
            dir: dir.to_owned(),
            db,
            node: Some(node),
        })
    }

    pub(crate) fn node(&self) -> &Node {
        self.node.as_ref().expect("node running")
    }

    fn card(&self) -> anyhow::Result<String> {
        let endpoint = self.node().addresses().federation.to_string();
        Ok(PeerCard::of_node(&self.dir, &endpoint)?.to_toml()?)
    }

    fn add_peer(&self, card: String, send: &[&str], accept: &[&str]) -> anyhow::Result<()> {
        self.node()
            .ops()
            .add_peer(
                &hashfed::ops::Actor::new("local-socket"),
                &card,
                send.iter().map(|s| s.to_string()).collect(),
                accept.iter().map(|s| s.to_string()).collect(),
            )
            .context("add_peer")?;
        Ok(())
    }

    pub(crate) async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(node) = self.node.take() {
            node.stop(Duration::from_secs(2)).await?;
        }
        Ok(())
    }

    /// Closes the database once the node's tasks have let go of it.
    pub(crate) fn close(self, name: &str) -> anyhow::Result<()> {
        let mut db = self.db;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Arc::try_unwrap(db) {
                Ok(d) => {
                    let t = Instant::now();
                    d.close()?;
                    eprintln!(
                        "hashfed-bench: {name}: database closed in {:.1} s",
                        t.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Err(shared) if Instant::now() < deadline => {
                    db = shared;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => {
                    eprintln!("hashfed-bench: {name}: database still shared after the node stopped; not closed");
                    return Ok(());
                }
            }
        }
    }
}

fn head(db: &Database, set: &SetId) -> (u64, String) {
    db.store()
        .set(set)
        .map_or((0, String::new()), |s| (s.head_seq, s.head_digest))
}

fn add(code: [u64; 4]) -> Change {
    Change::Add(EntryData {
        signal: pdq(code),
        labels: vec!["A1".into()],
        external_id: None,
        vetting: vec![],
    })
}

fn pdq(code: [u64; 4]) -> Signal {
    Signal::pdq(PdqHash::from_words(code))
}

fn matches(db: &Database, signal: &Signal) -> anyhow::Result<bool> {
    Ok(!db.match_exact(signal)?.is_empty())
}

/// (VmRSS, VmHWM) of this process in bytes.
pub(crate) fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// SplitMix64, to seed the publish codes away from the load's sequence.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bench(
    args: &Args,
    codes: &[[u64; 4]],
    base: &Path,
    rt: &tokio::runtime::Runtime,
    propagation: bool,
    replay: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
    let set: SetId = SET.parse()?;
    let n = codes.len();

    // The origin, loaded while nobody peers with it.
    let mut a = rt.block_on(Running::start(&base.join("a"), "a"))?;
    a.db.create_set(SetInfo::new(set.clone()), hashfed::model::audit::unaudited)?;
    let started = Instant::now();
    let mut next_report = n / 10;
    for (i, chunk) in codes.chunks(LOAD_CHUNK).enumerate() {
        let changes: Vec<Change> = chunk.iter().map(|c| add(*c)).collect();
        a.db.apply(&set, &changes, hashfed::model::audit::unaudited)?;
        let done = (i * LOAD_CHUNK + chunk.len()).min(n);
        if done >= next_report && next_report > 0 {
            eprintln!(
                "hashfed-bench: origin load: {done} entries in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            next_report += n / 10;
        }
    }
    let load_s = started.elapsed().as_secs_f64();
    let (a_head, a_digest) = head(&a.db, &set);
    if a_head != n as u64 {
        bail!("a/list has head {a_head} after loading {n} entries");
    }
    eprintln!(
        "hashfed-bench: origin load: {n} entries in {load_s:.1} s ({:.0}/s)",
        n as f64 / load_s
    );

    // The subscriber, started empty; the peering on `b` starts the clock.
    let (rss_before_b, _) = rss();
    let b = rt.block_on(Running::start(&base.join("b"), "b"))?;
    a.add_peer(b.card()?, &["a/*"], &[])?;
    let a_card = a.card()?;
    eprintln!(
        "hashfed-bench: initial sync of {n} entries (pid {})",
        std::process::id()
    );
    let sync = rt.block_on(initial_sync(&b, &set, a_card, a_head, &a_digest))?;
    let sync_s = sync.secs;
    let sync_rate = n as f64 / sync_s;
    let (rss_after, hwm_after) = rss();
    let b_pdq = b.db.indexes().pdq.len();
    let b_index_bytes = b.db.indexes().pdq.memory_bytes();
    if b_pdq != n {
        bail!("b's PDQ index holds {b_pdq} entries after the sync, not {n}");
    }
    eprintln!("hashfed-bench: initial sync: {n} entries in {sync_s:.1} s ({sync_rate:.0}/s)");

    let (publish, retract) = if propagation {
        let mut rng = Rng(splitmix64(args.seed ^ 0x6665_6465_7261_7465) | 1);
        let fresh: Vec<[u64; 4]> = (0..PUBLISHES).map(|_| rng.code()).collect();
        eprintln!("hashfed-bench: publishing {PUBLISHES} entries one at a time");
        let publish = rt.block_on(propagate(&a, &b, &set, &fresh, Op::Publish))?;
        eprintln!("hashfed-bench: retracting them one at a time");
        let retract = rt.block_on(propagate(&a, &b, &set, &fresh, Op::Retract))?;
        (Some(publish), Some(retract))
    } else {
        (None, None)
    };
    let (rss_end, hwm_end) = rss();
    let b_disk = b.db.store().stats()?.disk_bytes;
    let a_disk = a.db.store().stats()?.disk_bytes;

    let mut b = b;
    rt.block_on(async {
        b.stop().await?;
        a.stop().await
    })?;

    let replayed = if replay {
        eprintln!("hashfed-bench: replay: reading a's log and applying it to a node-less database");
        Some(replay_log(&a, &base.join("replay"), &set)?)
    } else {
        None
    };
    b.close("b")?;
    a.close("a")?;

    // Report.
    let target_ratio = sync_rate / SYNC_TARGET_PER_S;
    println!();
    println!(
        "federation over loopback mTLS, {n} PDQ entries, 2 in-process nodes, {} cores",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    println!(
        "{:<22} {:>10} {:>12} notes",
        "phase", "seconds", "entries/s"
    );
    println!(
        "{:<22} {load_s:>10.2} {:>12.0} batches of {LOAD_CHUNK}, Database::apply on a",
        "origin load",
        n as f64 / load_s
    );
    println!(
        "{:<22} {sync_s:>10.2} {sync_rate:>12.0} target {SYNC_TARGET_PER_S:.0}/s: ratio {target_ratio:.2}; first records after {:.3} s",
        "initial sync", sync.first_s
    );
    for (i, (secs, rate)) in sync.tenths.iter().enumerate() {
        println!(
            "{:<22} {secs:>10.2} {rate:>12.0}",
            format!("  sync {:>3}-{:>3}%", i * 10, (i + 1) * 10)
        );
    }
    if let Some(r) = &replayed {
        println!(
            "{:<22} {:>10.2} {:>12.0} {} records, {} checkpoints",
            "  replay: read log",
            r.read_s,
            r.records as f64 / r.read_s,
            r.records,
            r.checkpoints
        );
        println!(
            "{:<22} {:>10.2} {:>12.0}",
            "  replay: verify sigs",
            r.verify_s,
            r.records as f64 / r.verify_s.max(1e-9)
        );
        println!(
            "{:<22} {:>10.2} {:>12.0} Database::apply_remote, no network",
            "  replay: apply",
            r.apply_s,
            r.records as f64 / r.apply_s
        );
    }
    println!(
        "memory: VmRSS {:.1} MiB with a loaded, before b; {:.1} MiB after sync (b's share, growth since before b opened: {:.1} MiB = {:.0} B/entry; b's PDQ index {:.1} MiB), VmHWM {:.1} MiB; at end VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        mib(rss_before_b),
        mib(rss_after),
        mib(rss_after.saturating_sub(rss_before_b)),
        rss_after.saturating_sub(rss_before_b) as f64 / n.max(1) as f64,
        mib(b_index_bytes as u64),
        mib(hwm_after),
        mib(rss_end),
        mib(hwm_end),
    );
    println!("disk: a {:.1} MiB, b {:.1} MiB", mib(a_disk), mib(b_disk));
    if let (Some(p), Some(r)) = (&publish, &retract) {
        println!(
            "{:<10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
            "to b", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "mean ms", "a apply p50"
        );
        for (name, l) in [("publish", p), ("retract", r)] {
            println!(
                "{name:<10} {:>6} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} ms   target p99 <= {LATENCY_TARGET_P99_MS:.0} ms: {}",
                l.count,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                l.mean,
                l.apply_p50,
                if l.p99 <= LATENCY_TARGET_P99_MS { "met" } else { "NOT met" },
            );
        }
    }
    let lat = |l: &Option<Latencies>| {
        l.as_ref().map(|l| {
            json!({
                "count": l.count,
                "p50_ms": round3(l.p50),
                "p95_ms": round3(l.p95),
                "p99_ms": round3(l.p99),
                "max_ms": round3(l.max),
                "mean_ms": round3(l.mean),
                "origin_apply_p50_ms": round3(l.apply_p50),
                "target_p99_ms": LATENCY_TARGET_P99_MS,
            })
        })
    };
    println!(
        "{}",
        json!({
            "impl": "hashfed",
            "what": "federation",
            "n": n,
            "seed": args.seed,
            "cores": std::thread::available_parallelism().map_or(0, |c| c.get()),
            "origin_load_s": round3(load_s),
            "origin_load_entries_per_s": (n as f64 / load_s).round(),
            "sync_s": round3(sync_s),
            "sync_entries_per_s": sync_rate.round(),
            "sync_target_entries_per_s": SYNC_TARGET_PER_S,
            "sync_ratio_to_target": round3(target_ratio),
            "sync_first_records_s": round3(sync.first_s),
            "sync_tenths_entries_per_s": sync.tenths.iter().map(|t| t.1.round()).collect::<Vec<_>>(),
            "rss_before_b_bytes": rss_before_b,
            "rss_after_sync_bytes": rss_after,
            "b_rss_growth_bytes": rss_after.saturating_sub(rss_before_b),
            "b_pdq_index_bytes": b_index_bytes,
            "hwm_after_sync_bytes": hwm_after,
            "rss_end_bytes": rss_end,
            "hwm_end_bytes": hwm_end,
            "a_disk_bytes": a_disk,
            "b_disk_bytes": b_disk,
            "publish": lat(&publish),
            "retract": lat(&retract),
            "replay": replayed.as_ref().map(|r| json!({
                "records": r.records,
                "checkpoints": r.checkpoints,
                "read_s": round3(r.read_s),
                "verify_s": round3(r.verify_s),
                "apply_s": round3(r.apply_s),
                "apply_entries_per_s": (r.records as f64 / r.apply_s).round(),
            })),
        })
    );
    Ok(())
}

struct Sync {
    secs: f64,
    /// Until `b`'s head first moved.
    first_s: f64,
    /// (seconds, entries/s) per tenth of the set.
    tenths: Vec<(f64, f64)>,
}

/// Peers `b` with `a` and waits until `b` holds `a`'s head.
async fn initial_sync(
    b: &Running,
    set: &SetId,
    a_card: String,
    a_head: u64,
    a_digest: &str,
) -> anyhow::Result<Sync> {
    let mut changes = b.db.changes();
    changes.borrow_and_update();
    let limit = Duration::from_secs(600.max(a_head / 1000));
    let started = Instant::now();
    b.add_peer(a_card, &[], &["a/*"])?;
    let mut first_s = None;
    // Time each tenth of the set was crossed.
    let mut marks: Vec<f64> = Vec::with_capacity(10);
    let mut last_status = Instant::now();
    loop {
        let (seq, digest) = head(&b.db, set);
        let t = started.elapsed().as_secs_f64();
        if seq > 0 && first_s.is_none() {
            first_s = Some(t);
        }
        while marks.len() < 10 && seq >= a_head * (marks.len() as u64 + 1) / 10 {
            marks.push(t);
        }
        if seq == a_head {
            if digest != a_digest {
                bail!("b reached seq {seq} with digest {digest}, a has {a_digest}");
            }
            break;
        }
        if started.elapsed() > limit {
            bail!(
                "b reached only seq {seq} of {a_head} in {limit:?} (sync status: {})",
                b.node().federation().sync_status("a")
            );
        }
        if last_status.elapsed() > Duration::from_secs(10) {
            last_status = Instant::now();
            eprintln!(
                "hashfed-bench: sync: {seq} of {a_head} after {t:.1} s ({:.0}/s; sync status: {})",
                seq as f64 / t,
                b.node().federation().sync_status("a")
            );
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
        changes.borrow_and_update();
    }
    let secs = started.elapsed().as_secs_f64();
    let mut tenths = Vec::with_capacity(10);
    let mut prev = first_s.unwrap_or(0.0);
    for (i, &m) in marks.iter().enumerate() {
        // The first tenth counts from when records started landing.
        let span = (m - prev).max(1e-9);
        let entries = if i == 0 {
            a_head / 10
        } else {
            a_head * (i as u64 + 1) / 10 - a_head * i as u64 / 10
        };
        tenths.push((span, entries as f64 / span));
        prev = m;
    }
    Ok(Sync {
        secs,
        first_s: first_s.unwrap_or(secs),
        tenths,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Publish,
    Retract,
}

struct Latencies {
    count: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    mean: f64,
    /// The origin's own `apply`, p50 (part of every latency).
    apply_p50: f64,
}

fn percentiles(mut lat: Vec<f64>) -> (f64, f64, f64, f64, f64) {
    lat.sort_by(f64::total_cmp);
    let at = |q: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i]
    };
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    (at(0.50), at(0.95), at(0.99), at(1.0), mean)
}

/// Publishes (or retracts) each of `codes` on `a` in its own write and
/// times until `b` matches it (or no longer does).
///
/// Runs on the calling thread (`block_on`), not a runtime worker, so the
/// blocking `apply` and `match_exact` calls do not hold up the nodes.
async fn propagate(
    a: &Running,
    b: &Running,
    set: &SetId,
    codes: &[[u64; 4]],
    op: Op,
) -> anyhow::Result<Latencies> {
    let mut changes = b.db.changes();
    let mut lat = Vec::with_capacity(codes.len());
    let mut applies = Vec::with_capacity(codes.len());
    for (i, code) in codes.iter().enumerate() {
        let signal = pdq(*code);
        let change = match op {
            Op::Publish => add(*code),
            Op::Retract => Change::RetractValue {
                signal: signal.clone(),
                reason: "benchmark".into(),
            },
        };
        let want = op == Op::Publish;
        if matches(&b.db, &signal)? == want {
            bail!(
                "entry {i} already {} on b before the write",
                if want { "matches" } else { "does not match" }
            );
        }
        changes.borrow_and_update();
        let started = Instant::now();
        let applied =
            a.db.apply(set, &[change], hashfed::model::audit::unaudited)?;
        applies.push(started.elapsed().as_secs_f64() * 1e3);
        if applied.appended != 1 {
            bail!(
                "the write of entry {i} on a appended {} records",
                applied.appended
            );
        }
        loop {
            if matches(&b.db, &signal)? == want {
                break;
            }
            if started.elapsed() > PROPAGATION_TIMEOUT {
                bail!(
                    "entry {i} did not {} on b within {PROPAGATION_TIMEOUT:?} (sync status: {})",
                    if want { "match" } else { "stop matching" },
                    b.node().federation().sync_status("a")
                );
            }
            let _ = tokio::time::timeout(BACKSTOP_POLL, changes.changed()).await;
            changes.borrow_and_update();
        }
        lat.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let count = lat.len();
    let (p50, p95, p99, max, mean) = percentiles(lat);
    let (apply_p50, ..) = percentiles(applies);
    Ok(Latencies {
        count,
        p50,
        p95,
        p99,
        max,
        mean,
        apply_p50,
    })
}

struct Replay {
    records: usize,
    checkpoints: usize,
    read_s: f64,
    verify_s: f64,
    apply_s: f64,
}

/// `a`'s log applied to a fresh database in `dir` the way a sync applies
/// it, minus the network: what the stores alone cost.
fn replay_log(a: &Running, dir: &Path, set: &SetId) -> anyhow::Result<Replay> {
    let state =
        a.db.store()
            .set(set)
            .ok_or_else(|| anyhow!("a has no {set}"))?;
    let signed = state
        .signed_info
        .clone()
        .ok_or_else(|| anyhow!("{set} on a is not signed"))?;
    let key = PeerCard::of_node(&a.dir, "127.0.0.1:0")?.keys()?;

    let started = Instant::now();
    let records: Vec<Vec<u8>> =
        a.db.store()
            .log(set, 0)?
            .map(|r| r.map(|(_, bytes)| bytes))
            .collect::<Result<_, _>>()?;
    let checkpoints: Vec<Checkpoint> =
        a.db.store()
            .checkpoints(set, 0)?
            .collect::<Result<_, _>>()?;
    let read_s = started.elapsed().as_secs_f64();
    if records.len() as u64 != state.head_seq {
        bail!(
            "a's log holds {} records, its head is {}",
            records.len(),
            state.head_seq
        );
    }

    let started = Instant::now();
    for cp in &checkpoints {
        verify_checkpoint(&key, set, cp).map_err(|e| anyhow!("checkpoint {}: {e}", cp.seq))?;
    }
    let verify_s = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(dir)?;
    let db = Database::open(&dir.join("store"), &StoreOptions::default())?;
    db.receive_set(state.info.clone(), signed, "a")?;
    let started = Instant::now();
    let mut from = 0usize;
    for cp in &checkpoints {
        let to = cp.seq as usize;
        db.apply_remote(
            set,
            &records[from..to],
            std::slice::from_ref(cp),
            "a",
            false,
        )?;
        from = to;
    }
    let apply_s = started.elapsed().as_secs_f64();
    let (seq, digest) = head(&db, set);
    if seq != state.head_seq || digest != state.head_digest {
        bail!(
            "the replay ended at seq {seq}, not at a's head {}",
            state.head_seq
        );
    }
    drop(records);
    db.close()?;
    Ok(Replay {
        records: seq as usize,
        checkpoints: checkpoints.len(),
        read_s,
        verify_s,
        apply_s,
    })
}
