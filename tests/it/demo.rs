//! `hashfed demo`: the README's main command runs a real three-node
//! federation end to end and says so; `hashfed demo pdq` keeps the PDQ demo.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_federation_demo_walks_every_step_and_cleans_up() {
    // The demo's temporary directory goes under this one, so we can see
    // that nothing is left behind.
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    for tag in [
        "[start]",
        "[peers]",
        "[publish]",
        "[vet]",
        "[sync]",
        "[match]",
        "[feedback]",
        "[retract]",
        "[no match]",
        "[exchange]",
        "[rotate]",
        "[verify]",
        "[stop]",
    ] {
        assert!(stdout.contains(tag), "no {tag} step in:\n{stdout}");
    }
    for said in [
        "hotline-a → hotline-b → provider: all 4 matchable after",
        "PDQ distance 0 and MD5 exact",
        "via hotline-b",
        "analyst-0 may not confirm their own entry",
        "learnt the key through hotline-b",
        "→ no match",
        "equal",
        "provider ← hotline API: 5000 entries (10000 hashes",
        "NCMEC entry ncmec:1:",
        "affirmative vote",
        "received once",
        "every step behaved as expected",
    ] {
        assert!(stdout.contains(said), "{said:?} not in:\n{stdout}");
    }
    assert!(stderr.trim().is_empty(), "stderr:\n{stderr}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn the_pdq_demo_is_still_there() {
    let out = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["demo", "pdq", "--seed", "7"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("PDQ on a generated 960x640 scene (seed 7)"),
        "{stdout}"
    );
    for line in ["rotated 90°", "match (dihedral)", "a different scene"] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
}
