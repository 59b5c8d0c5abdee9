//! `hashfed-bench grpc`: the match service under load, end to end.
//!
//! What it measures: calls and lookups per second and the latency of each
//! call (p50/p90/p99/max) as a local service sees it — mutual TLS, HTTP/2,
//! protobuf, the node's blocking pool, the PDQ index and the store reads for
//! the hits — against a node holding `--n` random PDQ entries and `--n`/10
//! SHA-256 entries. These are the acceptance numbers of issue 4: p99 ≤ 1 ms
//! for one PDQ query per call, and ≥ 50,000 exact lookups per second.
//!
//! Why the server is a separate process: the resident memory reported is
//! then the node's own (`VmRSS` of `hashfed serve`, after loading and at
//! the end), not mixed with the bench's copy of the codes or its client
//! buffers; and the node runs exactly as deployed (`hashfed serve --dir`,
//! opening its store from the index snapshot). The clients run in this
//! process on a tokio runtime and share the machine's cores with the node,
//! as the issue asks: numbers are for node and callers on one host.
//!
//! Phases (each a warm-up, then `--secs` measured):
//! - `single-pdq`: MatchHashes with 1 PDQ query per call, at concurrency 1
//!   (pure latency) and at `--concurrency`.
//! - `batch64-pdq`: MatchHashes with 64 PDQ queries per call.
//! - `stream-pdq`: MatchStream, each task keeping `STREAM_WINDOW` requests of
//!   64 queries in flight on its own stream, pairing answers by tag.
//! - `batch64-exact`, `stream-exact`: the same two with SHA-256 queries.
//!
//! Queries are random (misses) except about 1% taken from loaded entries
//! (PDQ with a few bits flipped, SHA-256 as is), so the hit path (store
//! reads, match records) is exercised too.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use hashfed::database::Database;
use hashfed::identity::client::node_endpoint;
use hashfed::identity::roles::{issue_client, ClientRole};
use hashfed::model::{EntryData, SetId, SetInfo, Signal, SignalType};
use hashfed::signal::pdq::PdqHash;
use hashfed::store::{Change, StoreOptions};
use hashfed::wire::proto::{self, match_client::MatchClient};
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::{Args, Rng};

/// Queries per call in the batch and stream phases.
const BATCH: usize = 64;
/// Requests each stream task keeps in flight.
const STREAM_WINDOW: usize = 4;
/// Entries per `Database::apply` when filling.
const FILL_CHUNK: usize = 10_000;
/// Share of queries (per mille) taken from loaded entries.
const NEAR_PER_MILLE: u64 = 10;
/// How long the server may take to load before we give up.
const START_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the server may take to stop (grace, then the snapshot write).
const STOP_TIMEOUT: Duration = Duration::from_secs(300);

/// The sets the node is filled with (`bench/...`).
pub(crate) const PDQ_SET: &str = "grpc-pdq";
/// See [`PDQ_SET`].
pub(crate) const SHA_SET: &str = "grpc-sha256";

