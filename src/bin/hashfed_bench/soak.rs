//! `hashfed-bench soak [--secs S] [--n N]`: two `hashfed serve` processes,
//! an origin (`bench`, N PDQ entries) and a provider syncing from it, under
//! everything at once for S seconds: batched match calls on the provider
//! (half hits), feedback on some hits travelling back to the origin,
//! imports and retractions on the origin syncing over, and operator calls
//! (audit, stats, peers, a set suppressed and lifted) on both.
//!
//! Every ten seconds (or S/60, at least one) it samples each server's
//! resident memory and open file descriptors. It reports the curve, the
//! errors (there must be none), the growth of memory and descriptors after
//! the warm-up (the first fifth of the run), and whether the provider
//! ended equal to the origin.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hashfed::model::{EntryId, SetId, Signal};
use hashfed::signal::pdq::PdqHash;
use hashfed::wire::proto::{self, admin_client::AdminClient, match_client::MatchClient};
use serde_json::json;
use tonic::transport::Channel;

use super::grpc::{
    init_node, match_endpoint, prepare, server_bin, sha_values, RemoveDir, Server, PDQ_SET, SHA_SET,
};
use crate::{Args, Rng};

/// Queries per match call.
const BATCH: usize = 64;

/// Counters the workers share.
#[derive(Default)]
struct Counts {
    match_calls: AtomicU64,
    hits: AtomicU64,
    feedback: AtomicU64,
    imported: AtomicU64,
    retracted: AtomicU64,
    admin_calls: AtomicU64,
    errors: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Counts {
    fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(|p| p.into_inner());
        if first.len() < 10 {
            first.push(format!("{what}: {e}"));
        }
    }
}

/// One sample of both servers.
struct Sample {
    t: f64,
    rss: [u64; 2],
    fds: [usize; 2],
    match_calls: u64,
    errors: u64,
}

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

async fn admin(dir: &Path) -> anyhow::Result<AdminClient<Channel>> {
    let socket = hashfed::server::admin_socket(dir);
    let channel = hashfed::service::client::unix_channel(&socket)
        .await
        .with_context(|| format!("connecting to {}", socket.display()))?;
    Ok(AdminClient::new(channel))
}

/// Head of `set` on the node behind `admin`.
async fn head(admin: &mut AdminClient<Channel>, set: &str) -> anyhow::Result<(u64, String)> {
    let sets = admin
        .list_sets(proto::ListSetsRequest {})
        .await?
        .into_inner();
    Ok(sets
        .sets
        .into_iter()
        .find(|s| s.id == set)
        .map_or((0, String::new()), |s| (s.head_seq, s.head_digest)))
}

/// Runs the soak; see the module documentation.
pub fn run(args: &Args, codes: &[[u64; 4]]) -> anyhow::Result<()> {
    let bin = server_bin(args)?;
    let dir = match &args.dir {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("hashfed-bench-soak-{}", std::process::id())),
    };
    let _cleanup = args.dir.is_none().then(|| RemoveDir(dir.clone()));
    let (a_dir, b_dir) = (dir.join("a"), dir.join("b"));
    prepare(&a_dir, codes, &sha_values(args.seed, args.n / 10))?;
    init_node(&b_dir, "soak-b")?;
    let mut a = Server::spawn(&bin, &a_dir)?;
    let mut b = Server::spawn(&bin, &b_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the client runtime")?;
    let outcome = runtime.block_on(soak(args, codes, &a, &b, &a_dir, &b_dir));
    let clean = [a.stop()?, b.stop()?];
    outcome?;
    if clean != [true, true] {
        bail!("a server did not stop cleanly: {clean:?}");
    }
    println!("both servers stopped cleanly");
    Ok(())
}

