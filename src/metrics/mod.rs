//! Prometheus metrics for a node: match queries, gRPC calls, feedback and a
//! few gauges, rendered in the text exposition format 0.0.4 and served by a
//! small HTTP endpoint ([`serve_http`]).
//!
//! Why it looks like this:
//!
//! * **The hot path is atomics only.** Every match query records a counter
//!   and a latency observation; those are a handful of relaxed
//!   `fetch_add`s on fixed arrays indexed by small enums ([`Kind`],
//!   [`ErrorReason`], the gRPC code), with no lock, no allocation and no
//!   hashing. The set of gRPC methods is fixed when [`Metrics::new`] is
//!   called, so even the per-method series need no lock; a method not
//!   registered there is counted as `method="other"`.
//! * **No metrics crate.** The exposition format is a few lines of text,
//!   written here. The HTTP side (`GET /metrics`, `GET /healthz`) is
//!   hyper's HTTP/1.1 server, which tonic builds already, so it adds no
//!   dependency and no hand-written parser.
//! * **Bind the endpoint to loopback** (or a private interface behind a
//!   scraper you control): the metrics are not authenticated and reveal
//!   traffic volumes per signal type, which is information about the
//!   federation's workload.
//!
//! Rendering reads every atomic once; series of one histogram may therefore
//! be very slightly inconsistent with each other (a query recorded between
//! two loads), which Prometheus tolerates. `_count` always equals the
//! `+Inf` bucket.

mod http;

pub use http::serve_http;

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::model::signal::SignalType;
use crate::model::Verdict;

/// What a match query was about: the signal type of the hash looked up, or
/// image bytes hashed by the node itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A PDQ hash.
    Pdq,
    /// An MD5 digest.
    Md5,
    /// A SHA-1 digest.
    Sha1,
    /// A SHA-256 digest.
    Sha256,
    /// A BLAKE3 digest.
    Blake3,
    /// Any opaque signal type (all names share one label, so a client cannot
    /// create series at will).
    Opaque,
    /// Image bytes sent to the node to be hashed and matched.
    Image,
}

impl Kind {
    /// Every kind, in label order.
    pub const ALL: [Kind; 7] = [
        Kind::Pdq,
        Kind::Md5,
        Kind::Sha1,
        Kind::Sha256,
        Kind::Blake3,
        Kind::Opaque,
        Kind::Image,
    ];

    /// The value of the `type` label.
    pub fn label(&self) -> &'static str {
        match self {
            Kind::Pdq => "pdq",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Blake3 => "blake3",
            Kind::Opaque => "opaque",
            Kind::Image => "image",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl From<&SignalType> for Kind {
    fn from(t: &SignalType) -> Self {
        match t {
            SignalType::Pdq => Kind::Pdq,
            SignalType::Md5 => Kind::Md5,
            SignalType::Sha1 => Kind::Sha1,
            SignalType::Sha256 => Kind::Sha256,
            SignalType::Blake3 => Kind::Blake3,
            SignalType::Opaque(_) => Kind::Opaque,
        }
    }
}

/// Why a match query failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The query was malformed (bad length, bad hex, bad options).
    InvalidArgument,
    /// The node failed (e.g. could not read its database).
    Internal,
    /// The PDQ hash (or decoded image) was under the quality threshold.
    LowQuality,
}

impl ErrorReason {
    /// Every reason, in label order.
    pub const ALL: [ErrorReason; 3] = [
        ErrorReason::InvalidArgument,
        ErrorReason::Internal,
        ErrorReason::LowQuality,
    ];

