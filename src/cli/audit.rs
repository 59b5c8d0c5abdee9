//! `hashfed audit`: the node's audit log (through the admin service: see
//! [`super::admin`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::admin::NodeAdmin;

/// Arguments of `hashfed audit`.
#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The node directory.
    #[arg(long, value_name = "DIR", global = true, required = false)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: AuditAction,
}

#[derive(Subcommand, Debug)]
enum AuditAction {
    /// Print audit records, oldest first (tab-separated: seq, time (UTC),
    /// actor, action, subject, detail).
    List {
        /// Only records after this one.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 0)]
        limit: u64,
        /// One JSON object per record.
        #[arg(long)]
        json: bool,
    },
    /// Recompute the hash chain and check the signed head; exit 1 and name
    /// the first changed record if the log was altered.
    Verify,
}

/// Runs `hashfed audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let dir = args
        .dir
        .ok_or_else(|| anyhow::anyhow!("--dir DIR is required"))?;
    let mut admin = NodeAdmin::open(&dir)?;
    let code = match args.action {
        AuditAction::List { after, limit, json } => {
            let mut after = after;
            let mut left = if limit == 0 { u64::MAX } else { limit };
            while left > 0 {
                let page = admin.list_audit(after, left.min(1000) as u32)?;
                let Some(last) = page.records.last() else {
                    break;
                };
                after = last.seq;
                left = left.saturating_sub(page.records.len() as u64);
                for r in &page.records {
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "seq": r.seq, "time_ms": r.time_ms, "actor": r.actor,
                                "action": r.action, "subject": r.subject, "detail": r.detail,
                            })
                        );
                    } else {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}",
                            r.seq,
                            utc(r.time_ms),
                            r.actor,
                            r.action,
                            r.subject,
                            r.detail
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        AuditAction::Verify => {
            let v = admin.verify_audit()?;
            if v.ok {
                println!(
                    "audit log intact: {} records, head signature {}",
                    v.records, v.head_signature
                );
                ExitCode::SUCCESS
            } else {
                let what = if v.problem.is_empty() {
                    "the signature over the head does not verify".to_owned()
                } else {
                    v.problem
                };
                eprintln!(
                    "hashfed: audit log ALTERED: {what} ({} records read, head signature {})",
                    v.records, v.head_signature
                );
                ExitCode::from(1)
            }
        }
    };
    admin.close()?;
    Ok(code)
}

/// `YYYY-MM-DDTHH:MM:SSZ` for ms since the epoch.
pub(super) fn utc(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
