//! Sync through a bad link: a fault-injecting proxy between a hotline and
//! its peer delays, stalls, cuts connections mid-stream and refuses them;
//! the peer's copy must still converge to the origin's, byte for byte,
//! with nothing half-applied.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::nodes::proxy::{FaultProxy, Faults};
use crate::nodes::{add_pdq, eventually, TestNode};
use hashfed::database::Database;
use hashfed::model::{Signal, SignalType};

const SET: &str = "a/list";

fn code(i: u32) -> [u8; 32] {
    *blake3::hash(&i.to_be_bytes()).as_bytes()
}

fn head(db: &Database) -> u64 {
    db.store()
        .set(&SET.parse().unwrap())
        .map_or(0, |s| s.head_seq)
}

fn matches(db: &Database, c: &[u8; 32]) -> bool {
    let signal = Signal::from_bytes(SignalType::Pdq, c.to_vec()).unwrap();
    db.match_exact(&signal).is_ok_and(|m| !m.is_empty())
}

/// B's copy equals A's: same head, same digest, a clean store.
fn converged(a: &TestNode, b: &TestNode) -> bool {
    let (sa, sb) = (
        a.db.store().set(&SET.parse().unwrap()),
        b.db.store().set(&SET.parse().unwrap()),
    );
    matches!((sa, sb), (Some(x), Some(y)) if x.head_seq == y.head_seq && x.head_digest == y.head_digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_converges_through_delay_cuts_stalls_and_refusals() {
    const N: u32 = 20_000;
    let a = TestNode::start("a", |db| {
        add_pdq(db, SET, &(0..N).map(code).collect::<Vec<_>>())
    })
    .await;
    let b = TestNode::start("b", |_| {}).await;
    let proxy = FaultProxy::start(a.node().addresses().federation).await;
    // B reaches A only through the proxy; A's card says so.
    let mut card = hashfed::peers::PeerCard::parse(&a.card()).unwrap();
    card.endpoint = proxy.addr().to_string();
    a.add_peer(&b, &["a/*"], &[]);
    b.add_card(card.to_toml().unwrap(), &[], &["a/*"]);

    // 1. Every connection is cut after ~700 KB (a checkpoint's worth of
    //    records and a bit), with 2 ms per chunk of delay: the sync makes
    //    progress on each connection and resumes from its cursor.
    proxy.set(Faults {
        delay: Duration::from_millis(2),
        cut_after_bytes: Some(700 << 10),
        ..Faults::default()
    });
    eventually(Duration::from_secs(60), || head(&b.db) >= u64::from(N) / 2)
        .await
        .unwrap_or_else(|| panic!("no progress through cuts: B at {}", head(&b.db)));
    assert!(
        proxy.cut.load(Ordering::Relaxed) >= 1,
        "the link was never cut"
    );

    // 2. The link stalls (nothing passes, nothing closes), then comes back.
    proxy.set(Faults {
        stall: true,
        ..Faults::default()
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = head(&b.db);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(head(&b.db), during, "records passed a stalled link");

    // 3. Open connections are cut and new ones refused for a second.
    proxy.set(Faults {
        refuse: true,
        ..Faults::default()
    });
    proxy.cut_all();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 4. The link is slow but whole again; A publishes more meanwhile.
    proxy.set(Faults {
        delay: Duration::from_millis(5),
        ..Faults::default()
    });
    add_pdq(&a.db, SET, &(N..N + 100).map(code).collect::<Vec<_>>());
    let took = eventually(Duration::from_secs(60), || converged(&a, &b))
        .await
        .unwrap_or_else(|| {
            panic!(
                "B never converged: at {} of {} ({})",
                head(&b.db),
                head(&a.db),
                b.node().federation().sync_status("a")
            )
        });
    eprintln!(
        "converged {took:?} after the link healed; {} connections, {} cut",
        proxy.accepted.load(Ordering::Relaxed),
        proxy.cut.load(Ordering::Relaxed)
    );
    assert_eq!(head(&b.db), u64::from(N) + 100);
    assert!(matches(&b.db, &code(0)) && matches(&b.db, &code(N + 99)));
    let report = b.db.store().verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