/// Runs the mode; see the module documentation.
pub fn run(args: &Args, codes: &[[u64; 4]]) -> anyhow::Result<()> {
    let bin = server_bin(args)?;
    let (dir, _cleanup) = match &args.dir {
        Some(d) => (PathBuf::from(d), None),
        None => {
            let d = std::env::temp_dir().join(format!("hashfed-bench-grpc-{}", std::process::id()));
            (d.clone(), Some(RemoveDir(d)))
        }
    };
    let node = dir.join("node");
    let sha = sha_values(args.seed, args.n / 10);
    prepare(&node, codes, &sha)?;

    // The server.
    let started = Instant::now();
    let mut server = Server::spawn(&bin, &node)?;
    let start_s = started.elapsed().as_secs_f64();
    let rss_loaded = server.rss()?;
    eprintln!(
        "hashfed-bench: server pid {} up in {start_s:.1} s, match on {}, VmRSS {:.1} MiB",
        server.pid(),
        server.addr,
        rss_loaded.0 as f64 / 1048576.0
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let addr = server.addr;
    let endpoint = match_endpoint(&node, "bench-client", &addr.to_string())?;
    let channels: Vec<Channel> = runtime.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..args.concurrency.div_ceil(2).max(1) {
            let channel = endpoint
                .clone()
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            channels.push(channel);
        }
        anyhow::Ok(channels)
    })?;

    let workload = Arc::new(Workload {
        pdq: codes.to_vec(),
        sha,
        radius: args.radius,
    });
    let measured = Duration::from_secs(args.secs);
    let warmup = Duration::from_millis(if args.secs < 5 { 1000 } else { 2000 });
    let c = args.concurrency.max(1);
    let phases = [
        ("single-pdq", Kind::Pdq, Call::Unary(1), 1),
        ("single-pdq", Kind::Pdq, Call::Unary(1), c),
        ("batch64-pdq", Kind::Pdq, Call::Unary(BATCH), c),
        ("stream-pdq", Kind::Pdq, Call::Stream(BATCH), c),
        ("batch64-exact", Kind::Exact, Call::Unary(BATCH), c),
        ("stream-exact", Kind::Exact, Call::Stream(BATCH), c),
    ];
    println!(
        "{:<14} {:>5} {:>6} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "phase",
        "conc",
        "batch",
        "calls/s",
        "lookups/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "hit %"
    );
    let mut lines = Vec::new();
    for (i, &(name, kind, call, concurrency)) in phases.iter().enumerate() {
        if args
            .only
            .as_ref()
            .is_some_and(|p| !name.starts_with(p.as_str()))
        {
            continue;
        }
        eprintln!("hashfed-bench: phase {name} at concurrency {concurrency}");
        let result = runtime.block_on(phase(
            &channels,
            &workload,
            kind,
            call,
            concurrency,
            warmup,
            measured,
            splitmix64(args.seed ^ 0x7175_6572_7900).wrapping_add(i as u64 * 1000),
        ))?;
        let lat = Latency::of(result.latencies);
        let secs = measured.as_secs_f64();
        let calls_s = result.calls as f64 / secs;
        let lookups_s = result.lookups as f64 / secs;
        println!(
            "{name:<14} {concurrency:>5} {:>6} {calls_s:>10.0} {lookups_s:>11.0} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.2}",
            call.batch(),
            lat.p50,
            lat.p90,
            lat.p99,
            lat.max,
            result.hits as f64 * 100.0 / result.lookups.max(1) as f64,
        );
        lines.push(json!({
            "impl": "hashfed",
            "what": "grpc",
            "phase": name,
            "n": codes.len(),
            "sha256": workload.sha.len(),
            "radius": args.radius,
            "concurrency": concurrency,
            "batch": call.batch(),
            "window": if matches!(call, Call::Stream(_)) { STREAM_WINDOW } else { 1 },
            "secs": args.secs,
            "calls": result.calls,
            "calls_per_s": calls_s.round(),
            "lookups_per_s": lookups_s.round(),
            "p50_ms": round3(lat.p50),
            "p90_ms": round3(lat.p90),
            "p99_ms": round3(lat.p99),
            "max_ms": round3(lat.max),
            "lookups": result.lookups,
            "hit_queries": result.hits,
        }));
    }
    drop(channels);
    drop(runtime);

    let rss_end = server.rss()?;
    let stopping = Instant::now();
    let clean = server.stop()?;
    let stop_s = stopping.elapsed().as_secs_f64();
    println!(
        "server: start {start_s:.1} s, VmRSS loaded {:.1} MiB ({:.1} B/entry), at end {:.1} MiB, peak {:.1} MiB, stop {stop_s:.1} s{}",
        rss_loaded.0 as f64 / 1048576.0,
        rss_loaded.0 as f64 / (codes.len() + workload.sha.len()).max(1) as f64,
        rss_end.0 as f64 / 1048576.0,
        rss_end.1 as f64 / 1048576.0,
        if clean { ", stopped cleanly" } else { ", NOT stopped cleanly" },
    );
    for line in &lines {
        println!("{line}");
    }
    println!(
        "{}",
        json!({
            "impl": "hashfed",
            "what": "grpc-server",
            "n": codes.len(),
            "sha256": workload.sha.len(),
            "start_s": round3(start_s),
            "rss_loaded_bytes": rss_loaded.0,
            "rss_end_bytes": rss_end.0,
            "rss_peak_bytes": rss_end.1,
            "stop_s": round3(stop_s),
            "stopped_cleanly": clean,
            "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        })
    );
    if !clean {
        bail!("the server did not report a clean stop");
    }
    Ok(())
}

/// SplitMix64: decorrelated xorshift seeds from consecutive integers.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// `--server-bin`, else `hashfed` next to this executable.
pub(crate) fn server_bin(args: &Args) -> anyhow::Result<PathBuf> {
    let bin = match &args.server_bin {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe()
            .context("locating hashfed-bench")?
            .with_file_name("hashfed"),
    };
    if !bin.is_file() {
        bail!(
            "server binary {} not found: run `cargo build --release` (it builds target/release/hashfed next to hashfed-bench) or pass --server-bin PATH",
            bin.display()
        );
    }
    Ok(bin)
}

/// Removes a directory when dropped (the default work dir).
pub(crate) struct RemoveDir(pub(crate) PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `count` seeded random SHA-256 values.
pub(crate) fn sha_values(seed: u64, count: usize) -> Vec<[u8; 32]> {
    let mut rng = Rng(splitmix64(seed ^ 0x5348_4132_3536) | 1);
    (0..count).map(|_| words_bytes(rng.code())).collect()
}

fn words_bytes(words: [u64; 4]) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    bytes
}

/// Makes the node directory `node` named `name` (unless it exists), every
/// listener on an ephemeral loopback port.
pub(crate) fn init_node(node: &Path, name: &str) -> anyhow::Result<()> {
    if node.join("hashfed.toml").exists() {
        return Ok(());
    }
    hashfed::identity::init(node, name)?;
    let path = node.join("hashfed.toml");
    let mut text = std::fs::read_to_string(&path)?;
    for port in ["7701", "7702", "7703", "7709"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    std::fs::write(&path, text)?;
    Ok(())
}

/// An mTLS endpoint to the match listener at `addr` of the node in `node`,
/// as a local service with a fresh client certificate named `client`
/// (trusting the node's CA).
pub(crate) fn match_endpoint(node: &Path, client: &str, addr: &str) -> anyhow::Result<Endpoint> {
    let cert = issue_client(node, client, ClientRole::Local, 1)?;
    node_endpoint(node, addr, "localhost", Some(&cert))
        .with_context(|| format!("the match listener at {addr}"))
}

/// Makes the node directory (if new) and fills its store (if empty).
pub(crate) fn prepare(node: &Path, codes: &[[u64; 4]], sha: &[[u8; 32]]) -> anyhow::Result<()> {
    init_node(node, "bench")?;
    let db = Database::open(&node.join("store"), &StoreOptions::default())?;
    let pdq = codes
        .iter()
        .map(|c| Signal::pdq(PdqHash::from_words(*c)))
        .collect::<Vec<_>>();
    fill(&db, PDQ_SET, pdq)?;
    let sha = sha
        .iter()
        .map(|v| Signal::from_bytes(SignalType::Sha256, v.to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    fill(&db, SHA_SET, sha)?;
    let closing = Instant::now();
    db.close()?;
    eprintln!(
        "hashfed-bench: database closed (index snapshot written) in {:.1} s",
        closing.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Adds `signals` to the set `bench/NAME` in atomic batches, unless the set
/// already holds them (a reused `--dir`).
fn fill(db: &Database, name: &str, signals: Vec<Signal>) -> anyhow::Result<()> {
    let set = SetId::new("bench", name)?;
    let have = db.store().set(&set).map_or(0, |s| s.head_seq);
    if have == signals.len() as u64 {
        eprintln!("hashfed-bench: {set} already holds {have} entries");
        return Ok(());
    }
    if have != 0 {
        bail!(
            "{set} holds {have} entries, not {}: use another --dir (or the same --n)",
            signals.len()
        );
    }
    db.create_set(SetInfo::new(set.clone()), hashfed::model::audit::unaudited)?;
    let start = Instant::now();
    let mut written = 0;
    for chunk in signals.chunks(FILL_CHUNK) {
        let changes: Vec<Change> = chunk
            .iter()
            .map(|signal| {
                Change::Add(EntryData {
                    signal: signal.clone(),
                    labels: vec!["bench".into()],
                    external_id: None,
                    vetting: vec![],
                })
            })
            .collect();
        db.apply(&set, &changes, hashfed::model::audit::unaudited)?;
        written += chunk.len();
        if written % 200_000 < FILL_CHUNK && written >= 200_000 {
            eprintln!("hashfed-bench: {set}: {written} entries written");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "impl": "hashfed",
            "what": "grpc-fill",
            "set": set.as_str(),
            "entries": written,
            "fill_s": round3(secs),
            "entries_per_s": (written as f64 / secs.max(1e-9)).round(),
        })
    );
    Ok(())
}

/// `hashfed serve` in a child process.
pub(crate) struct Server {
    child: Option<Child>,
    /// Its match listener.
    pub(crate) addr: std::net::SocketAddr,
    /// Its federation listener.
    pub(crate) federation: std::net::SocketAddr,
    /// The rest of its stderr, read by a thread: whether it said it
    /// stopped cleanly.
    stderr: Option<std::thread::JoinHandle<bool>>,
}

impl Server {
    /// Starts the server and waits until it listens (its "metrics listening
    /// on" line), noting its match and federation addresses.
    pub(crate) fn spawn(bin: &Path, node: &Path) -> anyhow::Result<Server> {
        let mut child = Command::new(bin)
            .arg("serve")
            .arg("--dir")
            .arg(node)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;
        type Listening = (std::net::SocketAddr, std::net::SocketAddr);
        let (tx, rx) = std::sync::mpsc::channel::<Result<Listening, String>>();
        // Keeps reading (a full pipe would block the server), echoing
        // warnings and errors, and remembers the clean-stop line.
        let reader = std::thread::spawn(move || {
            let mut clean = false;
            let mut tx = Some(tx);
            let mut early = Vec::new();
            let (mut matching, mut federation) = (String::new(), String::new());
            let addr_in = |rest: &str| rest.split_whitespace().next().unwrap_or("").to_owned();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("match listening on ").nth(1) {
                    matching = addr_in(rest);
                }
                if let Some(rest) = line.split("federation listening on ").nth(1) {
                    federation = addr_in(rest);
                }
                // The last line the server prints once it listens.
                if line.contains("metrics listening on ") {
                    if let Some(tx) = tx.take() {
                        let both = matching
                            .parse()
                            .and_then(|m| federation.parse().map(|f| (m, f)))
                            .map_err(|e| format!("{line}: {e}"));
                        let _ = tx.send(both);
                    }
                } else if tx.is_some() {
                    early.push(line.clone());
                }
                if line.contains("stopped cleanly") {
                    clean = true;
                }
                if line.contains("ERROR") || line.contains("WARN") || line.contains("error") {
                    eprintln!("server: {line}");
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(Err(early.join("\n")));
            }
            clean
        });
        let mut server = Server {
            child: Some(child),
            addr: ([127, 0, 0, 1], 0).into(),
            federation: ([127, 0, 0, 1], 0).into(),
            stderr: Some(reader),
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok((addr, federation))) => {
                server.addr = addr;
                server.federation = federation;
            }
            Ok(Err(output)) => bail!("the server exited before listening:\n{output}"),
            Err(_) => bail!("the server did not listen within {START_TIMEOUT:?}"),
        }
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// (VmRSS, VmHWM) in bytes.
    pub(crate) fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| anyhow!("{path} has no {name}"))?;
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .ok_or_else(|| anyhow!("{path}: {line}"))?
                .parse()
                .with_context(|| format!("{path}: {line}"))?;
            Ok(kb * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// SIGTERM, then waits; true if it exited 0 saying "stopped cleanly".
    pub(crate) fn stop(&mut self) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else {
            return Ok(false);
        };
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !sent.success() {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not stop within {STOP_TIMEOUT:?}; killed");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let said_clean = self
            .stderr
            .take()
            .map(|r| r.join().unwrap_or(false))
            .unwrap_or(false);
        Ok(status.success() && said_clean)
    }
}

impl Drop for Server {
    /// On an error path: do not leave the node running.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the phases query.
struct Workload {
    pdq: Vec<[u64; 4]>,
    sha: Vec<[u8; 32]>,
    radius: u32,
}

#[derive(Clone, Copy)]
enum Kind {
    Pdq,
    Exact,
}

#[derive(Clone, Copy)]
enum Call {
    /// MatchHashes with this many queries.
    Unary(usize),
    /// MatchStream, `STREAM_WINDOW` requests of this many queries in flight.
    Stream(usize),
}

impl Call {
    fn batch(self) -> usize {
        match self {
            Call::Unary(b) | Call::Stream(b) => b,
        }
    }
}

impl Workload {
    fn query(&self, kind: Kind, rng: &mut Rng) -> proto::Query {
        let near = rng.next() % 1000 < NEAR_PER_MILLE;
        match kind {
            Kind::Pdq => {
                let code = if near && !self.pdq.is_empty() {
                    let c = self.pdq[(rng.next() % self.pdq.len() as u64) as usize];
                    let bits = (rng.next() % 9) as u32;
                    rng.flip(c, bits)
                } else {
                    rng.code()
                };
                proto::Query {
                    signal: Some(proto::Signal {
                        r#type: proto::SignalType::Pdq as i32,
                        value: PdqHash::from_words(code).to_bytes().to_vec(),
                        opaque_type: String::new(),
                    }),
                    pdq_variants: vec![],
                    quality: Some(90),
                    radius: Some(self.radius),
                }
            }
            Kind::Exact => {
                let value = if near && !self.sha.is_empty() {
                    self.sha[(rng.next() % self.sha.len() as u64) as usize]
                } else {
                    words_bytes(rng.code())
                };
                proto::Query {
                    signal: Some(proto::Signal {
                        r#type: proto::SignalType::Sha256 as i32,
                        value: value.to_vec(),
                        opaque_type: String::new(),
                    }),
                    pdq_variants: vec![],
                    quality: None,
                    radius: None,
                }
            }
        }
    }

    fn request(&self, kind: Kind, batch: usize, tag: u64, rng: &mut Rng) -> proto::MatchRequest {
        proto::MatchRequest {
            queries: (0..batch).map(|_| self.query(kind, rng)).collect(),
            tag,
        }
    }
}

/// What the tasks of one phase did inside the measured window.
#[derive(Default)]
struct Outcome {
    calls: u64,
    lookups: u64,
    hits: u64,
    latencies: Vec<Duration>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.calls += other.calls;
        self.lookups += other.lookups;
        self.hits += other.hits;
        self.latencies.extend(other.latencies);
    }

    /// Counts a call that completed at `done` if that is inside the window.
    fn count(
        &mut self,
        window: (Instant, Instant),
        sent: Instant,
        done: Instant,
        r: &proto::MatchResponse,
    ) {
        if done >= window.0 && done <= window.1 {
            self.calls += 1;
            self.lookups += r.results.len() as u64;
            self.hits += r.results.iter().filter(|q| !q.hits.is_empty()).count() as u64;
            self.latencies.push(done - sent);
        }
    }
}

/// Runs one phase: `concurrency` tasks for warm-up plus `measured`.
#[allow(clippy::too_many_arguments)]
async fn phase(
    channels: &[Channel],
    workload: &Arc<Workload>,
    kind: Kind,
    call: Call,
    concurrency: usize,
    warmup: Duration,
    measured: Duration,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let from = Instant::now() + warmup;
    let window = (from, from + measured);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency {
        let client = MatchClient::new(channels[t % channels.len()].clone());
        let workload = workload.clone();
        // Not the fill's generator: its sequence would replay the stored
        // codes and make every query a hit.
        let rng = Rng(splitmix64(seed.wrapping_add(t as u64)) | 1);
        tasks.spawn(async move {
            match call {
                Call::Unary(batch) => unary(client, workload, kind, batch, window, rng).await,
                Call::Stream(batch) => stream(client, workload, kind, batch, window, rng).await,
            }
        });
    }
    let mut total = Outcome::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.map_err(|e| anyhow!("a client task failed: {e}"))??);
    }
    Ok(total)
}

async fn unary(
    mut client: MatchClient<Channel>,
    workload: Arc<Workload>,
    kind: Kind,
    batch: usize,
    window: (Instant, Instant),
    mut rng: Rng,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mut tag = 0;
    while Instant::now() < window.1 {
        tag += 1;
        let request = workload.request(kind, batch, tag, &mut rng);
        let sent = Instant::now();
        let response = client.match_hashes(request).await?.into_inner();
        let done = Instant::now();
        if response.results.len() != batch {
            bail!("{} results for {batch} queries", response.results.len());
        }
        out.count(window, sent, done, &response);
    }
    Ok(out)
}

async fn stream(
    mut client: MatchClient<Channel>,
    workload: Arc<Workload>,
    kind: Kind,
    batch: usize,
    window: (Instant, Instant),
    mut rng: Rng,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let (tx, rx) = tokio::sync::mpsc::channel(STREAM_WINDOW);
    let mut in_flight: HashMap<u64, Instant> = HashMap::new();
    let mut tag = 0u64;
    // The first window is queued before the call so the stream opens full.
    for _ in 0..STREAM_WINDOW {
        tag += 1;
        tx.send(workload.request(kind, batch, tag, &mut rng))
            .await?;
        in_flight.insert(tag, Instant::now());
    }
    let mut responses = client
        .match_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut tx = Some(tx);
    while !in_flight.is_empty() {
        let response = responses.message().await?.ok_or_else(|| {
            anyhow!(
                "the stream ended with {} requests unanswered",
                in_flight.len()
            )
        })?;
        let done = Instant::now();
        let sent = in_flight
            .remove(&response.tag)
            .ok_or_else(|| anyhow!("an answer with unknown tag {}", response.tag))?;
        if response.results.len() != batch {
            bail!("{} results for {batch} queries", response.results.len());
        }
        out.count(window, sent, done, &response);
        if done < window.1 {
            if let Some(tx) = &tx {
                tag += 1;
                let request = workload.request(kind, batch, tag, &mut rng);
                in_flight.insert(tag, Instant::now());
                tx.send(request).await?;
            }
        } else {
            // Half-close: the server ends the stream after the last answer.
            tx = None;
        }
    }
    drop(tx);
    Ok(out)
}

/// Latency percentiles in milliseconds.
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Latency {
    fn of(mut lat: Vec<Duration>) -> Latency {
        lat.sort_unstable();
        let at = |q: f64| -> f64 {
            if lat.is_empty() {
                return 0.0;
            }
            let i = ((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i].as_secs_f64() * 1e3
        };
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}
