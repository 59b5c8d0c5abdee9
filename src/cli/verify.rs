//! `hashfed verify`, `hashfed sets` and `hashfed stats`: look at the
//! database as a whole.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::admin::NodeAdmin;

/// Arguments of `hashfed verify` and `hashfed sets`.
#[derive(Args, Debug)]
pub struct DirArgs {
    /// The node directory (the database is in DIR/store).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// Checks every log, entry, entry number and slot (through the admin
/// service: the running node's, or in-process on a stopped node); exit 1
/// on any problem.
pub fn verify(args: DirArgs) -> anyhow::Result<ExitCode> {
    let mut node = NodeAdmin::open(&args.dir)?;
    let report = node.verify();
    node.close()?;
    let report = report?;
    let consistent = report.problems.is_empty();
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    println!(
        "{} sets, {} log records, {} entries ({} matchable): {}",
        report.sets,
        report.records,
        report.entries,
        report.matchable,
        if consistent {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    Ok(if consistent {
        ExitCode::SUCCESS
    } else {
        // Like grep: 1 means "ran fine, the check failed".
        ExitCode::from(1)
    })
}

/// Lists the sets with their log heads.
pub fn sets(args: DirArgs) -> anyhow::Result<ExitCode> {
    let mut node = NodeAdmin::open(&args.dir)?;
    let listed = node.list_sets();
    node.close()?;
    for s in listed?.sets {
        println!(
            "{}\thead {}\tdigest {}\t{} matchable{}{}",
            s.id,
            s.head_seq,
            s.head_digest,
            s.matchable,
            if s.kind == "allow" { "\tallowlist" } else { "" },
            if s.suppressed {
                "\tSUPPRESSED here"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the node's counts.
pub fn stats(args: DirArgs) -> anyhow::Result<ExitCode> {
    let mut node = NodeAdmin::open(&args.dir)?;
    let running = node.is_remote();
    let stats = node.stats();
    node.close()?;
    let s = stats?;
    if !s.node_id.is_empty() {
        println!(
            "node {} ({}){}",
            s.node_id,
            s.node_name,
            if running {
                format!(", serving for {} s", s.uptime_seconds)
            } else {
                ", not running".to_owned()
            }
        );
    }
    println!("sets {}", s.sets);
    println!("entries {} ({} matchable)", s.entries, s.matchable);
    println!("log records {}", s.log_records);
    println!("disk bytes {}", s.disk_bytes);
    println!(
        "matches {} (feedback: {} confirmed, {} false positive)",
        s.matches, s.feedback_confirmed, s.feedback_false_positive
    );
    Ok(ExitCode::SUCCESS)
}
