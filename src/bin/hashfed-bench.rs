//! `hashfed-bench`: the project's benchmark driver.
//!
//! `hashfed-bench index --n 10000000 --data uniform` builds a PDQ index from
//! seeded codes and reports, per radius: mean and p99 latency of one query
//! per call, queries per second on one core and on all cores, which strategy
//! the index chose, plus build time and resident memory. `--write DIR` also
//! writes the codes and queries (raw little-endian 32-byte codes) so that
//! `benches/reference/faiss_index.py` can run FAISS on exactly the same data.
//!
//! `hashfed-bench store --n 10000000 --dir DIR` fills a sled store in DIR
//! with the same seeded codes (through the store's atomic batches, as an
//! import does; skipped if DIR already holds them), then times opening it
//! with its index rebuilt, the resident memory after, and radius-31 queries
//! through the full match API (index, then store reads for the hits).
//!
//! `hashfed-bench grpc [--n N] [--secs S] [--concurrency C]` loads a node
//! with N PDQ and N/10 SHA-256 entries, runs `hashfed serve` on it in a
//! separate process and drives its match service over mutual TLS: calls
//! and lookups per second and per-call latency percentiles for single,
//! batched and streamed PDQ and exact lookups, plus the server's resident
//! memory (see `hashfed_bench/grpc.rs`).
//!
//! `hashfed-bench soak [--n N] [--secs S]` runs an origin and a provider
//! as `hashfed serve` processes under matches, feedback, imports,
//! retractions, syncs and operator calls at once, sampling memory and file
//! descriptors (see `hashfed_bench/soak.rs`).
//!
//! `hashfed-bench records [--n N]` writes N match records as a busy match
//! service would and reports memory, disk and the cost of counting,
//! feedback and expiry (see `hashfed_bench/records.rs`).
//!
//! `hashfed-bench exchange [--n N] [--dir DIR] [--keep]` has a node pull N
//! entries from a local stand-in of NCMEC's Hash Sharing API over loopback
//! HTTPS (entries per second, memory at every tenth), beside a file import
//! of the same list (see `hashfed_bench/exchange.rs`).
//!
//! `hashfed-bench federation [--n N] [--dir DIR] [--keep]` runs two nodes
//! in-process over loopback mutual TLS: initial sync of N entries (entries
//! per second, memory), then publish → matchable and retract → unmatched
//! latency percentiles (see `hashfed_bench/federation.rs`).

use std::io::Write;
use std::time::Instant;

use hashfed::index::pdq::{PdqIndex, Strategy};
use rayon::prelude::*;

#[path = "hashfed_bench/exchange.rs"]
mod exchange;
#[path = "hashfed_bench/federation.rs"]
mod federation;
#[path = "hashfed_bench/grpc.rs"]
mod grpc;
#[path = "hashfed_bench/records.rs"]
mod records;
#[path = "hashfed_bench/soak.rs"]
mod soak;