async fn soak(
    args: &Args,
    codes: &[[u64; 4]],
    a: &Server,
    b: &Server,
    a_dir: &Path,
    b_dir: &Path,
) -> anyhow::Result<()> {
    let pdq_set = format!("bench/{PDQ_SET}");
    let sha_set = format!("bench/{SHA_SET}");
    let (mut admin_a, mut admin_b) = (admin(a_dir).await?, admin(b_dir).await?);
    let card = |dir: &Path, server: &Server| -> anyhow::Result<String> {
        let endpoint = server.federation.to_string();
        Ok(hashfed::peers::PeerCard::of_node(dir, &endpoint)?.to_toml()?)
    };
    admin_a
        .add_peer(proto::AddPeerRequest {
            card: card(b_dir, b)?,
            send: vec!["bench/*".into()],
            accept: vec![],
        })
        .await?;
    admin_b
        .add_peer(proto::AddPeerRequest {
            card: card(a_dir, a)?,
            send: vec![],
            accept: vec!["bench/*".into()],
        })
        .await?;
    let started = Instant::now();
    let origin = head(&mut admin_a, &pdq_set).await?;
    while head(&mut admin_b, &pdq_set).await? != origin {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the provider never synced the origin's set");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "hashfed-bench: provider synced {} entries in {:.1} s; soaking for {} s",
        origin.0,
        started.elapsed().as_secs_f64(),
        args.secs
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();

    // Matches (and some feedback) on the provider, over mTLS.
    let endpoint = match_endpoint(b_dir, "soak", &b.addr.to_string())?;
    let known = Arc::new(codes.to_vec());
    for worker in 0..2u64 {
        let channel = endpoint.clone().connect().await?;
        let (counts, stop, known) = (counts.clone(), stop.clone(), known.clone());
        let mut rng = Rng(args
            .seed
            .wrapping_add(worker + 1)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15));
        tasks.spawn(async move {
            let mut client = MatchClient::new(channel);
            let mut call = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let queries = (0..BATCH)
                    .map(|i| {
                        let code = if i % 2 == 0 && !known.is_empty() {
                            known[(rng.next() % known.len() as u64) as usize]
                        } else {
                            rng.code()
                        };
                        let hash = PdqHash::from_words(code);
                        proto::Query {
                            signal: Some(proto::Signal {
                                r#type: proto::SignalType::Pdq as i32,
                                value: hash.to_bytes().to_vec(),
                                opaque_type: String::new(),
                            }),
                            pdq_variants: vec![],
                            quality: Some(90),
                            radius: None,
                        }
                    })
                    .collect();
                call += 1;
                match client
                    .match_hashes(proto::MatchRequest { queries, tag: call })
                    .await
                {
                    Ok(answer) => {
                        counts.match_calls.fetch_add(1, Ordering::Relaxed);
                        let answer = answer.into_inner();
                        let hits: Vec<&proto::Hit> =
                            answer.results.iter().flat_map(|r| &r.hits).collect();
                        counts.hits.fetch_add(hits.len() as u64, Ordering::Relaxed);
                        if call % 100 == 0 {
                            if let Some(hit) = hits.first() {
                                let verdict = if call % 200 == 0 {
                                    proto::Verdict::Confirmed
                                } else {
                                    proto::Verdict::FalsePositive
                                };
                                match client
                                    .feedback(proto::FeedbackRequest {
                                        match_id: hit.match_id.clone(),
                                        verdict: verdict as i32,
                                        reason: proto::FeedbackReason::Reviewed as i32,
                                    })
                                    .await
                                {
                                    Ok(_) => {
                                        counts.feedback.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(e) => counts.error("feedback", e.message()),
                                }
                            }
                        }
                    }
                    Err(e) => counts.error("match", e.message()),
                }
            }
        });
    }

    // Imports and retractions on the origin, syncing to the provider.
    {
        let (counts, stop) = (counts.clone(), stop.clone());
        let mut admin_a = admin(a_dir).await?;
        let set: SetId = pdq_set.parse()?;
        let mut rng = Rng(args.seed.wrapping_mul(0xD1B5_4A32_D192_ED03) | 1);
        tasks.spawn(async move {
            let mut tick = 0u64;
            let mut fresh: Vec<PdqHash> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let batch: Vec<PdqHash> =
                    (0..20).map(|_| PdqHash::from_words(rng.code())).collect();
                let data: String = batch.iter().map(|h| format!("pdq {h}\n")).collect();
                let chunk = proto::ImportChunk {
                    set: set.to_string(),
                    format: "te-lines".into(),
                    data: data.into_bytes(),
                    ..Default::default()
                };
                match admin_a.import(tokio_stream::iter(vec![chunk])).await {
                    Ok(_) => {
                        counts.imported.fetch_add(20, Ordering::Relaxed);
                        fresh.extend(batch);
                    }
                    Err(e) => counts.error("import", e.message()),
                }
                if tick % 4 == 0 {
                    if let Some(hash) = fresh.pop() {
                        let id = EntryId::derive(&set, &Signal::pdq(hash));
                        match admin_a
                            .retract(proto::RetractRequest {
                                id: id.to_string(),
                                reason: "soak".into(),
                            })
                            .await
                        {
                            Ok(_) => {
                                counts.retracted.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => counts.error("retract", e.message()),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    // Operators on both nodes.
    for (dir, suppress) in [(a_dir.to_owned(), false), (b_dir.to_owned(), true)] {
        let (counts, stop) = (counts.clone(), stop.clone());
        let mut admin = admin(&dir).await?;
        let sha_set = sha_set.clone();
        tasks.spawn(async move {
            let mut tick = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick += 1;
                let calls = [
                    admin
                        .list_audit(proto::ListAuditRequest {
                            after_seq: 0,
                            limit: 10,
                        })
                        .await
                        .map(drop),
                    admin.stats(proto::StatsRequest {}).await.map(drop),
                    admin.list_peers(proto::ListPeersRequest {}).await.map(drop),
                ];
                for call in calls {
                    match call {
                        Ok(()) => {
                            counts.admin_calls.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => counts.error("admin", e.message()),
                    }
                }
                if suppress && tick % 10 == 0 {
                    for on in [true, false] {
                        match admin
                            .set_suppressed(proto::SetSuppressedRequest {
                                set: sha_set.clone(),
                                suppressed: on,
                                reason: "soak".into(),
                            })
                            .await
                        {
                            Ok(_) => {
                                counts.admin_calls.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => counts.error("suppress", e.message()),
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    // Sampling.
    let every = Duration::from_secs((args.secs / 60).clamp(1, 10));
    let soak_started = Instant::now();
    let mut samples = Vec::new();
    let pids = [a.pid(), b.pid()];
    println!(
        "{:>7} {:>12} {:>12} {:>6} {:>6} {:>11} {:>7}",
        "t s", "origin MiB", "provider MiB", "fds a", "fds b", "match calls", "errors"
    );
    loop {
        let t = soak_started.elapsed();
        let sample = Sample {
            t: t.as_secs_f64(),
            rss: [a.rss()?.0, b.rss()?.0],
            fds: [fds(pids[0]), fds(pids[1])],
            match_calls: counts.match_calls.load(Ordering::Relaxed),
            errors: counts.errors.load(Ordering::Relaxed),
        };
        println!(
            "{:>7.0} {:>12.1} {:>12.1} {:>6} {:>6} {:>11} {:>7}",
            sample.t,
            sample.rss[0] as f64 / 1048576.0,
            sample.rss[1] as f64 / 1048576.0,
            sample.fds[0],
            sample.fds[1],
            sample.match_calls,
            sample.errors
        );
        samples.push(sample);
        if t >= Duration::from_secs(args.secs) {
            break;
        }
        tokio::time::sleep(every).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = tasks.join_next().await {
        done.context("a soak worker panicked")?;
    }

    // The provider ends equal to the origin.
    let origin = head(&mut admin_a, &pdq_set).await?;
    let converged = Instant::now();
    while head(&mut admin_b, &pdq_set).await? != origin {
        if converged.elapsed() > Duration::from_secs(60) {
            bail!("the provider did not converge with the origin after the soak");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let warm = samples
        .iter()
        .position(|s| s.t >= args.secs as f64 / 5.0)
        .unwrap_or(0);
    let (first, last) = (&samples[warm], &samples[samples.len() - 1]);
    let growth = |i: usize| last.rss[i] as f64 - first.rss[i] as f64;
    let fd_range = |i: usize| {
        let after = samples[warm..].iter().map(|s| s.fds[i]);
        (after.clone().min().unwrap_or(0), after.max().unwrap_or(0))
    };
    let secs = soak_started.elapsed().as_secs_f64();
    let errors = counts.errors.load(Ordering::Relaxed);
    let summary = json!({
        "impl": "hashfed",
        "what": "soak",
        "n": args.n,
        "secs": secs.round(),
        "match_calls": counts.match_calls.load(Ordering::Relaxed),
        "match_calls_per_s": (counts.match_calls.load(Ordering::Relaxed) as f64 / secs).round(),
        "lookups_per_s": (counts.match_calls.load(Ordering::Relaxed) as f64 * BATCH as f64 / secs).round(),
        "hits": counts.hits.load(Ordering::Relaxed),
        "feedback": counts.feedback.load(Ordering::Relaxed),
        "imported": counts.imported.load(Ordering::Relaxed),
        "retracted": counts.retracted.load(Ordering::Relaxed),
        "admin_calls": counts.admin_calls.load(Ordering::Relaxed),
        "errors": errors,
        "first_errors": *counts.first_errors.lock().unwrap_or_else(|p| p.into_inner()),
        "warm_from_s": first.t.round(),
        "origin_rss_growth_mib": (growth(0) / 1048576.0 * 10.0).round() / 10.0,
        "provider_rss_growth_mib": (growth(1) / 1048576.0 * 10.0).round() / 10.0,
        "origin_rss_end_mib": (last.rss[0] as f64 / 1048576.0).round(),
        "provider_rss_end_mib": (last.rss[1] as f64 / 1048576.0).round(),
        "origin_fds_after_warmup": fd_range(0),
        "provider_fds_after_warmup": fd_range(1),
        "converged_heads": origin.0,
        "curve": samples.iter().map(|s| json!([s.t.round(), s.rss[0] / 1048576, s.rss[1] / 1048576, s.fds[0], s.fds[1]])).collect::<Vec<_>>(),
    });
    println!("{summary}");
    if errors > 0 {
        bail!(
            "{errors} errors during the soak: {:?}",
            counts
                .first_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        );
    }
    Ok(())
}
