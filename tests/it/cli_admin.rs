//! Operator commands against a running node: `hashfed import`, `sets`,
//! `entry` and `stats` go through the node's admin socket (the node holds
//! the database), and work on the database directly when it is stopped.

use crate::nodes;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn hashfed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn operator_commands_go_through_the_running_node() {
    let (tmp, dir) = nodes::node_dir("hotline-c");
    let d = dir.to_str().unwrap();
    let list = tmp.path().join("list.txt");
    let code = "f".repeat(64);
    std::fs::write(&list, format!("pdq {code}\nmd5 {}\n", "0".repeat(32))).unwrap();

    let mut server = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["serve", "--dir", d])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if line.contains("metrics listening") {
            break;
        }
    }
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let imported = hashfed(&[
        "import",
        "--dir",
        d,
        "--set",
        "hotline-c/list",
        list.to_str().unwrap(),
    ]);
    assert!(imported.status.success(), "{}", text(&imported));
    assert!(text(&imported).contains("2 added"), "{}", text(&imported));
    assert!(text(&imported).contains("through the running node"));

    let sets = hashfed(&["sets", "--dir", d]);
    assert!(
        text(&sets).contains("hotline-c/list\thead 2"),
        "{}",
        text(&sets)
    );

    let id = entry_id(&dir, "hotline-c/list", &code);
    let shown = hashfed(&["entry", "show", &id, "--dir", d]);
    assert!(shown.status.success(), "{}", text(&shown));
    assert!(text(&shown).contains(&code));
    let retracted = hashfed(&["entry", "retract", &id, "--dir", d]);
    assert!(
        text(&retracted).contains("retracted from hotline-c/list"),
        "{}",
        text(&retracted)
    );
    let again = hashfed(&["entry", "retract", &id, "--dir", d]);
    assert!(
        text(&again).contains("already retracted"),
        "{}",
        text(&again)
    );
    let missing = hashfed(&["entry", "show", &"0".repeat(32), "--dir", d]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("no entry"), "{}", text(&missing));

    let stats = hashfed(&["stats", "--dir", d]);
    assert!(text(&stats).contains("serving for"), "{}", text(&stats));
    assert!(
        text(&stats).contains("entries 2 (1 matchable)"),
        "{}",
        text(&stats)
    );

    assert!(Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap()
        .success());
    assert!(server.wait().unwrap().success());
    let logs = drain.join().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("stopped cleanly")),
        "{logs:?}"
    );

    // Stopped: the same commands work on the database directly.
    let stats = hashfed(&["stats", "--dir", d]);
    assert!(text(&stats).contains("not running"), "{}", text(&stats));
    assert!(
        text(&stats).contains("entries 2 (1 matchable)"),
        "{}",
        text(&stats)
    );
    let verify = hashfed(&["verify", "--dir", d]);
    assert!(verify.status.success(), "{}", text(&verify));
}

/// The id `hashfed` derives for a PDQ value in a set.
fn entry_id(_dir: &Path, set: &str, pdq_hex: &str) -> String {
    let signal = hashfed::model::Signal::parse("pdq", pdq_hex).unwrap();
    hashfed::model::EntryId::derive(&set.parse().unwrap(), &signal).to_string()
}

#[test]
fn keys_rotate_on_a_stopped_node_keeps_its_id_and_its_audit_log() {
    let (tmp, dir) = nodes::node_dir("hotline-k");
    let d = dir.to_str().unwrap();
    let id = hashfed::identity::load_config(&dir).unwrap().node_id;

    let both = hashfed(&["keys", "rotate", "--dir", d]);
    assert!(both.status.success(), "{}", text(&both));
    assert!(
        text(&both).contains("signing key 1 is now"),
        "{}",
        text(&both)
    );
    assert!(text(&both).contains("peer-client"), "{}", text(&both));
    let signing = hashfed(&["keys", "rotate", "--dir", d, "--signing"]);
    assert!(signing.status.success(), "{}", text(&signing));
    assert!(text(&signing).contains("signing key 2 is now"));
    assert!(!text(&signing).contains("certificates"));

    // Same node id; the card carries both rotations; the log verifies.
    assert_eq!(hashfed::identity::load_config(&dir).unwrap().node_id, id);
    let card = hashfed::peers::PeerCard::of_node(&dir, "127.0.0.1:1").unwrap();
    assert_eq!(card.keys().unwrap().len(), 3);
    let verify = hashfed(&["audit", "verify", "--dir", d]);
    assert!(verify.status.success(), "{}", text(&verify));
    let list = hashfed(&["audit", "list", "--dir", d]);
    assert_eq!(
        text(&list).matches("keys_rotated").count(),
        2,
        "{}",
        text(&list)
    );

    // Flags that contradict each other, and nodes on the development
    // certificates (fixed, shared), are refused with a reason.
    let both_flags = hashfed(&["keys", "rotate", "--dir", d, "--signing", "--tls"]);
    assert!(!both_flags.status.success());
    let dev = tmp.path().join("dev");
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    hashfed::identity::init_with(&dev, "dev", Some(&certs)).unwrap();
    let refused = hashfed(&["keys", "rotate", "--dir", dev.to_str().unwrap(), "--tls"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("development certificates"),
        "{}",
        text(&refused)
    );
}
