//! `hashfed-bench records [--n N] [--dir DIR] [--per-call K]`: the cost of
//! keeping match records. Writes N records (K per call, default 64, as a
//! busy match service's batched calls do) through
//! [`Database::record_matches`] into a fresh store, sampling the process's
//! resident memory as it goes; then counts them, gives feedback on a
//! sample by id, reports the store's size on disk, and expires them all.
//!
//! A provider that answers many hits writes one record per hit, so memory
//! that grows per record shows up here long before a soak run sees it.

use std::time::Instant;

use hashfed::database::Database;
use hashfed::model::{EntryId, SetId};
use hashfed::store::matches::{Feedback, MatchRecord, Verdict};
use hashfed::store::StoreOptions;

use super::federation::{mib, rss, splitmix64};
use super::grpc::RemoveDir;
use super::Args;

pub fn run(args: &Args) -> anyhow::Result<()> {
    let dir = match &args.dir {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("hashfed-bench-records-{}", std::process::id())),
    };
    let _cleanup = args.dir.is_none().then(|| RemoveDir(dir.clone()));
    let db = Database::open(&dir, &StoreOptions::default())?;
    let set = SetId::new("hotline-a", "csam")?;
    let (rss0, _) = rss();
    println!(
        "records: n {}, {} per call, VmRSS at open {:.1} MiB",
        args.n,
        args.per_call.max(1),
        mib(rss0)
    );
    let started = Instant::now();
    let mut sample = Vec::new();
    let step = (args.n / 10).max(1);
    let mut written = 0usize;
    let mut next_report = step;
    let now = hashfed::database::now_ms();
    while written < args.n {
        let take = args.per_call.max(1).min(args.n - written);
        let records: Vec<MatchRecord> = (written..written + take)
            .map(|i| MatchRecord {
                entry: entry_id(i as u64 % 100_000),
                set: set.clone(),
                signal_type: "pdq".into(),
                distance: (i % 32) as u32,
                time_ms: now + i as u64 / 1000,
                client: "3f4a9c0e1b2d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f".into(),
                feedback: None,
            })
            .collect();
        let ids = db.record_matches(records)?;
        if written % 1000 == 0 {
            sample.push(ids[0]);
        }
        written += take;
        if written >= next_report {
            let (now_rss, _) = rss();
            println!(
                "  {written:>10} records  {:>7.1} s  VmRSS {:>7.1} MiB  (+{:.0} B/record)",
                started.elapsed().as_secs_f64(),
                mib(now_rss),
                (now_rss.saturating_sub(rss0)) as f64 / written as f64
            );
            next_report += step;
        }
    }
    let t = Instant::now();
    let counts = db.match_counts()?;
    let count_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        counts.matches == args.n as u64,
        "counted {} of {}",
        counts.matches,
        args.n
    );
    let write_s = started.elapsed().as_secs_f64() - count_s;
    let t = Instant::now();
    for id in &sample {
        db.give_feedback(
            id,
            Feedback {
                verdict: Verdict::Confirmed,
                reason: "reviewed".into(),
                time_ms: now,
            },
        )?;
    }
    let feedback_ms = t.elapsed().as_secs_f64() * 1000.0 / sample.len().max(1) as f64;
    db.store().flush()?;
    let disk = dir_size(&dir);
    let (after, hwm) = rss();
    println!(
        "written {} records in {write_s:.2} s ({:.0}/s); counted in {count_s:.2} s; feedback by id {feedback_ms:.3} ms each ({} given); VmRSS {:.1} MiB (+{:.0} B/record), VmHWM {:.1} MiB; disk {:.1} MiB ({:.0} B/record)",
        args.n,
        args.n as f64 / write_s,
        sample.len(),
        mib(after),
        (after.saturating_sub(rss0)) as f64 / args.n as f64,
        mib(hwm),
        mib(disk),
        disk as f64 / args.n as f64
    );
    let t = Instant::now();
    let expired = db.store().expire_matches(u64::MAX)?;
    println!(
        "expired {expired} records in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A stand-in entry id (records never look the entry up).
fn entry_id(i: u64) -> EntryId {
    let mut id = [0; 16];
    id[..8].copy_from_slice(&splitmix64(i).to_le_bytes());
    id[8..].copy_from_slice(&splitmix64(!i).to_le_bytes());
    EntryId(id)
}

fn dir_size(dir: &std::path::Path) -> u64 {
    walk(dir).unwrap_or(0)
}

fn walk(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
