//! Operator commands against a running node: every command that reads or
//! changes the database goes through the node's admin socket (the node
//! holds the database), and works on the database directly when it is
//! stopped, with the same output and exit codes.

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

/// One command of the running/stopped comparison: its arguments (after
/// the subcommand and `--dir`), the exit code it must give, and whether
/// its standard output must be the same running and stopped.
struct Case {
    args: Vec<String>,
    code: i32,
    same: bool,
}

fn case(args: &[&str], code: i32, same: bool) -> Case {
    Case {
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        code,
        same,
    }
}

/// Runs every case against the node in `dir`; returns each one's stdout.
fn run_cases(dir: &Path, cases: &[Case], phase: &str) -> Vec<Vec<u8>> {
    cases
        .iter()
        .map(|c| {
            let mut args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            args.splice(1..1, ["--dir", dir.to_str().unwrap()]);
            let out = hashfed(&args);
            assert_eq!(
                out.status.code(),
                Some(c.code),
                "{phase}: hashfed {}: {}",
                c.args.join(" "),
                text(&out)
            );
            out.stdout
        })
        .collect()
}

/// Every command that reads or changes the database works against a
/// running node (through its admin socket; before, match, export and
/// verify failed with "the store is in use") and against the same node
/// stopped, with the same answers, and exit codes as grep's: 0 found or
/// consistent, 1 nothing found, 2 an error.
#[test]
fn every_command_answers_the_same_running_and_stopped() {
    let (tmp, dir) = nodes::node_dir("hotline-r");
    let work = tmp.path();
    let d = dir.to_str().unwrap();

    // An image whose PDQ hash and MD5 are in the set, two more hashes, and
    // a retracted entry (for --include-retracted).
    let img = image::RgbImage::from_fn(240, 180, |x, y| {
        let v = (x * 7 + y * 13) ^ (x * y / 5);
        image::Rgb([(v % 256) as u8, (x % 256) as u8, ((v / 3) % 256) as u8])
    });
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let png = png.into_inner();
    let image_path = work.join("upload.png");
    std::fs::write(&image_path, &png).unwrap();
    let hashes = hashfed::signal::content::hash_image(
        &png,
        &Default::default(),
        &mut hashfed::signal::pdq::PdqHasher::new(),
    )
    .unwrap();
    assert!(hashes.pdq.quality >= 50, "{}", hashes.pdq.quality);
    let image_pdq = nodes::hex(&hashes.pdq.hash.to_bytes());
    let image_md5 = nodes::hex(&hashes.exact.md5);
    let pdq = "ab".repeat(32);
    // 8 bits from `pdq`.
    let near = format!("54{}", "ab".repeat(31));
    let md5 = "d41d8cd98f00b204e9800998ecf8427e";
    let sha256 = "5e".repeat(32);
    let list = work.join("list.jsonl");
    std::fs::write(
        &list,
        [
            format!(
                r#"{{"type":"pdq","value":"{image_pdq}","labels":["A1"],"external_id":"case-1"}}"#
            ),
            format!(r#"{{"type":"md5","value":"{image_md5}","labels":["A1"]}}"#),
            format!(r#"{{"type":"pdq","value":"{pdq}","labels":["B2","csam"]}}"#),
            format!(r#"{{"type":"md5","value":"{md5}"}}"#),
            format!(r#"{{"type":"sha256","value":"{sha256}"}}"#),
            format!(r#"{{"op":"retract","type":"sha256","value":"{sha256}"}}"#),
        ]
        .join("\n"),
    )
    .unwrap();
    let set = "hotline-r/list";
    let imported = hashfed(&["import", "--dir", d, "--set", set, list.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", text(&imported));
    let id = entry_id(&dir, set, &pdq);
    let image = image_path.to_str().unwrap();
    let unknown = "00".repeat(32);

    let reads = |phase: &str| {
        let csv = work.join(format!("{phase}.csv"));
        let csv = csv.to_str().unwrap().to_owned();
        let cases = vec![
            case(&["match", &pdq, &format!("md5:{md5}")], 0, true),
            case(&["match", "--json", "--radius", "8", &near], 0, true),
            case(
                &["match", &unknown, &format!("md5:{}", "1".repeat(32))],
                1,
                true,
            ),
            case(&["match", "zz"], 2, true),
            case(&["match", "--radius", "129", &pdq], 2, true),
            case(&["match", "--image", "--dihedral", image], 0, true),
            case(
                &[
                    "match",
                    "--image",
                    "--json",
                    "--quality-floor",
                    "101",
                    image,
                ],
                0,
                true,
            ),
            case(&["export"], 0, true),
            case(&["export", "--format", "te-csv", "-o", &csv], 0, true),
            case(
                &[
                    "export",
                    "--set",
                    set,
                    "--format",
                    "te-lines",
                    "--include-retracted",
                ],
                0,
                true,
            ),
            case(&["export", "--set", "hotline-r/none"], 2, true),
            case(&["verify"], 0, true),
            case(&["sets"], 0, true),
            case(&["entry", "show", &id], 0, true),
            case(&["entry", "show", &"0".repeat(32)], 1, true),
            case(
                &[
                    "report",
                    "--from",
                    "2020-01-01",
                    "--to",
                    "2020-01-02",
                    "--format",
                    "json",
                ],
                0,
                true,
            ),
            case(&["peer", "list"], 0, true),
            case(&["set", "verify"], 0, true),
            case(&["audit", "verify"], 0, false),
            case(&["stats"], 0, false),
            case(&["status"], 0, false),
        ];
        let out = run_cases(&dir, &cases, phase);
        let csv = std::fs::read(&csv).unwrap();
        (cases, out, csv)
    };
    // What changes the node (each twice: running, then stopped).
    let changes = |phase: &str| {
        let backup = work.join(format!("{phase}.backup"));
        let cases = vec![
            case(&["entry", "disable", &id], 0, false),
            case(&["entry", "enable", &id], 0, false),
            case(&["keys", "rotate", "--signing"], 0, false),
            case(&["backup", "--out", backup.to_str().unwrap()], 0, false),
        ];
        run_cases(&dir, &cases, phase);
        assert!(backup.is_file());
    };

    let mut server = nodes::process::serve(&dir);
    let (cases, running, running_csv) = reads("running");
    changes("running");
    nodes::process::kill(&mut server.child, "-TERM");
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stopped cleanly")),
        "{:?}",
        server.log.lock().unwrap()
    );
    assert!(!hashfed::server::admin_socket(&dir).exists());
    let (_, stopped, stopped_csv) = reads("stopped");
    changes("stopped");

    for ((c, r), s) in cases.iter().zip(&running).zip(&stopped) {
        if c.same {
            assert_eq!(
                String::from_utf8_lossy(r),
                String::from_utf8_lossy(s),
                "hashfed {}",
                c.args.join(" ")
            );
        }
    }
    assert_eq!(running_csv, stopped_csv);
    let stdout = |args: &[&str]| {
        let i = cases.iter().position(|c| c.args == args).unwrap();
        String::from_utf8_lossy(&running[i]).into_owned()
    };
    // What the answers say (the same running and stopped, as checked).
    let found = stdout(&["match", &pdq, &format!("md5:{md5}")]);
    assert!(
        found.contains(&format!("{pdq}\t{set}\t{id}\tpdq\tdistance 0\tB2,csam")),
        "{found}"
    );
    assert!(found.contains(&format!("md5:{md5}\t{set}\t")), "{found}");
    let near_hit: serde_json::Value =
        serde_json::from_str(stdout(&["match", "--json", "--radius", "8", &near]).trim()).unwrap();
    assert_eq!(near_hit["distance"], 8, "{near_hit}");
    assert_eq!(near_hit["entry"], id.as_str());
    assert_eq!(near_hit["external_id"], serde_json::Value::Null);
    let by_image = stdout(&["match", "--image", "--dihedral", image]);
    assert!(by_image.contains("\tpdq\tdistance 0\tA1"), "{by_image}");
    assert!(by_image.contains("\tmd5\tdistance 0\tA1"), "{by_image}");
    // Under the quality floor: PDQ is not matched, the MD5 still is.
    let floor = stdout(&[
        "match",
        "--image",
        "--json",
        "--quality-floor",
        "101",
        image,
    ]);
    assert_eq!(floor.lines().count(), 1, "{floor}");
    assert!(floor.contains(r#""type":"md5""#), "{floor}");
    let exported = stdout(&["export"]);
    assert_eq!(exported.lines().count(), 4, "{exported}");
    let retracted = stdout(&[
        "export",
        "--set",
        set,
        "--format",
        "te-lines",
        "--include-retracted",
    ]);
    assert!(
        retracted.contains(&format!("sha256 {sha256}")),
        "{retracted}"
    );
    assert!(String::from_utf8_lossy(&running_csv).starts_with("signal_type,signal_str"));
    let verify = stdout(&["verify"]);
    assert!(
        verify.contains("1 sets, 6 log records, 5 entries (4 matchable): consistent"),
        "{verify}"
    );

    // A directory that is not a node: an error, and nothing is made there.
    let nothing = work.join("not-a-node");
    let n = nothing.to_str().unwrap();
    for args in [
        vec!["match", "--dir", n, &pdq],
        vec!["verify", "--dir", n],
        vec!["export", "--dir", n],
        vec!["stats", "--dir", n],
    ] {
        let out = hashfed(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(
            text(&out).contains("not a node directory"),
            "{}",
            text(&out)
        );
    }
    assert!(!nothing.exists());
}
