//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Where Meta's PDQ test vectors are: `HASHFED_TEST_VECTORS`, or
/// `../shared/pdq-vectors` beside the crate.
///
/// Returns `None` (and says so on stderr) when they are absent, so a test can
/// skip; under `CI=true` their absence is a failure, because CI must run them.
pub fn vectors_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HASHFED_TEST_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/pdq-vectors"));
    if dir.join("expected.tsv").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: PDQ test vectors not found at {} (set HASHFED_TEST_VECTORS); required when CI=true",
            dir.display()
        );
    }
    // Written to the stderr handle, not with eprintln!, so that libtest's
    // output capture does not hide the skip.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: PDQ test vectors not found at {} (set HASHFED_TEST_VECTORS to run it)",
        dir.display()
    );
    None
}

/// Reads a whitespace-separated table of `%.9g` floats, skipping `#` lines.
pub fn read_floats(path: &std::path::Path) -> Vec<f32> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(|t| {
            t.parse::<f32>()
                .unwrap_or_else(|e| panic!("{}: {t:?}: {e}", path.display()))
        })
        .collect()
}

/// The refinput file name for a repo path: `pdq/data/a/b.jpg` → `a_b`.
pub fn refinput_stem(repo_path: &str) -> String {
    let rel = repo_path.strip_prefix("pdq/data/").unwrap_or(repo_path);
    let stem = rel.rsplit_once('.').map_or(rel, |(s, _)| s);
    stem.replace('/', "_")
}
