//! `hashfed match`: look hashes or images up from a terminal, with the
//! calls local services make (MatchHashes, MatchImage): to the running
//! node over its admin socket, or to the same match service in-process over
//! the database when the node is stopped (see [`super::admin`]). An
//! operator's lookups leave no match records.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use hashfed::database::MAX_RADIUS;
use hashfed::model::{Signal, SignalType};
use hashfed::service::matching::MAX_BATCH;
use hashfed::signal::pdq::DEFAULT_QUALITY_FLOOR;
use hashfed::wire::{self, proto};

use super::admin::NodeAdmin;

/// Arguments of `hashfed match`.
#[derive(Args, Debug)]
pub struct MatchArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// PDQ radius (0-128); default: each set's threshold (31 unless set).
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_RADIUS)))]
    radius: Option<u32>,
    /// Refuse PDQ hashes of images under this quality.
    #[arg(long, default_value_t = u32::from(DEFAULT_QUALITY_FLOOR))]
    quality_floor: u32,
    /// The queries are image files: match their PDQ hash and exact digests.
    #[arg(long)]
    image: bool,
    /// With --image, also match the rotations and flips of each image.
    #[arg(long, requires = "image")]
    dihedral: bool,
    /// One JSON object per match.
    #[arg(long)]
    json: bool,
    /// `TYPE:VALUE` (e.g. `md5:…`), a bare 64-digit PDQ hash, or with
    /// --image, image files.
    #[arg(required = true, value_name = "QUERY")]
    queries: Vec<String>,
}

/// Most matches printed for one image.
const MAX_IMAGE_HITS: usize = 10_000;

pub fn run(args: MatchArgs) -> anyhow::Result<ExitCode> {
    // Every hash is checked before the node is reached: a malformed one is
    // a usage error, and nothing is looked up.
    let signals = if args.image {
        Vec::new()
    } else {
        args.queries
            .iter()
            .map(|query| {
                let (kind, value) = query.split_once(':').unwrap_or(("pdq", query));
                Signal::parse(kind, value).with_context(|| format!("query {query:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?
    };
    let mut node = NodeAdmin::open(&args.dir)?;
    let found = if args.image {
        match_images(&mut node, &args)
    } else {
        match_hashes(&mut node, &args, &signals)
    };
    // On a stopped node, leaves a current index snapshot behind so the
    // next open is quick.
    node.close()?;
    Ok(if found? {
        ExitCode::SUCCESS
    } else {
        // Like grep: 1 means "ran fine, found nothing".
        ExitCode::from(1)
    })
}

/// Looks the hashes up in batches; prints each query's matches in order.
/// Whether any matched.
fn match_hashes(
    node: &mut NodeAdmin,
    args: &MatchArgs,
    signals: &[Signal],
) -> anyhow::Result<bool> {
    let mut any = false;
    let queries: Vec<(&String, &Signal)> = args.queries.iter().zip(signals).collect();
    for batch in queries.chunks(MAX_BATCH) {
        let request = proto::MatchRequest {
            queries: batch
                .iter()
                .map(|(_, signal)| proto::Query {
                    signal: Some(wire::signal(signal)),
                    pdq_variants: Vec::new(),
                    quality: None,
                    radius: signal.as_pdq().and(args.radius),
                })
                .collect(),
            tag: 0,
        };
        let answer = node.match_hashes(request)?;
        if answer.results.len() != batch.len() {
            bail!(
                "the node answered {} of {} queries",
                answer.results.len(),
                batch.len()
            );
        }
        for ((query, signal), result) in batch.iter().zip(answer.results) {
            if !result.skipped.is_empty() {
                eprintln!("hashfed: {}", result.skipped);
            }
            any |= !result.hits.is_empty();
            print(
                args,
                query,
                &result.hits,
                &result.allowlisted,
                Some(signal.kind()),
            )?;
        }
    }
    Ok(any)
}

/// Sends each image to be hashed and matched; prints its matches. Whether
/// any matched.
fn match_images(node: &mut NodeAdmin, args: &MatchArgs) -> anyhow::Result<bool> {
    let mut any = false;
    for path in &args.queries {
        let image = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let answer = node
            .match_image(proto::MatchImageRequest {
                image,
                dihedral: args.dihedral,
                radius: args.radius,
                quality_floor: Some(args.quality_floor),
            })
            .with_context(|| path.clone())?;
        if !answer.pdq_skipped.is_empty() {
            eprintln!("hashfed: {path}: {}", answer.pdq_skipped);
        }
        if answer.hits.len() > MAX_IMAGE_HITS {
            bail!("{path}: over 10,000 matches; narrow the radius");
        }
        any |= !answer.hits.is_empty();
        print(args, path, &answer.hits, &answer.allowlisted, None)?;
    }
    Ok(any)
}

/// The name of a hit's signal type. A hit of an exact query has the
/// query's type (entries are found by type and value), which names an
/// opaque type the wire's code does not.
fn type_name(code: i32, query: Option<&SignalType>) -> String {
    use proto::SignalType as W;
    let kind = match W::try_from(code) {
        Ok(W::Pdq) => SignalType::Pdq,
        Ok(W::Md5) => SignalType::Md5,
        Ok(W::Sha1) => SignalType::Sha1,
        Ok(W::Sha256) => SignalType::Sha256,
        Ok(W::Blake3) => SignalType::Blake3,
        Ok(W::Opaque) => match query {
            Some(kind @ SignalType::Opaque(_)) => kind.clone(),
            _ => return "opaque".to_owned(),
        },
        _ => return "unknown".to_owned(),
    };
    kind.name().to_owned()
}

fn print(
    args: &MatchArgs,
    query: &str,
    hits: &[proto::Hit],
    allowlisted: &[String],
    kind: Option<&SignalType>,
) -> anyhow::Result<()> {
    if !allowlisted.is_empty() {
        if args.json {
            let v = serde_json::json!({ "query": query, "allowlisted": allowlisted });
            println!("{v}");
        } else {
            println!(
                "{query}\tallowlisted by {}: known benign here, no hit",
                allowlisted.join(",")
            );
        }
        return Ok(());
    }
    for m in hits {
        let signal_type = type_name(m.r#type, kind);
        if args.json {
            let v = serde_json::json!({
                "query": query,
                "entry": m.entry_id,
                "set": m.set,
                "origin": m.origin,
                "type": signal_type,
                "distance": m.distance,
                "variant": m.variant,
                "labels": m.labels,
                "external_id": (!m.external_id.is_empty()).then_some(&m.external_id),
            });
            println!("{v}");
        } else {
            println!(
                "{query}\t{}\t{}\t{signal_type}\tdistance {}\t{}",
                m.set,
                m.entry_id,
                m.distance,
                m.labels.join(",")
            );
        }
    }
    if hits.is_empty() && !args.json {
        println!("{query}\tno match");
    }
    Ok(())
}
