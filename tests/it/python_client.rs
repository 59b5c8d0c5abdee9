//! The Python example client (`examples/python/match_client.py`) against a
//! real `hashfed serve`: other languages can use the match service with
//! nothing but the repository's `proto/` and a gRPC stack.
//!
//! Needs `python3` (or `HASHFED_PYTHON`) and, the first time, network access
//! for pip: the example's requirements go into a venv at
//! `<target dir>/python-example-venv`, reinstalled only when
//! `examples/python/requirements.txt` changes. Without python or pip the
//! test prints `SKIPPED ...` and passes, except under `CI=true`, where it
//! fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TEST: &str = "python_client";

/// How long `hashfed serve` may take to say where it listens.
const STARTUP: Duration = Duration::from_secs(60);

/// The stored entries: a PDQ hash with labels in one set, another far from it
/// in a second set, and an MD5 digest.
const PDQ_A: [u8; 32] = [0x3c; 32];
const PDQ_B: [u8; 32] = [0xa5; 32];
const MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Skips the test with `reason`, or fails it under `CI=true`.
fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("SKIPPED {TEST}: {reason} (required when CI=true)");
    }
    // To the stderr handle, not with eprintln!, so libtest's capture does not
    // hide the skip.
    let _ = writeln!(std::io::stderr(), "SKIPPED {TEST}: {reason}");
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `CARGO_TARGET_DIR` (relative to the crate when relative) or `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => manifest_dir().join(dir),
        _ => manifest_dir().join("target"),
    }
}

fn tail(output: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The interpreter to build the venv with, if there is one.
fn find_python() -> Option<String> {
    let python = std::env::var("HASHFED_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let works = Command::new(&python)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(python)
}

fn venv_python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts/python.exe")
    } else {
        venv.join("bin/python")
    }
}

/// Creates or reuses the venv and installs the example's requirements when
/// they differ from the stamp of the last install. `Err` is a skip reason.
fn venv(python: &str) -> Result<PathBuf, String> {
    let requirements = manifest_dir().join("examples/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .unwrap_or_else(|e| panic!("{}: {e}", requirements.display()));
    let venv = target_dir().join("python-example-venv");
    let stamp = venv.join("requirements.stamp");
    let py = venv_python(&venv);
    if py.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(py);
    }
    if !py.is_file() {
        let _ = std::fs::remove_dir_all(&venv);
        std::fs::create_dir_all(target_dir()).unwrap();
        let made = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .map_err(|e| format!("{python} -m venv: {e}"))?;
        if !made.status.success() || !py.is_file() {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(format!(
                "`{python} -m venv {}` failed (python3-venv missing?):\n{}",
                venv.display(),
                tail(&made)
            ));
        }
    }
    let _ = std::fs::remove_file(&stamp);
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: installing {} into {}",
        requirements.display(),
        venv.display()
    );
    let installed = Command::new(&py)
        .args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--quiet",
            "-r",
        ])
        .arg(&requirements)
        .output()
        .map_err(|e| format!("{} -m pip: {e}", py.display()))?;
    if !installed.status.success() {
        return Err(format!(
            "pip install -r {} failed (no network?):\n{}",
            requirements.display(),
            tail(&installed)
        ));
    }
    std::fs::write(&stamp, &wanted).unwrap();
    Ok(py)
}

/// Points every `host:port` listener in the config's `[listen]` table at
/// port 0, so the test runs beside others (and beside a real node).
fn ephemeral_ports(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut section = String::new();
    let mut rewritten = 0;
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.to_owned();
        }
        let mut line = line.to_owned();
        if section == "[listen]" {
            if let Some((key, value)) = line.split_once('=') {
                let value = value.trim().trim_matches('"');
                if let Some((host, port)) = value.rsplit_once(':') {
                    if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                        line = format!("{key}= \"{host}:0\"");
                        rewritten += 1;
                    }
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    assert!(
        rewritten > 0,
        "no [listen] addresses in {}:\n{text}",
        config.display()
    );
    std::fs::write(config, out).unwrap();
}

/// Runs a `hashfed` subcommand and insists that it succeeds.
fn hashfed(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "hashfed {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `hashfed serve`, killed if the test ends before stopping it.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(dir: &str) -> (Server, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hashfed"))
            .args(["serve", "--dir", dir])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        let server = Server { child, lines };
        let deadline = Instant::now() + STARTUP;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = server
                .lines
                .recv_timeout(left)
                .expect("hashfed serve exited or did not say where it listens");
            if let Some(addr) = line.split("match listening on ").nth(1) {
                break addr.trim().to_owned();
            }
        };
        (server, addr)
    }

    /// SIGTERM, then the exit status and the rest of stderr.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        assert!(Command::new("kill")
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            rest.push(line);
        }
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One run of the example client: exit code, JSON lines, stderr.
struct Run {
    code: Option<i32>,
    lines: Vec<serde_json::Value>,
    stderr: String,
}

fn run_client(py: &Path, common: &[String], extra: &[&str]) -> Run {
    let script = manifest_dir().join("examples/python/match_client.py");
    let started = Instant::now();
    let output = Command::new(py)
        .arg(&script)
        .args(common)
        .args(extra)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines = stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}\nstderr: {stderr}"))
        })
        .collect();
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: match_client.py {extra:?}: exit {:?} in {:.2?}",
        output.status.code(),
        started.elapsed()
    );
    Run {
        code: output.status.code(),
        lines,
        stderr,
    }
}

#[test]
fn python_example_client_matches_over_mtls() {
    let started = Instant::now();
    let Some(python) = find_python() else {
        skip("python3 not found (install it or set HASHFED_PYTHON)");
        return;
    };
    let py = match venv(&python) {
        Ok(py) => py,
        Err(reason) => {
            skip(&reason);
            return;
        }
    };
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: venv ready in {:.2?}",
        started.elapsed()
    );

    // The node, as an operator sets it up.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();
    hashfed(&["init", "--dir", d, "--name", "provider-p"]);
    ephemeral_ports(&dir.join("hashfed.toml"));
    let import = |set: &str, records: &str| {
        let list = tmp.path().join("list.jsonl");
        std::fs::write(&list, records).unwrap();
        let l = list.to_str().unwrap();
        hashfed(&["import", "--dir", d, "--set", set, "--format", "jsonl", l]);
    };
    import(
        "hotline-a/csam",
        &format!(
            "{{\"type\":\"pdq\",\"value\":\"{}\",\"labels\":[\"A1\",\"csam\"]}}\n\
             {{\"type\":\"md5\",\"value\":\"{MD5}\",\"labels\":[\"B2\"]}}\n",
            hex(&PDQ_A)
        ),
    );
    import(
        "hotline-b/other",
        &format!("{{\"type\":\"pdq\",\"value\":\"{}\"}}\n", hex(&PDQ_B)),
    );
    // The entry ids as the node's own command line reports them.
    let entry_of = |query: &str| -> String {
        let out = hashfed(&["match", "--dir", d, "--json", query]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["entry"].as_str().unwrap().to_owned()
    };
    let entry_a = entry_of(&hex(&PDQ_A));
    let entry_md5 = entry_of(&format!("md5:{MD5}"));
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let c = certs.to_str().unwrap();
    hashfed(&["client", "issue", "--dir", d, "svc", "--out", c]);
    hashfed(&[
        "client",
        "issue",
        "--dir",
        d,
        "ops",
        "--operator",
        "--out",
        c,
    ]);

    let (server, addr) = Server::start(d);
    let args = |name: &str| -> Vec<String> {
        let p = |f: PathBuf| f.to_str().unwrap().to_owned();
        vec![
            "--target".into(),
            addr.clone(),
            "--ca".into(),
            p(dir.join("tls/node-ca.pem")),
            "--cert".into(),
            p(certs.join(format!("{name}.pem"))),
            "--key".into(),
            p(certs.join(format!("{name}.key"))),
        ]
    };
    let svc = args("svc");

    // Three bits from A: a hit in hotline-a/csam at distance 3.
    let mut near = PDQ_A;
    near[5] ^= 0x07;
    let run = run_client(&py, &svc, &[&hex(&near)]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines.len(), 1, "{:?}", run.lines);
    let line = &run.lines[0];
    assert_eq!(line["query"], 0);
    assert_eq!(line["hash"], hex(&near));
    let hits = line["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{line}");
    assert_eq!(hits[0]["entry_id"], entry_a.as_str());
    assert_eq!(hits[0]["set"], "hotline-a/csam");
    assert_eq!(hits[0]["origin"], "hotline-a");
    assert_eq!(hits[0]["distance"], 3);
    assert_eq!(hits[0]["labels"], serde_json::json!(["A1", "csam"]));

    // Far from both stored hashes (128 bits from B, 256 from A): no hit.
    let far = [0xc3u8; 32];
    let run = run_client(&py, &svc, &[&hex(&far)]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.lines.len(), 1, "{:?}", run.lines);
    assert_eq!(run.lines[0]["query"], 0);
    assert_eq!(run.lines[0]["hits"], serde_json::json!([]));

    // A batch: --type md5 for the bare hash, an explicit pdq: one, and a
    // radius wide enough to reach B from the far hash.
    let far_pdq = format!("pdq:{}", hex(&far));
    let run = run_client(
        &py,
        &svc,
        &["--type", "md5", "--radius", "128", MD5, &far_pdq],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.lines.len(), 2, "{:?}", run.lines);
    let (md5, pdq) = (&run.lines[0], &run.lines[1]);
    assert_eq!(
        (md5["query"].clone(), pdq["query"].clone()),
        (0.into(), 1.into())
    );
    assert_eq!(md5["type"], "md5");
    assert_eq!(md5["hits"][0]["entry_id"], entry_md5.as_str());
    assert_eq!(md5["hits"][0]["set"], "hotline-a/csam");
    assert_eq!(md5["hits"][0]["distance"], 0);
    assert_eq!(md5["hits"][0]["labels"], serde_json::json!(["B2"]));
    let pdq_hits = pdq["hits"].as_array().unwrap();
    assert_eq!(pdq_hits.len(), 1, "{pdq}");
    assert_eq!(pdq_hits[0]["set"], "hotline-b/other");
    assert_eq!(pdq_hits[0]["distance"], 128);

    // An operator's certificate is refused by the match listener: exit 2 and
    // a message, no output.
    let run = run_client(&py, &args("ops"), &[&hex(&near)]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.lines.is_empty(), "{:?}", run.lines);
    assert!(
        run.stderr.contains("match_client: MatchHashes on"),
        "{}",
        run.stderr
    );
    // So is a malformed hash, before anything is sent.
    let run = run_client(&py, &svc, &["3c3c"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("64 hex digits"), "{}", run.stderr);

    let (status, rest) = server.stop();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: done in {:.2?}",
        started.elapsed()
    );
}
