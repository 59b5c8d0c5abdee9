//! `hashfed match`: look hashes or images up in the node's database, the
//! way a local service will over gRPC, from a terminal.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use hashfed::database::{Database, Match, MatchError, PdqQuery};
use hashfed::model::Signal;
use hashfed::signal::content::{hash_image, HashOptions};
use hashfed::signal::pdq::{PdqHash, PdqHasher, DEFAULT_QUALITY_FLOOR};
use hashfed::store::StoreOptions;

/// Arguments of `hashfed match`.
#[derive(Args, Debug)]
pub struct MatchArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// PDQ radius (0-128); default: each set's threshold (31 unless set).
    #[arg(long)]
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

pub fn run(args: MatchArgs) -> anyhow::Result<ExitCode> {
    let db = Database::open(&super::store_dir(&args.dir), &StoreOptions::default())?;
    let mut hasher = PdqHasher::new();
    let mut any = false;
    for query in &args.queries {
        let matches = if args.image {
            match_image(&db, &args, query, &mut hasher)?
        } else {
            let (kind, value) = query.split_once(':').unwrap_or(("pdq", query));
            let signal = Signal::parse(kind, value).with_context(|| format!("query {query:?}"))?;
            match signal.as_pdq() {
                Some(hash) => match_pdq(&db, &args, &[hash], None)?,
                None => db.match_exact(&signal)?,
            }
        };
        any |= !matches.is_empty();
        print(&args, query, &matches)?;
    }
    // Leaves a current index snapshot behind so the next open is quick.
    db.close()?;
    Ok(if any {
        ExitCode::SUCCESS
    } else {
        // Like grep: 1 means "ran fine, found nothing".
        ExitCode::from(1)
    })
}

fn match_pdq(
    db: &Database,
    args: &MatchArgs,
    hashes: &[PdqHash],
    quality: Option<u32>,
) -> anyhow::Result<Vec<Match>> {
    let query = PdqQuery {
        hashes,
        quality,
        quality_floor: args.quality_floor,
        radius: args.radius,
    };
    match db.match_pdq(&query) {
        Ok(m) => Ok(m),
        Err(e @ MatchError::LowQuality { .. }) => {
            eprintln!("hashfed: {e}");
            Ok(Vec::new())
        }
        Err(e) => Err(e.into()),
    }
}

fn match_image(
    db: &Database,
    args: &MatchArgs,
    path: &str,
    hasher: &mut PdqHasher,
) -> anyhow::Result<Vec<Match>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let options = HashOptions {
        dihedral: args.dihedral,
        ..HashOptions::default()
    };
    let hashes = hash_image(&bytes, &options, hasher).with_context(|| path.to_owned())?;
    let matched = db.match_image(&hashes, args.radius, args.quality_floor)?;
    if let Some(why) = &matched.pdq_skipped {
        eprintln!("hashfed: {path}: {why}");
    }
    let out = matched.hits;
    if out.len() > 10_000 {
        bail!("{path}: over 10,000 matches; narrow the radius");
    }
    Ok(out)
}

fn print(args: &MatchArgs, query: &str, matches: &[Match]) -> anyhow::Result<()> {
    for m in matches {
        if args.json {
            let v = serde_json::json!({
                "query": query,
                "entry": m.entry.to_string(),
                "set": m.set.as_str(),
                "origin": m.origin,
                "type": m.signal_type.name(),
                "distance": m.distance,
                "variant": m.variant,
                "labels": m.labels,
                "external_id": m.external_id,
            });
            println!("{v}");
        } else {
            println!(
                "{query}\t{}\t{}\t{}\tdistance {}\t{}",
                m.set,
                m.entry,
                m.signal_type,
                m.distance,
                m.labels.join(",")
            );
        }
    }
    if matches.is_empty() && !args.json {
        println!("{query}\tno match");
    }
    Ok(())
}
