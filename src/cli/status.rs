//! `hashfed status`: the node at a glance, for operators and their
//! monitoring: whether it runs, when its certificates expire (warned 30
//! days ahead), and what waits for a person (entries to vet, disputes).

use std::process::ExitCode;

use hashfed::identity::expiry::expiries;

use super::admin::NodeAdmin;
use super::verify::DirArgs;

/// Days before expiry from which a certificate is reported.
const WARN_DAYS: i64 = 30;

/// Runs `hashfed status`.
pub fn run(args: DirArgs) -> anyhow::Result<ExitCode> {
    let mut admin = NodeAdmin::open(&args.dir)?;
    let running = admin.is_remote();
    let stats = admin.stats();
    let pending = admin.list_pending(String::new());
    let disputes = admin.list_disputes(String::new());
    admin.close()?;
    let stats = stats?;
    println!(
        "node {} ({}): {}",
        stats.node_id,
        stats.node_name,
        if running {
            format!("running for {} s", stats.uptime_seconds)
        } else {
            "not running".to_owned()
        }
    );
    println!(
        "{} sets, {} entries ({} matchable), {} matches, {} false-positive reports",
        stats.sets, stats.entries, stats.matchable, stats.matches, stats.feedback_false_positive
    );
    let pending = pending?.entries.len();
    let raised = disputes?.disputes.iter().filter(|d| d.raised).count();
    println!("{pending} entries waiting for vetting, {raised} disputed entries raised for review");

    let mut warn = false;
    if stats.key_history_refusals > 0 {
        warn = true;
        println!(
            "WARNING: {} key histories refused from peers since the node started (a fork or a \
             forged rotation: was a peer's old key leaked? the log names the peer; metric \
             hashfed_key_history_refused_total)",
            stats.key_history_refusals
        );
    }

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for e in expiries(&args.dir)? {
        let days = (e.not_after - now).div_euclid(86_400);
        let state = if e.not_after <= now {
            warn = true;
            "EXPIRED".to_owned()
        } else if days < WARN_DAYS {
            warn = true;
            format!("WARNING: expires in {days} days")
        } else {
            format!("expires in {days} days")
        };
        println!("certificate {:<13} {state}", e.name);
    }
    Ok(if warn {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
