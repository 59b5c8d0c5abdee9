//! A receiving node killed (SIGKILL) in the middle of an initial sync:
//! after restart its store verifies, it resumes from its cursor (the set's
//! head, written in the same batch as the records), asks for nothing it
//! already has, and ends with the origin's digest. Real `hashfed serve`
//! processes, real mTLS, real sled. 50,000 entries by default; the full
//! size runs with `HASHFED_CRASH_N=1000000 cargo test --release --test it
//! federation_crash -- --nocapture`.

use crate::nodes;

use std::time::{Duration, Instant};

use crate::nodes::process::{add_peer, card, kill, serve};
use hashfed::database::Database;
use hashfed::store::{Store, StoreOptions};

/// (head, digest) of `a/list` on the running node in `dir`.
fn head(dir: &std::path::Path) -> (u64, String) {
    nodes::process::head(dir, "a/list")
}

/// Entries in the origin's set (`HASHFED_CRASH_N`, default 50,000).
fn entries() -> u32 {
    std::env::var("HASHFED_CRASH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

#[test]
fn a_node_killed_during_sync_resumes_from_its_cursor() {
    #[allow(non_snake_case)]
    let N = entries();
    let (_ta, a) = nodes::node_dir("a");
    let (tb, b) = nodes::node_dir("b");
    {
        let db = Database::open(&a.join("store"), &StoreOptions::default()).unwrap();
        let codes: Vec<[u8; 32]> = (0..N)
            .map(|i| *blake3::hash(&i.to_be_bytes()).as_bytes())
            .collect();
        for chunk in codes.chunks(10_000) {
            nodes::add_pdq(&db, "a/list", chunk);
        }
        db.close().unwrap();
    }
    let mut sa = serve(&a);
    let mut sb = serve(&b);
    let (card_a, card_b) = (tb.path().join("a.card"), tb.path().join("b.card"));
    card(&a, &sa.federation, &card_a);
    card(&b, &sb.federation, &card_b);
    add_peer(&a, &card_b, "--send", "a/*");
    let (a_head, a_digest) = head(&a);
    assert_eq!(a_head, u64::from(N));

    // B starts pulling; kill it half way. (sled makes writes durable
    // every half second, so what B reported may be ahead of its disk: the
    // disk holds an older checkpoint, never a torn batch.)
    add_peer(&b, &card_a, "--accept", "a/*");
    let started = Instant::now();
    let partial = loop {
        let (seq, _) = head(&b);
        if seq >= u64::from(N) / 2 {
            break seq;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "sync never got half way"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    kill(&mut sb.child, "-KILL");
    assert!(
        partial < u64::from(N),
        "sync finished before the kill; make N larger"
    );

    // Offline: the store verifies and holds exactly a prefix of A's log.
    let cursor = {
        let store = Store::open(&b.join("store"), &StoreOptions::default()).unwrap();
        let report = store.verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        let set = store.set(&"a/list".parse().unwrap()).unwrap();
        assert!(
            set.head_seq > 0 && set.head_seq <= partial,
            "on disk {} of {N}, reported {partial}",
            set.head_seq
        );
        let records = store.log(set.id(), 0).unwrap().count() as u64;
        assert_eq!(records, set.head_seq);
        assert!(store
            .checkpoint_at(set.id(), set.head_seq)
            .unwrap()
            .is_some());
        set.head_seq
    };
    eprintln!("killed at {partial} of {N} records applied, {cursor} durable");

    // Restart: B asks A for the records after its cursor, once, and ends
    // with A's digest.
    let mut sb = serve(&b);
    let started = Instant::now();
    let resumed_at = started;
    loop {
        let (seq, digest) = head(&b);
        if seq == a_head {
            assert_eq!(digest, a_digest);
            eprintln!(
                "restarted and converged in {:?} ({} records pulled after the cursor)",
                resumed_at.elapsed(),
                a_head - cursor
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1200),
            "never converged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pulls: Vec<String> = sa
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("pull") && l.contains("after_seq"))
        .cloned()
        .collect();
    let last = pulls.last().expect("no pull logged");
    assert!(
        last.contains(&format!("after_seq={cursor}")),
        "restart did not resume from the cursor {cursor}: {pulls:?}"
    );
    assert!(
        pulls
            .iter()
            .all(|l| l.contains("after_seq=0") || l.contains(&format!("after_seq={cursor}"))),
        "{pulls:?}"
    );
    kill(&mut sb.child, "-TERM");
    kill(&mut sa.child, "-TERM");
    let store = Store::open(&b.join("store"), &StoreOptions::default()).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    let set = store.set(&"a/list".parse().unwrap()).unwrap();
    assert_eq!(set.matchable, u64::from(N));
}