struct Args {
    mode: String,
    dir: Option<String>,
    cache_mb: u64,
    n: usize,
    queries: usize,
    radii: Vec<u32>,
    data: String,
    seed: u64,
    write: Option<String>,
    secs: u64,
    concurrency: usize,
    radius: u32,
    server_bin: Option<String>,
    /// grpc: run only the phases whose names start with this.
    only: Option<String>,
    /// federation: keep the node directories.
    keep: bool,
    /// records: match records per call.
    per_call: usize,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mode: String::new(),
        dir: None,
        cache_mb: 64,
        n: 1_000_000,
        queries: 2_000,
        radii: vec![16, 31, 48, 64],
        data: "uniform".into(),
        seed: 1,
        write: None,
        secs: 10,
        concurrency: 8,
        radius: 31,
        server_bin: None,
        only: None,
        keep: false,
        per_call: 64,
    };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match raw.first().map(String::as_str) {
        Some(mode @ ("index" | "store" | "grpc" | "federation" | "soak" | "records" | "exchange")) => args.mode = mode.to_owned(),
        _ => return Err("usage: hashfed-bench index [--n N] [--queries Q] [--radii 16,31,48,64] [--data uniform|clustered] [--seed S] [--write DIR]\n       hashfed-bench store --dir DIR [--n N] [--queries Q] [--data uniform|clustered] [--seed S] [--cache-mb MB]\n       hashfed-bench grpc [--n N] [--dir DIR] [--secs S] [--concurrency C] [--radius R] [--seed S] [--server-bin PATH] [--only PHASE-PREFIX]\n       hashfed-bench federation [--n N] [--dir DIR] [--keep] [--seed S] [--only publish|replay]\n       hashfed-bench soak [--n N] [--secs S] [--dir DIR] [--seed S] [--server-bin PATH]\n       hashfed-bench records [--n N] [--dir DIR] [--per-call K]\n       hashfed-bench exchange [--n N] [--dir DIR] [--keep] [--only fetch|import]".into()),
    }
    let mut it = raw.iter().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            args.keep = true;
            continue;
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--n" => args.n = value.replace('_', "").parse().map_err(|e| bad(&e))?,
            "--queries" => args.queries = value.parse().map_err(|e| bad(&e))?,
            "--radii" => {
                args.radii = value
                    .split(',')
                    .map(|r| r.parse())
                    .collect::<Result<_, _>>()
                    .map_err(|e| bad(&e))?
            }
            "--data" if value == "uniform" || value == "clustered" => args.data = value.clone(),
            "--seed" => args.seed = value.parse().map_err(|e| bad(&e))?,
            "--write" => args.write = Some(value.clone()),
            "--dir" => args.dir = Some(value.clone()),
            "--cache-mb" => args.cache_mb = value.parse().map_err(|e| bad(&e))?,
            "--secs" => args.secs = value.parse().map_err(|e| bad(&e))?,
            "--concurrency" => args.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--radius" => args.radius = value.parse().map_err(|e| bad(&e))?,
            "--server-bin" => args.server_bin = Some(value.clone()),
            "--only" => args.only = Some(value.clone()),
            "--per-call" => args.per_call = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown option {flag} {value}")),
        }
    }
    Ok(args)
}

/// xorshift64*: fast, seeded, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn code(&mut self) -> [u64; 4] {
        [self.next(), self.next(), self.next(), self.next()]
    }
    fn flip(&mut self, mut code: [u64; 4], bits: u32) -> [u64; 4] {
        for _ in 0..bits {
            let b = self.next() % 256;
            code[(b / 64) as usize] ^= 1 << (b % 64);
        }
        code
    }
}

