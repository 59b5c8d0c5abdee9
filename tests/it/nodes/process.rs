//! Nodes as real `hashfed` processes, for tests that kill them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Runs the `hashfed` binary to completion.
pub fn hashfed(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .unwrap()
}

/// A running `hashfed serve`; its log lines are collected.
pub struct Serve {
    /// The process.
    pub child: Child,
    /// Its federation listener's address.
    pub federation: String,
    /// Its admin listener's address.
    pub admin: String,
    /// Every line it logged.
    pub log: Arc<Mutex<Vec<String>>>,
}

/// Starts `hashfed serve` for the node in `dir` and waits until every
/// listener is up.
pub fn serve(dir: &Path) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["serve", "--dir", dir.to_str().unwrap()])
        .env("RUST_LOG", "hashfed=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut federation = String::new();
    let mut admin = String::new();
    let log = Arc::new(Mutex::new(Vec::new()));
    loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(addr) = line.strip_prefix("hashfed: federation listening on ") {
            federation = addr.trim().to_owned();
        }
        if let Some(addr) = line.strip_prefix("hashfed: admin listening on ") {
            admin = addr.trim().to_owned();
        }
        let done = line.contains("metrics listening");
        log.lock().unwrap().push(line);
        if done {
            break;
        }
    }
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Serve {
        child,
        federation,
        admin,
        log,
    }
}

/// (head, digest) of `set` as the node in `dir` reports it (running or
/// not).
pub fn head(dir: &Path, set: &str) -> (u64, String) {
    let out = hashfed(&["sets", "--dir", dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{set}\thead ")) {
            let mut parts = rest.split('\t');
            let seq = parts.next().unwrap_or("0").parse().unwrap_or(0);
            let digest = parts
                .find_map(|p| p.strip_prefix("digest "))
                .unwrap_or("")
                .to_owned();
            return (seq, digest);
        }
    }
    (0, String::new())
}

/// Writes the peer card of the node in `dir` (reachable at `endpoint`) to `out`.
pub fn card(dir: &Path, endpoint: &str, out: &Path) {
    let o = hashfed(&[
        "peer",
        "invite",
        "--dir",
        dir.to_str().unwrap(),
        "--endpoint",
        endpoint,
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Adds the peer whose card is in `card` to the node in `dir`, with one
/// grant (`--send` or `--accept`) of `pattern`.
pub fn add_peer(dir: &Path, card: &Path, grant: &str, pattern: &str) {
    let o = hashfed(&[
        "peer",
        "add",
        "--dir",
        dir.to_str().unwrap(),
        card.to_str().unwrap(),
        grant,
        pattern,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Sends `signal` (`-KILL`, `-TERM`) to `child` and reaps it.
pub fn kill(child: &mut Child, signal: &str) {
    assert!(Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    child.wait().unwrap();
}
