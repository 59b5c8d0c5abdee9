//! Repeated SIGKILLs at random moments while a node imports a list and
//! syncs another from its origin: after every kill its store verifies
//! offline (log contiguity, chain hashes, entry states, index keys); once
//! restarted for good, re-running the imports completes them and it
//! converges with the origin. Real `hashfed serve` and `hashfed import`
//! processes, real mTLS, real sled.
//!
//! `HASHFED_CRASH_KILLS` kills (default 8, for CI); the closing notes'
//! run uses `HASHFED_CRASH_KILLS=50 cargo test --test it crash_loop --
//! --nocapture` (tests build optimised).

use crate::nodes;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::nodes::process::{add_peer, card, hashfed, head, kill, serve};
use hashfed::store::{Store, StoreOptions};

const ORIGIN_SET: &str = "a/list";
const OWN_SET: &str = "b/own";
/// Entries the origin adds each round (syncing them takes about as long
/// as the window the kill falls in).
const ORIGIN_ROUND: u32 = 20_000;
/// Entries of the list the killed node imports each round.
const OWN_ROUND: u32 = 20_000;

fn kills() -> u32 {
    std::env::var("HASHFED_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// A list of `n` distinct PDQ hashes (te-lines), the same for the same
/// `tag` and `round`.
fn list(dir: &Path, tag: &str, round: u32, n: u32) -> PathBuf {
    let path = dir.join(format!("{tag}-{round}.txt"));
    let mut text = String::with_capacity(n as usize * 70);
    for i in 0..n {
        let h = blake3::hash(format!("{tag} {round} {i}").as_bytes());
        text.push_str("pdq ");
        text.push_str(&h.to_hex());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn import(dir: &Path, set: &str, file: &Path) -> std::process::Output {
    hashfed(&[
        "import",
        "--dir",
        dir.to_str().unwrap(),
        "--set",
        set,
        file.to_str().unwrap(),
    ])
}

/// A small deterministic generator for the kill times.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn repeated_kills_during_import_and_sync_lose_nothing() {
    let kills = kills();
    let (_ta, a) = nodes::node_dir("a");
    let (tb, b) = nodes::node_dir("b");
    let files = tb.path();
    let sa = serve(&a);
    let mut sb = serve(&b);
    let (card_a, card_b) = (files.join("a.card"), files.join("b.card"));
    card(&a, &sa.federation, &card_a);
    card(&b, &sb.federation, &card_b);
    add_peer(&a, &card_b, "--send", "a/*");
    add_peer(&b, &card_a, "--accept", "a/*");

    let mut rng = Lcg(0x5eed);
    let mut own_files = Vec::new();
    let started = Instant::now();
    for round in 0..kills {
        // The origin publishes more (through its running node).
        let more = list(files, "a", round, ORIGIN_ROUND);
        let out = import(&a, ORIGIN_SET, &more);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );

        // B imports its own list while it syncs; it dies at a random
        // moment of both.
        let own = list(files, "b", round, OWN_ROUND);
        let importing = Command::new(env!("CARGO_BIN_EXE_hashfed"))
            .args(["import", "--dir", b.to_str().unwrap(), "--set", OWN_SET])
            .arg(&own)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        own_files.push(own);
        std::thread::sleep(Duration::from_millis(10 + rng.below(250)));
        kill(&mut sb.child, "-KILL");
        let _ = importing.wait_with_output();

        // Offline, the store is whole: whatever landed landed in whole
        // batches.
        let store = Store::open(&b.join("store"), &StoreOptions::default()).unwrap();
        let report = store.verify().unwrap();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        let synced = store
            .set(&ORIGIN_SET.parse().unwrap())
            .map_or(0, |s| s.head_seq);
        let own_head = store
            .set(&OWN_SET.parse().unwrap())
            .map_or(0, |s| s.head_seq);
        drop(store);
        eprintln!("kill {round}: synced {synced}, own list at {own_head}");
        sb = serve(&b);
    }

    // Re-running the imports completes them; the sync catches up.
    for own in &own_files {
        let out = import(&b, OWN_SET, own);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (a_head, a_digest) = head(&a, ORIGIN_SET);
    assert_eq!(a_head, u64::from(kills * ORIGIN_ROUND));
    let converge = Instant::now();
    loop {
        let (seq, digest) = head(&b, ORIGIN_SET);
        if seq == a_head {
            assert_eq!(digest, a_digest);
            break;
        }
        assert!(
            converge.elapsed() < Duration::from_secs(300),
            "never converged: {seq} of {a_head}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "{kills} kills; converged {:?} after the last restart, {:?} in all",
        converge.elapsed(),
        started.elapsed()
    );
    kill(&mut sb.child, "-TERM");
    let store = Store::open(&b.join("store"), &StoreOptions::default()).unwrap();
    assert!(store.verify().unwrap().problems.is_empty());
    let own = store.set(&OWN_SET.parse().unwrap()).unwrap();
    assert_eq!(own.matchable, u64::from(kills * OWN_ROUND));
    let synced = store.set(&ORIGIN_SET.parse().unwrap()).unwrap();
    assert_eq!(synced.matchable, u64::from(kills * ORIGIN_ROUND));
    let mut sa = sa;
    kill(&mut sa.child, "-TERM");
}
