//! `hashfed-bench exchange [--n N] [--dir DIR] [--keep] [--only fetch|import]`:
//! a node keeping itself current from a live exchange, timed.
//!
//! A local stand-in of NCMEC's Hash Sharing v2 API
//! (`hashfed::exchange::standin`, real HTTPS and HTTP/1.1 on loopback,
//! NCMEC's XML in pages of 1,000 entries) lists `--n` entries, each with
//! an MD5 and a PDQ fingerprint (two records for the node). Then:
//!
//! - `fetch`: a node (`init`ed directory, real sled store, served in this
//!   process) with the exchange in its `hashfed.toml` pulls the whole
//!   list on its own schedule, page by page, each page written with its
//!   cursor in one batch as the node always does. Timed from the node's
//!   start until its exchange state says caught up; NCMEC entries per
//!   second against the target of 50,000/s, and the resident
//!   memory at every tenth of the list (whether it grows beyond what the
//!   stored entries and their index need: the pages themselves must not
//!   accumulate).
//! - `import` (the yardstick, same run): the same list written as one
//!   NCMEC XML file and imported into a second node with the file
//!   importer, which shares the parser and the store's write path but has
//!   no HTTP, TLS or paging. The ratio says what fetching costs over
//!   reading a file.
//!
//! `--only` runs one of the two (each phase's resident memory is then its
//! own, not what the other left in the allocator).
//!
//! The stand-in shares the process (and the two cores) with the node, so
//! the figure includes rendering the pages too.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hashfed::exchange::standin::NcmecStandIn;
use hashfed::import::Format;
use hashfed::model::SetId;
use hashfed::ops::{Actor, ImportRequest};

use crate::federation::{mib, rss, Cleanup, Running};
use crate::Args;

/// NCMEC's page size.
const PAGE: usize = 1000;
/// The target: NCMEC entries fetched and stored per second.
const TARGET_PER_S: f64 = 50_000.0;
/// Longest a fetch may take before the run gives up.
const GIVE_UP: Duration = Duration::from_secs(30 * 60);

/// Runs the mode; see the module documentation.
pub fn run(args: &Args) -> anyhow::Result<()> {
    crate::federation::log_warnings();
    let base = match &args.dir {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("hashfed-bench-exchange-{}", std::process::id())),
    };
    for n in ["fetch", "import", "list.xml"] {
        if base.join(n).exists() {
            bail!(
                "{} exists: use another --dir (this mode starts from empty nodes)",
                base.join(n).display()
            );
        }
    }
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let _cleanup = Cleanup {
        paths: ["fetch", "import", "list.xml"]
            .iter()
            .map(|n| base.join(n))
            .collect(),
        keep: args.keep,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let want = |phase: &str| {
        args.only
            .as_ref()
            .is_none_or(|p| phase.starts_with(p.as_str()))
    };
    runtime.block_on(bench(args.n as u64, &base, want("fetch"), want("import")))
}

async fn bench(n: u64, base: &std::path::Path, fetch: bool, import: bool) -> anyhow::Result<()> {
    let api = NcmecStandIn::start("bench", "bench password", PAGE).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let t = Instant::now();
    api.list_synthetic(n, now - 3600);
    let (listed_rss, _) = rss();
    println!(
        "stand-in: {n} NCMEC entries (MD5 + PDQ each) listed in {:.1} s at {}; pages of {PAGE}; VmRSS {:.1} MiB",
        t.elapsed().as_secs_f64(),
        api.endpoint(),
        mib(listed_rss)
    );

    let fetched = if fetch {
        Some(fetch_phase(&api, n, base, listed_rss).await?)
    } else {
        None
    };
    let imported = if import {
        Some(import_phase(&api, n, base).await?)
    } else {
        None
    };
    api.stop().await;
    match (fetched, imported) {
        (Some((fetch_s, fetch_added)), Some((import_s, import_added))) => {
            if import_added != fetch_added {
                bail!("the import added {import_added} records, the fetch {fetch_added}");
            }
            println!(
                "fetch / import: {:.2}x the file importer's rate, same run",
                import_s / fetch_s
            );
        }
        _ => println!("(--only: one phase; run both for the ratio)"),
    }
    Ok(())
}

