//! The audit log through the `hashfed` binary: operator actions are
//! recorded in order with who did them, and a byte changed in a stored
//! record makes `hashfed audit verify` fail and name that record. Real node
//! directories (identity, signing key), real sled.

use crate::nodes;

use std::path::Path;
use std::process::{Command, Output};

use hashfed::store::keys;
use hashfed::store::raw::RawStore;

fn hashfed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = hashfed(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn d(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// Starts `hashfed serve` on `dir` and returns it with the rest of its
/// first log line that starts with `prefix` (an address); the log is
/// drained from then on.
fn serve(dir: &Path, prefix: &str) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["serve", "--dir", d(dir)])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let found = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(rest) = line.strip_prefix(prefix) {
            break rest.trim().to_owned();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, found)
}

#[test]
fn actions_are_audited_and_a_changed_record_is_named() {
    let (_ta, a) = nodes::node_dir("a");
    let (tb, b) = nodes::node_dir("b");
    let list = tb.path().join("list.txt");
    std::fs::write(
        &list,
        format!("pdq {}\nmd5 {}\n", "ab".repeat(32), "cd".repeat(16)),
    )
    .unwrap();
    ok(&[
        "import",
        "--dir",
        d(&a),
        "--set",
        "a/list",
        list.to_str().unwrap(),
    ]);
    let card = tb.path().join("b.card");
    ok(&[
        "peer",
        "invite",
        "--dir",
        d(&b),
        "--endpoint",
        "127.0.0.1:1",
        "-o",
        card.to_str().unwrap(),
    ]);
    ok(&[
        "peer",
        "add",
        "--dir",
        d(&a),
        card.to_str().unwrap(),
        "--send",
        "a/*",
    ]);
    ok(&["set", "share", "--dir", d(&a), "a/list", "--reshare"]);
    let entries = ok(&["export", "--dir", d(&a), "--set", "a/list"]);
    assert!(!entries.is_empty());
    let sets = ok(&["sets", "--dir", d(&a)]);
    assert!(sets.contains("a/list"), "{sets}");
    ok(&["peer", "suspend", "--dir", d(&a), "b"]);
    ok(&["peer", "revoke", "--dir", d(&a), "b"]);

    let listed = ok(&["audit", "list", "--dir", d(&a)]);
    let actions: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').nth(3).unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "set_created",
            "imported",
            "peer_added",
            "policy_signed",
            "peer_suspended",
            "peer_revoked"
        ],
        "{listed}"
    );
    // Who (the CLI on a stopped node runs the admin service in-process, as
    // the local socket would), what, and counts, never hash values.
    let actors: Vec<&str> = listed
        .lines()
        .map(|l| l.split('\t').nth(2).unwrap())
        .collect();
    assert_eq!(actors[..2], ["local-cli", "local-cli"], "{listed}");
    assert!(actors[2..].iter().all(|a| *a == "local-socket"), "{listed}");
    assert!(listed.contains("2 added"), "{listed}");
    assert!(!listed.contains(&"ab".repeat(32)) && !listed.contains(&"cd".repeat(16)));
    let page = ok(&[
        "audit",
        "list",
        "--dir",
        d(&a),
        "--after",
        "2",
        "--limit",
        "2",
        "--json",
    ]);
    let seqs: Vec<u64> = page
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [3, 4]);
    let verified = ok(&["audit", "verify", "--dir", d(&a)]);
    assert!(
        verified.contains("6 records, head signature valid"),
        "{verified}"
    );

    // Flip one byte of record 3's stored JSON (the node is stopped).
    {
        let raw = RawStore::open(&a.join("store")).unwrap();
        let key = keys::audit(3);
        let mut value = raw.get(&key).unwrap().unwrap();
        let at = value.iter().rposition(|&b| b == b'p').unwrap();
        value[at] = b'q';
        raw.put(&key, &value).unwrap();
        raw.flush().unwrap();
    }
    let o = hashfed(&["audit", "verify", "--dir", d(&a)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("record 3 was changed"), "{err}");

    // Rewriting the chain from there on (fresh digests) is caught by the
    // signed head.
    {
        let raw = RawStore::open(&a.join("store")).unwrap();
        let mut digest = hashfed::model::audit::genesis();
        for seq in 1..=6 {
            let key = keys::audit(seq);
            let mut value = raw.get(&key).unwrap().unwrap();
            digest = hashfed::model::audit::link(&digest, &value[32..]);
            value[..32].copy_from_slice(&digest);
            raw.put(&key, &value).unwrap();
        }
        let mut head = raw.get(keys::AUDIT_HEAD).unwrap().unwrap();
        head[8..40].copy_from_slice(&digest);
        raw.put(keys::AUDIT_HEAD, &head).unwrap();
        raw.flush().unwrap();
    }
    let o = hashfed(&["audit", "verify", "--dir", d(&a)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("head signature invalid"), "{err}");
}

/// Two-person vetting from the command line: three operators with their
/// own certificates against a running `hashfed serve`.
#[test]
fn operators_vet_from_the_command_line_with_their_certificates() {
    let (t, a) = nodes::node_dir("a");
    let certs = t.path().join("certs");
    for op in ["ana", "ben", "cy"] {
        ok(&[
            "client",
            "issue",
            "--dir",
            d(&a),
            op,
            "--operator",
            "--out",
            certs.to_str().unwrap(),
        ]);
    }
    let empty = t.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    // An empty import creates the set.
    ok(&[
        "import",
        "--dir",
        d(&a),
        "--set",
        "a/vetted",
        "--format",
        "te-lines",
        empty.to_str().unwrap(),
    ]);
    ok(&["set", "vetting", "--dir", d(&a), "a/vetted", "2"]);

    let (mut serve, admin) = serve(&a, "hashfed: admin listening on ");
    let as_op = |op: &str, args: &[&str]| -> Output {
        let cert = certs.join(format!("{op}.pem"));
        let key = certs.join(format!("{op}.key"));
        let mut all = vec!["entry", "--dir", d(&a)];
        all.extend_from_slice(args);
        all.extend([
            "--operator-cert",
            cert.to_str().unwrap(),
            "--operator-key",
            key.to_str().unwrap(),
            "--admin-addr",
            &admin,
        ]);
        hashfed(&all)
    };
    let value = "7c".repeat(32);
    let out = as_op("ana", &["submit", "--set", "a/vetted", &value]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let own = as_op("ana", &["confirm", &id]);
    assert_eq!(own.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&own.stderr).contains("cannot confirm"));
    let first = as_op("ben", &["confirm", &id]);
    assert!(String::from_utf8_lossy(&first.stderr).contains("1 of 2 confirmations"));
    let listed = as_op("cy", &["pending"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&format!("{id}\ta/vetted\t1 of 2")));
    let last = as_op("cy", &["confirm", &id]);
    let said = String::from_utf8_lossy(&last.stderr);
    assert!(
        last.status.success() && said.contains("in a/vetted at seq 1"),
        "{said}"
    );
    // Now it matches (over the running node's admin socket).
    let shown = ok(&["entry", "show", "--dir", d(&a), &id]);
    assert!(shown.contains("\"retracted\":false"), "{shown}");

    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    serve.wait().unwrap();
    let trail = ok(&["audit", "list", "--dir", d(&a)]);
    for action in [
        "vetting_set",
        "entry_submitted",
        "entry_confirmed",
        "entry_vetted",
    ] {
        assert!(trail.contains(action), "{action} missing: {trail}");
    }
    assert!(ok(&["audit", "verify", "--dir", d(&a)]).contains("head signature valid"));
}

/// A certificate near its end shows up weeks ahead: `hashfed status` warns
/// (exit 1) and the running node's metrics carry every expiry date.
#[test]
fn certificates_near_expiry_are_reported_ahead() {
    use std::io::{Read, Write};

    let (_t, a) = nodes::node_dir("a");
    let healthy = hashfed(&["status", "--dir", d(&a)]);
    assert!(healthy.status.success());
    let config = hashfed::identity::load_config(&a).unwrap();
    let ca = hashfed::identity::tls::CertKey {
        cert: std::fs::read_to_string(a.join("tls/node-ca.pem")).unwrap(),
        key: std::fs::read_to_string(a.join("tls/node-ca.key")).unwrap(),
    };
    let ca_name = format!("hashfed node CA a {}", config.node_id);
    let names = vec![
        format!("{}.hashfed", config.node_id),
        "localhost".into(),
        "127.0.0.1".into(),
    ];
    let short = hashfed::identity::tls::issue(
        &ca_name,
        &ca,
        &names,
        hashfed::identity::tls::Usage::Server,
        10,
    )
    .unwrap();
    std::fs::write(a.join("tls/admin.pem"), &short.cert).unwrap();
    std::fs::write(a.join("tls/admin.key"), &short.key).unwrap();

    let status = hashfed(&["status", "--dir", d(&a)]);
    assert_eq!(status.status.code(), Some(1));
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("certificate admin         WARNING: expires in 9 days")
            || text.contains("certificate admin         WARNING: expires in 10 days"),
        "{text}"
    );
    assert!(
        text.contains("certificate federation    expires in 36"),
        "{text}"
    );

    let (mut serve, url) = serve(&a, "hashfed: metrics listening on http://");
    let metrics = url.trim_end_matches("/metrics").to_owned();
    let mut conn = std::net::TcpStream::connect(&metrics).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    conn.read_to_string(&mut body).unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    serve.wait().unwrap();
    let admin_line = body
        .lines()
        .find(|l| {
            l.starts_with("hashfed_certificate_expiry_timestamp_seconds{certificate=\"admin\"}")
        })
        .unwrap_or_else(|| panic!("{body}"));
    let at: i64 = admin_line.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (9 * 86_400..=10 * 86_400 + 86_400).contains(&(at - now)),
        "{admin_line}"
    );
    assert_eq!(
        body.matches("hashfed_certificate_expiry_timestamp_seconds{")
            .count(),
        7
    );
}