    /// The value of the `reason` label.
    pub fn label(&self) -> &'static str {
        match self {
            ErrorReason::InvalidArgument => "invalid_argument",
            ErrorReason::Internal => "internal",
            ErrorReason::LowQuality => "low_quality",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const KINDS: usize = Kind::ALL.len();
const REASONS: usize = ErrorReason::ALL.len();

/// Number of gRPC status codes (`Ok` = 0 to `Unauthenticated` = 16).
const CODES: usize = 17;

/// The `code` label of each gRPC status code, indexed by its number; the
/// names are the canonical ones of the gRPC specification (as used by
/// grpc-go's and grpc-java's metrics), not tonic's `Debug` names.
const CODE_LABELS: [&str; CODES] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

fn code_index(code: tonic::Code) -> usize {
    // `Unknown` (2) for anything out of range, which tonic never produces.
    usize::try_from(i32::from(code))
        .ok()
        .filter(|&i| i < CODES)
        .unwrap_or(2)
}

/// Upper bounds of the latency buckets, in nanoseconds (the `+Inf` bucket
/// follows).
const BUCKET_BOUNDS_NS: [u64; 14] = [
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// The `le` label of each bucket in [`BUCKET_BOUNDS_NS`], in seconds.
const BUCKET_LABELS: [&str; 14] = [
    "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01",
    "0.025", "0.05", "0.1", "0.25", "1",
];

/// Longest duration one observation adds to a histogram's sum (one day), so
/// that an absurd duration cannot wrap the sum around.
const MAX_OBSERVATION_NS: u64 = 86_400 * 1_000_000_000;

/// A latency histogram: non-cumulative bucket counts (the last is `+Inf`)
/// and the sum of observations in nanoseconds.
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; BUCKET_BOUNDS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos())
            .unwrap_or(u64::MAX)
            .min(MAX_OBSERVATION_NS);
        // First bucket whose bound is >= ns (`le` is inclusive); none: +Inf.
        let i = BUCKET_BOUNDS_NS.partition_point(|&bound| bound < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }
}

/// Counters of one registered gRPC method.
#[derive(Debug)]
struct MethodSlot {
    name: &'static str,
    codes: [AtomicU64; CODES],
    latency: Histogram,
}

impl MethodSlot {
    fn new(name: &'static str) -> Self {
        MethodSlot {
            name,
            codes: std::array::from_fn(|_| AtomicU64::new(0)),
            latency: Histogram::new(),
        }
    }
}

/// The `method` label of calls to methods not given to [`Metrics::new`].
pub const OTHER_METHOD: &str = "other";

/// A node's metrics. Share it as `Arc<Metrics>`; every recording method
/// takes `&self` and only touches atomics.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    queries: [AtomicU64; KINDS],
    hits: [AtomicU64; KINDS],
    /// Queries an allowlist answered (their block hits withheld).
    allowlisted: [AtomicU64; KINDS],
    errors: [[AtomicU64; REASONS]; KINDS],
    latency: [Histogram; KINDS],
    /// Registered methods.
    methods: Box<[MethodSlot]>,
    /// Calls to any other method.
    other: MethodSlot,
    confirmed: AtomicU64,
    false_positives: AtomicU64,
    entries: [AtomicU64; KINDS],
    sets: AtomicU64,
    /// Federation: records applied from peers, and refused (a verification
    /// failure is a security event: someone altered or forged records).
    records_received: AtomicU64,
    records_refused: AtomicU64,
    feedback_forwarded: AtomicU64,
    /// Key histories refused (forks, forged rotations), by the peer that
    /// passed them on: an old key may have leaked.
    key_history_refused: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    /// Live exchanges' counts, by exchange name.
    exchanges: std::sync::Mutex<std::collections::BTreeMap<String, ExchangeCounts>>,
    /// The node's certificates and their ends of validity (Unix seconds).
    certificates: std::sync::Mutex<Vec<(String, i64)>>,
}

impl Default for Metrics {
    /// Metrics with no registered gRPC method (every call counts as
    /// `method="other"`).
    fn default() -> Self {
        Metrics::new(&[])
    }
}

impl Metrics {
    /// Metrics whose gRPC series are kept per method for `methods` (e.g.
    /// `["MatchHashes", "MatchImage"]`); calls recorded for any other name go
    /// to `method="other"`. Duplicates are ignored. The uptime gauge counts
    /// from now.
    pub fn new(methods: &[&'static str]) -> Self {
        let mut slots: Vec<MethodSlot> = Vec::with_capacity(methods.len() + 1);
        for &name in methods {
            if name != OTHER_METHOD && !slots.iter().any(|s| s.name == name) {
                slots.push(MethodSlot::new(name));
            }
        }
        Metrics {
            started: Instant::now(),
            queries: std::array::from_fn(|_| AtomicU64::new(0)),
            hits: std::array::from_fn(|_| AtomicU64::new(0)),
            allowlisted: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram::new()),
            methods: slots.into_boxed_slice(),
            other: MethodSlot::new(OTHER_METHOD),
            confirmed: AtomicU64::new(0),
            false_positives: AtomicU64::new(0),
            entries: std::array::from_fn(|_| AtomicU64::new(0)),
            sets: AtomicU64::new(0),
            records_received: AtomicU64::new(0),
            records_refused: AtomicU64::new(0),
            feedback_forwarded: AtomicU64::new(0),
            key_history_refused: Default::default(),
            exchanges: Default::default(),
            certificates: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Records one query (one hash looked up, or one image matched) that took
    /// `elapsed` and matched at least one entry if `hit`.
    pub fn query(&self, kind: Kind, elapsed: Duration, hit: bool) {
        let k = kind.index();
        self.queries[k].fetch_add(1, Relaxed);
        if hit {
            self.hits[k].fetch_add(1, Relaxed);
        }
        self.latency[k].observe(elapsed);
    }

    /// Records that an allowlist answered one query (counted with
    /// [`Metrics::query`] as well, as a query without a hit).
    pub fn allowlisted(&self, kind: Kind) {
        self.allowlisted[kind.index()].fetch_add(1, Relaxed);
    }

    /// Records one query that failed for `reason`. This does not count it in
    /// `hashfed_match_queries_total`; call [`Metrics::query`] as well if it
    /// should be.
    pub fn error(&self, kind: Kind, reason: ErrorReason) {
        self.errors[kind.index()][reason.index()].fetch_add(1, Relaxed);
    }

    /// Records one gRPC call to `method` that ended with `code` after
    /// `elapsed`.
    pub fn rpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let slot = self.method_slot(method);
        slot.codes[code_index(code)].fetch_add(1, Relaxed);
        slot.latency.observe(elapsed);
    }

    /// Records one gRPC call to `method` started at `started` from its
    /// result: `Ok` counts as code `OK`, `Err(status)` as `status.code()`.
    pub fn rpc_result<T>(&self, method: &str, started: Instant, result: &Result<T, tonic::Status>) {
        let code = match result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.rpc(method, code, started.elapsed());
    }

    /// Records one piece of feedback on a match.
    pub fn feedback(&self, verdict: Verdict) {
        match verdict {
            Verdict::Confirmed => self.confirmed.fetch_add(1, Relaxed),
            Verdict::FalsePositive => self.false_positives.fetch_add(1, Relaxed),
        };
    }

    /// Sets the number of entries of `kind` the node holds. [`Kind::Image`]
    /// is not an entry type and is not exported.
    pub fn set_entries(&self, kind: Kind, n: u64) {
        self.entries[kind.index()].store(n, Relaxed);
    }

    /// Sets the number of hash sets the node holds.
    pub fn set_sets(&self, n: u64) {
        self.sets.store(n, Relaxed);
    }

    /// Counts `n` set log records received from peers, verified and applied.
    pub fn records_received(&self, n: u64) {
        self.records_received.fetch_add(n, Relaxed);
    }

    /// Counts one refused batch of records from a peer.
    pub fn records_refused(&self) {
        self.records_refused.fetch_add(1, Relaxed);
    }

    /// Counts one key history refused from `peer` (a fork or a forged
    /// rotation: see `model::keychain`).
    pub fn key_history_refused(&self, peer: &str) {
        let mut by_peer = self
            .key_history_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *by_peer.entry(peer.to_owned()).or_default() += 1;
    }

    /// Key histories refused since the node started, from every peer (what
    /// `hashfed status` warns of).
    pub fn key_history_refusals(&self) -> u64 {
        let by_peer = self
            .key_history_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        by_peer.values().sum()
    }

    /// Counts one page of exchange `name` applied: its records and those
    /// skipped.
    pub fn exchange_page(&self, name: &str, records: u64, skipped: u64) {
        self.with_exchange(name, |c| {
            c.pages += 1;
            c.records += records;
            c.skipped += skipped;
        });
    }

    /// Counts one failed fetch of exchange `name`.
    pub fn exchange_failure(&self, name: &str) {
        self.with_exchange(name, |c| c.failures += 1);
    }

    /// Counts one verdict exchange `name`'s service took.
    pub fn exchange_feedback_sent(&self, name: &str) {
        self.with_exchange(name, |c| c.feedback_sent += 1);
    }

    fn with_exchange(&self, name: &str, f: impl FnOnce(&mut ExchangeCounts)) {
        let mut by_name = self.exchanges.lock().unwrap_or_else(|p| p.into_inner());
        f(by_name.entry(name.to_owned()).or_default());
    }

    /// The exchanges' families (their names are `[a-z0-9-]`: nothing to
    /// escape).
    fn render_exchanges(&self, out: &mut String) {
        let by_name = self
            .exchanges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if by_name.is_empty() {
            return;
        }
        let families: [ExchangeFamily; 5] = [
            (
                "hashfed_exchange_pages_total",
                "Pages of a live exchange applied.",
                |c| c.pages,
            ),
            (
                "hashfed_exchange_records_total",
                "Records of a live exchange's pages applied.",
                |c| c.records,
            ),
            (
                "hashfed_exchange_skipped_total",
                "Records of a live exchange skipped (malformed, refused).",
                |c| c.skipped,
            ),
            (
                "hashfed_exchange_failures_total",
                "Fetches of a live exchange that failed.",
                |c| c.failures,
            ),
            (
                "hashfed_exchange_feedback_sent_total",
                "Verdicts sent back to a live exchange's service.",
                |c| c.feedback_sent,
            ),
        ];
        for (name, help, value) in families {
            family(out, name, "counter", help);
            for (exchange, counts) in &by_name {
                let _ = writeln!(out, "{name}{{exchange=\"{exchange}\"}} {}", value(counts));
            }
        }
    }

    /// Counts feedback notes a peer acknowledged on their way to an origin.
    pub fn feedback_forwarded(&self, n: u64) {
        self.feedback_forwarded.fetch_add(n, Relaxed);
    }

    fn method_slot(&self, method: &str) -> &MethodSlot {
        self.methods
            .iter()
            .find(|s| s.name == method)
            .unwrap_or(&self.other)
    }

    fn method_slots(&self) -> impl Iterator<Item = &MethodSlot> {
        self.methods.iter().chain(std::iter::once(&self.other))
    }

    /// Records when the node's certificates expire (shown as
    /// `hashfed_certificate_expiry_timestamp_seconds`, to alert on weeks
    /// ahead).
    pub fn set_certificate_expiries(&self, expiries: Vec<(String, i64)>) {
        *self.certificates.lock().unwrap_or_else(|p| p.into_inner()) = expiries;
    }

    /// Reads the expiry dates of the certificates of the node in `dir` (at
    /// start, and after a renewal); an unreadable certificate is logged.
    pub fn load_certificate_expiries(&self, dir: &std::path::Path) {
        match crate::identity::expiry::expiries(dir) {
            Ok(all) => self.set_certificate_expiries(
                all.into_iter()
                    .map(|e| (e.name.to_owned(), e.not_after))
                    .collect(),
            ),
            Err(e) => tracing::warn!(error = %e, "certificate expiry dates not readable"),
        }
    }

    /// The metrics in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);

        family(
            &mut out,
            "hashfed_match_queries_total",
            "counter",
            "Match queries (one per hash looked up or image matched).",
        );
        for kind in Kind::ALL {
            sample(
                &mut out,
                "hashfed_match_queries_total",
                &type_label(kind),
                self.queries[kind.index()].load(Relaxed),
            );
        }

        family(
            &mut out,
            "hashfed_match_hits_total",
            "counter",
            "Match queries that matched at least one entry.",
        );
        for kind in Kind::ALL {
            sample(
                &mut out,
                "hashfed_match_hits_total",
                &type_label(kind),
                self.hits[kind.index()].load(Relaxed),
            );
        }

        family(
            &mut out,
            "hashfed_match_allowlisted_total",
            "counter",
            "Match queries that matched an allowlist, so no block list's hit was returned.",
        );
        for kind in Kind::ALL {
            sample(
                &mut out,
                "hashfed_match_allowlisted_total",
                &type_label(kind),
                self.allowlisted[kind.index()].load(Relaxed),
            );
        }

        family(
            &mut out,
            "hashfed_match_errors_total",
            "counter",
            "Match queries that failed, by reason.",
        );
        for kind in Kind::ALL {
            for reason in ErrorReason::ALL {
                let labels = format!("type=\"{}\",reason=\"{}\"", kind.label(), reason.label());
                sample(
                    &mut out,
                    "hashfed_match_errors_total",
                    &labels,
                    self.errors[kind.index()][reason.index()].load(Relaxed),
                );
            }
        }

        family(
            &mut out,
            "hashfed_match_latency_seconds",
            "histogram",
            "Time to answer one match query.",
        );
        for kind in Kind::ALL {
            histogram(
                &mut out,
                "hashfed_match_latency_seconds",
                &type_label(kind),
                &self.latency[kind.index()],
            );
        }

        family(
            &mut out,
            "hashfed_rpc_requests_total",
            "counter",
            "gRPC calls by method and status code.",
        );
        for slot in self.method_slots() {
            let method = escape_label_value(slot.name);
            for (code, counter) in CODE_LABELS.iter().zip(&slot.codes) {
                let n = counter.load(Relaxed);
                if n != 0 {
                    let labels = format!("method=\"{method}\",code=\"{code}\"");
                    sample(&mut out, "hashfed_rpc_requests_total", &labels, n);
                }
            }
        }

        family(
            &mut out,
            "hashfed_rpc_latency_seconds",
            "histogram",
            "Time to answer one gRPC call.",
        );
        for slot in self.method_slots() {
            let labels = format!("method=\"{}\"", escape_label_value(slot.name));
            histogram(
                &mut out,
                "hashfed_rpc_latency_seconds",
                &labels,
                &slot.latency,
            );
        }

        family(
            &mut out,
            "hashfed_feedback_total",
            "counter",
            "Feedback received on matches, by verdict.",
        );
        for (verdict, n) in [
            (Verdict::Confirmed, &self.confirmed),
            (Verdict::FalsePositive, &self.false_positives),
        ] {
            sample(
                &mut out,
                "hashfed_feedback_total",
                &format!("verdict=\"{verdict}\""),
                n.load(Relaxed),
            );
        }

        family(
            &mut out,
            "hashfed_entries",
            "gauge",
            "Entries the node holds, by signal type.",
        );
        for kind in Kind::ALL {
            if kind != Kind::Image {
                sample(
                    &mut out,
                    "hashfed_entries",
                    &type_label(kind),
                    self.entries[kind.index()].load(Relaxed),
                );
            }
        }

        family(
            &mut out,
            "hashfed_sets",
            "gauge",
            "Hash sets the node holds.",
        );
        sample(&mut out, "hashfed_sets", "", self.sets.load(Relaxed));

        for (name, help, value) in [
            (
                "hashfed_federation_records_received_total",
                "Set log records received from peers, verified against their origin's signature and applied.",
                &self.records_received,
            ),
            (
                "hashfed_federation_refusals_total",
                "Batches of records from peers refused (altered, forged, out of order, or against policy).",
                &self.records_refused,
            ),
            (
                "hashfed_federation_feedback_forwarded_total",
                "Feedback notes acknowledged by the next node toward the origin.",
                &self.feedback_forwarded,
            ),
        ] {
            family(&mut out, name, "counter", help);
            sample(&mut out, name, "", value.load(Relaxed));
        }

        family(
            &mut out,
            "hashfed_key_history_refused_total",
            "counter",
            "Key histories refused (a fork or a forged rotation: was an old key leaked?), by the peer that sent them.",
        );
        let refused = self
            .key_history_refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (peer, n) in refused {
            // Peer names are [a-z0-9-]: nothing to escape.
            let _ = writeln!(
                out,
                "hashfed_key_history_refused_total{{peer=\"{peer}\"}} {n}"
            );
        }

        self.render_exchanges(&mut out);

        let certificates = self
            .certificates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !certificates.is_empty() {
            family(
                &mut out,
                "hashfed_certificate_expiry_timestamp_seconds",
                "gauge",
                "When each of the node's certificates expires (Unix time): alert weeks ahead.",
            );
            for (name, not_after) in certificates {
                let _ = writeln!(
                    out,
                    "hashfed_certificate_expiry_timestamp_seconds{{certificate=\"{name}\"}} {not_after}"
                );
            }
        }

        family(
            &mut out,
            "hashfed_up_seconds",
            "gauge",
            "Seconds since the node started.",
        );
        let up = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let _ = writeln!(out, "hashfed_up_seconds {}", seconds(up));

        if let Some(bytes) = resident_memory_bytes() {
            family(
                &mut out,
                "hashfed_resident_memory_bytes",
                "gauge",
                "Resident memory of the node process, in bytes.",
            );
            sample(&mut out, "hashfed_resident_memory_bytes", "", bytes);
        }

        out
    }
}

/// A family of the exchanges' counts: name, help, which count.
type ExchangeFamily = (&'static str, &'static str, fn(&ExchangeCounts) -> u64);

/// One live exchange's counts.
#[derive(Clone, Copy, Debug, Default)]
struct ExchangeCounts {
    pages: u64,
    records: u64,
    skipped: u64,
    failures: u64,
    feedback_sent: u64,
}

fn type_label(kind: Kind) -> String {
    format!("type=\"{}\"", kind.label())
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Writes one sample; `labels` is the text inside the braces, already
/// escaped (empty: no braces).
fn sample(out: &mut String, name: &str, labels: &str, value: u64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Writes the `_bucket`, `_sum` and `_count` series of one histogram.
fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (le, bucket) in BUCKET_LABELS.iter().zip(&h.buckets) {
        cumulative += bucket.load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
        );
    }
    if let Some(inf) = h.buckets.last() {
        cumulative += inf.load(Relaxed);
    }
    let _ = writeln!(
        out,
        "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
    );
    let sum = seconds(h.sum_ns.load(Relaxed));
    if labels.is_empty() {
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    } else {
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// Nanoseconds as exact decimal seconds, without trailing zeros
/// (`1500000` -> `0.0015`, `2000000000` -> `2`).
fn seconds(ns: u64) -> String {
    let whole = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    if frac == 0 {
        return whole.to_string();
    }
    let mut s = format!("{whole}.{frac:09}");
    while s.ends_with('0') {
        s.pop();
    }
    s
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label_value(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Escapes `# HELP` text: backslash and line feed.
fn escape_help(help: &str) -> Cow<'_, str> {
    if !help.contains(['\\', '\n']) {
        return Cow::Borrowed(help);
    }
    Cow::Owned(help.replace('\\', "\\\\").replace('\n', "\\n"))
}

/// Resident set size of this process, from `VmRSS` in `/proc/self/status`
/// (the same figure as the second field of `/proc/self/statm` times the page
/// size, but in kB so that no page-size lookup is needed).
#[cfg(target_os = "linux")]
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let kb: u64 = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => kb.checked_mul(1024),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn resident_memory_bytes() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    fn has_line(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn counters_render_exact_lines() {
        let m = Metrics::new(&["MatchHashes"]);
        m.query(Kind::Pdq, Duration::from_micros(30), true);
        m.query(Kind::Pdq, Duration::from_millis(2), false);
        m.query(Kind::Md5, Duration::from_micros(1), true);
        m.error(Kind::Sha256, ErrorReason::InvalidArgument);
        m.error(Kind::Pdq, ErrorReason::LowQuality);
        m.error(Kind::Pdq, ErrorReason::LowQuality);
        m.feedback(Verdict::Confirmed);
        m.feedback(Verdict::FalsePositive);
        m.feedback(Verdict::FalsePositive);
        m.set_entries(Kind::Pdq, 1234);
        m.set_entries(Kind::Image, 99);
        m.set_sets(7);
        let text = m.render();

        for line in [
            "# HELP hashfed_match_queries_total Match queries (one per hash looked up or image matched).",
            "# TYPE hashfed_match_queries_total counter",
            "hashfed_match_queries_total{type=\"pdq\"} 2",
            "hashfed_match_queries_total{type=\"md5\"} 1",
            "hashfed_match_queries_total{type=\"image\"} 0",
            "hashfed_match_hits_total{type=\"pdq\"} 1",
            "hashfed_match_hits_total{type=\"md5\"} 1",
            "hashfed_match_errors_total{type=\"sha256\",reason=\"invalid_argument\"} 1",
            "hashfed_match_errors_total{type=\"pdq\",reason=\"low_quality\"} 2",
            "hashfed_match_errors_total{type=\"pdq\",reason=\"internal\"} 0",
            "# TYPE hashfed_feedback_total counter",
            "hashfed_feedback_total{verdict=\"confirmed\"} 1",
            "hashfed_feedback_total{verdict=\"false_positive\"} 2",
            "# TYPE hashfed_entries gauge",
            "hashfed_entries{type=\"pdq\"} 1234",
            "hashfed_entries{type=\"opaque\"} 0",
            "hashfed_sets 7",
            "# TYPE hashfed_up_seconds gauge",
        ] {
            assert!(has_line(&text, line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("hashfed_entries{type=\"image\"}"));
        assert!(text.lines().any(|l| l.starts_with("hashfed_up_seconds ")));
        #[cfg(target_os = "linux")]
        assert!(text
            .lines()
            .any(|l| l.starts_with("hashfed_resident_memory_bytes ") && !l.ends_with(" 0")));
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::new(&[]);
        m.query(Kind::Pdq, Duration::from_micros(25), false); // le 0.000025 (inclusive)
        m.query(Kind::Pdq, Duration::from_micros(30), true); // le 0.00005
        m.query(Kind::Pdq, Duration::from_millis(2), false); // le 0.0025
        m.query(Kind::Pdq, Duration::from_secs(5), false); // +Inf
        let text = m.render();
        let expected = [
            ("0.000025", 1),
            ("0.00005", 2),
            ("0.0001", 2),
            ("0.00025", 2),
            ("0.0005", 2),
            ("0.001", 2),
            ("0.0025", 3),
            ("0.005", 3),
            ("0.01", 3),
            ("0.025", 3),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 3),
            ("1", 3),
            ("+Inf", 4),
        ];
        let buckets: Vec<&str> = lines(&text)
            .into_iter()
            .filter(|l| l.starts_with("hashfed_match_latency_seconds_bucket{type=\"pdq\""))
            .collect();
        assert_eq!(buckets.len(), expected.len());
        for (line, (le, n)) in buckets.iter().zip(expected) {
            assert_eq!(
                *line,
                format!("hashfed_match_latency_seconds_bucket{{type=\"pdq\",le=\"{le}\"}} {n}")
            );
        }
        // 25us + 30us + 2ms + 5s
        assert!(has_line(
            &text,
            "hashfed_match_latency_seconds_sum{type=\"pdq\"} 5.002055"
        ));
        assert!(has_line(
            &text,
            "hashfed_match_latency_seconds_count{type=\"pdq\"} 4"
        ));
        assert!(has_line(
            &text,
            "hashfed_match_latency_seconds_bucket{type=\"md5\",le=\"+Inf\"} 0"
        ));
        assert!(has_line(
            &text,
            "hashfed_match_latency_seconds_sum{type=\"md5\"} 0"
        ));
        assert!(has_line(
            &text,
            "# TYPE hashfed_match_latency_seconds histogram"
        ));
    }

    #[test]
    fn inf_bucket_equals_count_everywhere() {
        let m = Metrics::new(&["A", "B"]);
        for (i, kind) in Kind::ALL.iter().enumerate() {
            for j in 0..=i {
                m.query(*kind, Duration::from_micros(7u64.pow(j as u32)), j % 2 == 0);
            }
        }
        m.rpc("A", tonic::Code::Ok, Duration::from_millis(3));
        m.rpc("B", tonic::Code::Internal, Duration::from_secs(2));
        let text = m.render();
        let mut checked = 0;
        for line in text.lines() {
            let Some(rest) = line.split_once("_count") else {
                continue;
            };
            if line.starts_with('#') {
                continue;
            }
            let (name, tail) = rest;
            let (labels, count) = tail.rsplit_once(' ').unwrap();
            let inf = if labels.is_empty() {
                format!("{name}_bucket{{le=\"+Inf\"}} {count}")
            } else {
                let inner = labels.trim_start_matches('{').trim_end_matches('}');
                format!("{name}_bucket{{{inner},le=\"+Inf\"}} {count}")
            };
            assert!(has_line(&text, &inf), "no {inf:?}");
            checked += 1;
        }
        // 7 kinds, A, B and other.
        assert_eq!(checked, 10);
    }

    #[test]
    fn rpc_codes_and_unknown_method() {
        let m = Metrics::new(&["MatchHashes", "MatchImage", "MatchHashes"]);
        m.rpc("MatchHashes", tonic::Code::Ok, Duration::from_micros(80));
        m.rpc("MatchHashes", tonic::Code::Ok, Duration::from_micros(90));
        m.rpc(
            "MatchHashes",
            tonic::Code::InvalidArgument,
            Duration::from_micros(10),
        );
        m.rpc("Nope", tonic::Code::Unimplemented, Duration::from_micros(1));
        m.rpc_result::<()>(
            "Other2",
            Instant::now(),
            &Err(tonic::Status::cancelled("gone")),
        );
        m.rpc_result("MatchImage", Instant::now(), &Ok(()));
        let text = m.render();
        for line in [
            "# TYPE hashfed_rpc_requests_total counter",
            "hashfed_rpc_requests_total{method=\"MatchHashes\",code=\"OK\"} 2",
            "hashfed_rpc_requests_total{method=\"MatchHashes\",code=\"InvalidArgument\"} 1",
            "hashfed_rpc_requests_total{method=\"MatchImage\",code=\"OK\"} 1",
            "hashfed_rpc_requests_total{method=\"other\",code=\"Unimplemented\"} 1",
            "hashfed_rpc_requests_total{method=\"other\",code=\"Canceled\"} 1",
            "hashfed_rpc_latency_seconds_bucket{method=\"MatchHashes\",le=\"0.0001\"} 3",
            "hashfed_rpc_latency_seconds_count{method=\"MatchHashes\"} 3",
            "hashfed_rpc_latency_seconds_sum{method=\"MatchHashes\"} 0.00018",
            "hashfed_rpc_latency_seconds_count{method=\"other\"} 2",
        ] {
            assert!(has_line(&text, line), "missing {line:?} in\n{text}");
        }
        // Zero counters are not exported; duplicates registered once.
        assert!(!text.contains("code=\"NotFound\""));
        assert!(!text.contains("method=\"Nope\""));
        assert_eq!(
            text.matches("hashfed_rpc_latency_seconds_count{method=\"MatchHashes\"}")
                .count(),
            1
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new(&["we\"ird\\na\nme"]);
        m.rpc("we\"ird\\na\nme", tonic::Code::Ok, Duration::ZERO);
        let text = m.render();
        assert!(
            has_line(
                &text,
                r#"hashfed_rpc_requests_total{method="we\"ird\\na\nme",code="OK"} 1"#
            ),
            "{text}"
        );
        assert_eq!(escape_label_value("plain"), "plain");
        assert_eq!(escape_label_value("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
        assert_eq!(escape_help("x\\y\nz"), r"x\\y\nz");
    }

    #[test]
    fn every_line_is_well_formed() {
        let m = Metrics::new(&["MatchHashes"]);
        m.query(Kind::Opaque, Duration::from_millis(1), true);
        m.rpc("MatchHashes", tonic::Code::Ok, Duration::from_millis(1));
        let text = m.render();
        assert!(text.ends_with('\n'));
        let mut types = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(types.insert(name.to_string()), "{name} typed twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line:?}");
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad name in {line:?}"
            );
            assert!(
                types.iter().any(|t| name.starts_with(t.as_str())),
                "{name} has no TYPE before it"
            );
        }
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_500_000), "0.0015");
        assert_eq!(seconds(2_000_000_000), "2");
        assert_eq!(seconds(1), "0.000000001");
        assert_eq!(seconds(12_340_000_000), "12.34");
    }

    #[test]
    fn kinds_and_codes() {
        assert_eq!(
            Kind::from(&SignalType::Opaque("photodna".into())),
            Kind::Opaque
        );
        assert_eq!(Kind::from(&SignalType::Sha1), Kind::Sha1);
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
        assert_eq!(CODE_LABELS[code_index(tonic::Code::Ok)], "OK");
        assert_eq!(
            CODE_LABELS[code_index(tonic::Code::Unauthenticated)],
            "Unauthenticated"
        );
        assert_eq!(CODE_LABELS[code_index(tonic::Code::Internal)], "Internal");
        // A huge duration is clamped instead of wrapping the sum.
        let m = Metrics::new(&[]);
        m.query(Kind::Md5, Duration::MAX, false);
        m.query(Kind::Md5, Duration::MAX, false);
        assert!(has_line(
            &m.render(),
            "hashfed_match_latency_seconds_sum{type=\"md5\"} 172800"
        ));
    }
}