/// Uniform random codes, or clusters: 1 centre per 100 codes, members within
/// up to 32 flipped bits (near-duplicates, as real lists hold).
fn generate(args: &Args) -> (Vec<[u64; 4]>, Vec<[u64; 4]>) {
    let mut rng = Rng(args.seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let codes: Vec<[u64; 4]> = if args.data == "clustered" {
        let centres: Vec<[u64; 4]> = (0..(args.n / 100).max(1)).map(|_| rng.code()).collect();
        (0..args.n)
            .map(|_| {
                let c = centres[(rng.next() % centres.len() as u64) as usize];
                let k = (rng.next() % 33) as u32;
                rng.flip(c, k)
            })
            .collect()
    } else {
        (0..args.n).map(|_| rng.code()).collect()
    };
    // Half the queries are near a stored code (a re-upload, edited), half
    // are unrelated (the common case for a provider: no match).
    let queries = (0..args.queries)
        .map(|i| {
            if i % 2 == 0 && !codes.is_empty() {
                let c = codes[(rng.next() % codes.len() as u64) as usize];
                let k = (rng.next() % 24) as u32;
                rng.flip(c, k)
            } else {
                rng.code()
            }
        })
        .collect();
    (codes, queries)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn write_codes(path: &str, codes: &[[u64; 4]]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for c in codes {
        // FAISS binary codes are bytes; bit order does not matter for
        // Hamming distance as long as both sides use the same one.
        for w in c {
            f.write_all(&w.to_le_bytes())?;
        }
    }
    f.flush()
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hashfed-bench: {e}");
            std::process::exit(2);
        }
    };
    if args.mode == "exchange" {
        if let Err(e) = exchange::run(&args) {
            eprintln!("hashfed-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.mode == "records" {
        if let Err(e) = records::run(&args) {
            eprintln!("hashfed-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let (codes, queries) = generate(&args);
    if args.mode == "federation" {
        if let Err(e) = federation::run(&args, &codes) {
            eprintln!("hashfed-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.mode == "soak" {
        if let Err(e) = soak::run(&args, &codes) {
            eprintln!("hashfed-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.mode == "grpc" {
        if let Err(e) = grpc::run(&args, &codes) {
            eprintln!("hashfed-bench: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.mode == "store" {
        if let Err(e) = store_bench(&args, &codes, &queries) {
            eprintln!("hashfed-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(dir) = &args.write {
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| write_codes(&format!("{dir}/codes.bin"), &codes))
            .and_then(|()| write_codes(&format!("{dir}/queries.bin"), &queries));
        if let Err(e) = written {
            eprintln!("hashfed-bench: writing {dir}: {e}");
            std::process::exit(1);
        }
    }
    let rss_before = rss_bytes();
    let start = Instant::now();
    let mut index = PdqIndex::with_expected_len(codes.len());
    for (slot, code) in codes.iter().enumerate() {
        index.insert(slot as u32, *code);
    }
    let build = start.elapsed().as_secs_f64();
    let rss_index = rss_bytes().saturating_sub(rss_before);
    println!(
        "{{\"impl\":\"hashfed\",\"what\":\"build\",\"n\":{},\"data\":\"{}\",\"substrings\":{},\"build_s\":{build:.2},\"rss_bytes\":{rss_index},\"bytes_per_entry\":{:.1},\"index_bytes_per_entry\":{:.1}}}",
        codes.len(),
        args.data,
        index.substrings(),
        rss_index as f64 / codes.len().max(1) as f64,
        index.memory_bytes() as f64 / codes.len().max(1) as f64,
    );
    for &radius in &args.radii {
        let strategy = index.strategy(radius);
        let mut lat: Vec<f64> = Vec::with_capacity(queries.len());
        let mut hits = 0usize;
        let t = Instant::now();
        for q in &queries {
            let s = Instant::now();
            hits += index.search(q, radius).len();
            lat.push(s.elapsed().as_secs_f64() * 1e3);
        }
        let one_core_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let par_hits: usize = queries
            .par_iter()
            .map(|q| index.search(q, radius).len())
            .sum();
        let all_cores_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        assert_eq!(hits, par_hits);
        let t = Instant::now();
        let batch_hits: usize = index
            .search_batch(&queries, radius)
            .iter()
            .map(Vec::len)
            .sum();
        let batch_qps = queries.len() as f64 / t.elapsed().as_secs_f64();
        assert_eq!(hits, batch_hits);
        let (mean, p99) = summarise(&mut lat);
        println!(
            "{{\"impl\":\"hashfed\",\"what\":\"query\",\"n\":{},\"data\":\"{}\",\"radius\":{radius},\"strategy\":\"{}\",\"mean_ms\":{mean:.4},\"p99_ms\":{p99:.4},\"qps_1core\":{one_core_qps:.0},\"qps_all_cores\":{all_cores_qps:.0},\"qps_batch\":{batch_qps:.0},\"threads\":{},\"hits\":{hits}}}",
            codes.len(),
            args.data,
            if strategy == Strategy::MultiIndex { "mih" } else { "scan" },
            rayon::current_num_threads(),
        );
    }
}

/// Percentile summary of latencies in milliseconds: (mean, p99).
fn summarise(lat: &mut [f64]) -> (f64, f64) {
    lat.sort_by(f64::total_cmp);
    let mean = lat.iter().sum::<f64>() / lat.len().max(1) as f64;
    let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or(0.0);
    (mean, p99)
}

fn store_bench(
    args: &Args,
    codes: &[[u64; 4]],
    queries: &[[u64; 4]],
) -> Result<(), Box<dyn std::error::Error>> {
    use hashfed::database::{Database, PdqQuery};
    use hashfed::model::{EntryData, SetId, SetInfo, Signal};
    use hashfed::signal::pdq::PdqHash;
    use hashfed::store::{Change, Store, StoreOptions};

    let dir = std::path::PathBuf::from(args.dir.as_deref().ok_or("store needs --dir DIR")?);
    let set = SetId::new("bench", &format!("{}-{}-{}", args.data, args.n, args.seed))?;
    let options = StoreOptions {
        cache_bytes: args.cache_mb << 20,
    };
    {
        let store = Store::open(&dir, &options)?;
        let have = store.set(&set).map_or(0, |s| s.head_seq);
        if have < codes.len() as u64 {
            store.create_set(
                SetInfo::new(set.clone()),
                0,
                hashfed::model::audit::unaudited,
            )?;
            let start = Instant::now();
            let mut next_report = 1_000_000;
            for (i, chunk) in codes
                .chunks(10_000)
                .enumerate()
                .skip(have as usize / 10_000)
            {
                let changes: Vec<Change> = chunk
                    .iter()
                    .map(|c| {
                        Change::Add(EntryData {
                            signal: Signal::pdq(PdqHash::from_words(*c)),
                            labels: vec!["bench".into()],
                            external_id: None,
                            vetting: vec![],
                        })
                    })
                    .collect();
                store.append(&set, &changes, 0, hashfed::model::audit::unaudited)?;
                if (i + 1) * 10_000 >= next_report {
                    eprintln!("hashfed-bench: {} entries written", (i + 1) * 10_000);
                    next_report += 1_000_000;
                }
            }
            store.flush()?;
            let secs = start.elapsed().as_secs_f64();
            println!(
                "{{\"impl\":\"hashfed\",\"what\":\"store-write\",\"n\":{},\"data\":\"{}\",\"write_s\":{secs:.1},\"entries_per_s\":{:.0},\"disk_bytes\":{}}}",
                codes.len(),
                args.data,
                (codes.len() as u64 - have) as f64 / secs,
                store.stats()?.disk_bytes,
            );
        }
    }
    let rss_before = rss_bytes();
    let start = Instant::now();
    let db = Database::open(&dir, &options)?;
    let first_open_s = start.elapsed().as_secs_f64();
    let first_source = db.index_source();
    let start = Instant::now();
    db.close()?;
    let close_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let db = Database::open(&dir, &options)?;
    let open_s = start.elapsed().as_secs_f64();
    let rss = rss_bytes().saturating_sub(rss_before);
    println!(
        "{{\"impl\":\"hashfed\",\"what\":\"store-reopen\",\"first_open_s\":{first_open_s:.2},\"first_source\":\"{first_source:?}\",\"close_s\":{close_s:.2},\"open_s\":{open_s:.2},\"source\":\"{:?}\"}}",
        db.index_source()
    );
    let pdq = db.indexes().pdq.len();
    let mut lat = Vec::with_capacity(queries.len());
    let mut hits = 0;
    for q in queries {
        let hash = [PdqHash::from_words(*q)];
        let mut query = PdqQuery::new(&hash);
        query.radius = Some(31);
        let s = Instant::now();
        hits += db.match_pdq(&query)?.len();
        lat.push(s.elapsed().as_secs_f64() * 1e3);
    }
    let (mean, p99) = summarise(&mut lat);
    println!(
        "{{\"impl\":\"hashfed\",\"what\":\"store-open\",\"n\":{pdq},\"data\":\"{}\",\"open_s\":{open_s:.2},\"rss_bytes\":{rss},\"bytes_per_entry\":{:.1},\"match_r31_mean_ms\":{mean:.4},\"match_r31_p99_ms\":{p99:.4},\"hits\":{hits}}}",
        args.data,
        rss as f64 / pdq.max(1) as f64,
    );
    Ok(())
}