/// The node pulls the whole list on its schedule: seconds taken and
/// records added.
async fn fetch_phase(
    api: &NcmecStandIn,
    n: u64,
    base: &std::path::Path,
    listed_rss: u64,
) -> anyhow::Result<(f64, u64)> {
    let dir = base.join("fetch");
    let records = 2 * n;
    let t = Instant::now();
    let mut node = Running::start_with(&dir, "fetch", |config| {
        config
            .exchanges
            .push(api.configure(&dir, "ncmec", "fetch/ncmec")?);
        Ok(())
    })
    .await?;
    let mut marks = Vec::new();
    let mut next_mark = 1;
    let state = loop {
        let state = node.node().ops().exchange_state("ncmec")?;
        while next_mark <= 10 && state.added * 10 >= records * next_mark {
            marks.push((next_mark, t.elapsed(), state.added, rss().0));
            next_mark += 1;
        }
        if state.caught_up_ms > 0 && state.added >= records {
            break state;
        }
        if t.elapsed() > GIVE_UP {
            bail!("the fetch did not finish within {GIVE_UP:?}: {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let fetch_s = t.elapsed().as_secs_f64();
    let (fetch_rss, fetch_hwm) = rss();
    println!(
        "fetch: {n} entries ({} records) in {} pages, {fetch_s:.2} s: {:.0} NCMEC entries/s ({:.0} records/s), target {TARGET_PER_S:.0}/s: {:.2}x; skipped {}, failures {}",
        state.added,
        state.pages,
        n as f64 / fetch_s,
        records as f64 / fetch_s,
        n as f64 / fetch_s / TARGET_PER_S,
        state.skipped,
        state.failures,
    );
    let mut last = (Duration::ZERO, 0u64, listed_rss);
    for (tenth, at, added, rss_now) in &marks {
        let (dt, dr) = (
            (*at - last.0).as_secs_f64(),
            added.saturating_sub(last.1) as f64,
        );
        println!(
            "  {:>3}%  {:>7.2} s  {:>9} records  {:>8.0} records/s  VmRSS {:>7.1} MiB  (+{:.0} B/record since the list)",
            tenth * 10,
            at.as_secs_f64(),
            added,
            if dt > 0.0 { dr / dt } else { 0.0 },
            mib(*rss_now),
            rss_now.saturating_sub(listed_rss) as f64 / (*added).max(1) as f64
        );
        last = (*at, *added, *rss_now);
    }
    println!(
        "  VmRSS after {:.1} MiB, peak {:.1} MiB (+{:.0} B/record over the stand-in's)",
        mib(fetch_rss),
        mib(fetch_hwm),
        fetch_rss.saturating_sub(listed_rss) as f64 / records.max(1) as f64
    );
    node.stop().await?;
    node.close("fetch")?;
    Ok((fetch_s, state.added))
}

/// The same list as one file, imported into a second node: seconds
/// taken and records added.
async fn import_phase(
    api: &NcmecStandIn,
    n: u64,
    base: &std::path::Path,
) -> anyhow::Result<(f64, u64)> {
    let records = 2 * n;
    let file = base.join("list.xml");
    let t = Instant::now();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        api.write_document(&mut out)?;
        std::io::Write::flush(&mut out)?;
    }
    let size = std::fs::metadata(&file)?.len();
    println!(
        "import: the same list as one NCMEC XML file ({:.1} MiB) written in {:.1} s",
        mib(size),
        t.elapsed().as_secs_f64()
    );
    let dir = base.join("import");
    let mut node = Running::start(&dir, "import").await?;
    let ops = node.node().ops().clone();
    let (before, _) = rss();
    let t = Instant::now();
    let summary = tokio::task::spawn_blocking(move || {
        let request = ImportRequest {
            set: "import/ncmec".parse::<SetId>()?,
            format: Some(Format::NcmecXml),
            file_name: "list.xml".into(),
            reason: String::new(),
        };
        let input = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
        anyhow::Ok(ops.import(&Actor::new("bench"), &request, input, |_| {})?)
    })
    .await??;
    let import_s = t.elapsed().as_secs_f64();
    let (after, _) = rss();
    println!(
        "import: {} records in {import_s:.2} s: {:.0} NCMEC entries/s ({:.0} records/s); VmRSS +{:.1} MiB",
        summary.added,
        n as f64 / import_s,
        records as f64 / import_s,
        mib(after.saturating_sub(before)),
    );
    node.stop().await?;
    node.close("import")?;
    Ok((import_s, summary.added))
}
