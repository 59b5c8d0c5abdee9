//! `hashfed import` / `export` / `verify` as an operator runs them: every
//! input format, bad records reported with their position, idempotent
//! re-imports, round trips, and a SIGKILL in the middle of a large import.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hashfed::database::Database;
use hashfed::model::{EntryId, Record, RecordBody, SetId, Signal};
use hashfed::store::{Store, StoreOptions};

fn hashfed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(args)
        .output()
        .expect("run hashfed")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn import(dir: &Path, set: &str, file: &Path, format: Option<&str>) -> Output {
    let dir = dir.to_str().unwrap();
    let file = file.to_str().unwrap();
    let mut args = vec!["import", "--dir", dir, "--set", set];
    if let Some(f) = format {
        args.extend(["--format", f]);
    }
    args.push(file);
    hashfed(&args)
}

fn store(dir: &Path) -> Store {
    Store::open(&dir.join("store"), &StoreOptions::default()).unwrap()
}

fn hex(byte: u8, n: usize) -> String {
    format!("{byte:02x}").repeat(n)
}

#[test]
fn each_format_imports_reports_bad_records_and_reimports_as_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let cases: Vec<(&str, String, usize)> = vec![
        (
            "in.jsonl",
            format!(
                "{{\"type\":\"pdq\",\"value\":\"{}\",\"labels\":[\"A1\"]}}\n{{\"type\":\"md5\",\"value\":\"nothex\"}}\n{{\"type\":\"sha256\",\"value\":\"{}\"}}\n",
                hex(0x11, 32),
                hex(0x22, 32)
            ),
            2,
        ),
        (
            "in.csv",
            format!(
                "signal_type,signal_str,collab,category,tags\r\npdq,{},Sample Signals,POSITIVE_CLASS,tag1 tag2\r\npdq,short,,,\r\nmd5,{},,,\r\n",
                hex(0x33, 32),
                hex(0x44, 16)
            ),
            2,
        ),
        (
            "in.txt",
            format!("pdq {}\nsha1 {}\nunknown type!\n", hex(0x55, 32), hex(0x66, 20)),
            2,
        ),
        (
            "in.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?>
<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">
  <images count="2">
    <image><member id="42">M</member><id>img1</id><classification>A1</classification>
      <fingerprints><md5>{}</md5><pdq>{}</pdq></fingerprints></image>
    <image><member id="42">M</member><id>img2</id><fingerprints></fingerprints></image>
  </images>
</queryResult>
"#,
                hex(0x77, 16),
                hex(0x78, 32)
            ),
            2,
        ),
        (
            "in.json",
            format!(
                r#"{{"count":2,"hashRecords":[{{"signalType":"ImagePDQ","hashValue":"{}","hashStatus":"Active","caseNumbers":{{"c1":"Active"}}}},{{"signalType":"ImagePDQ","hashStatus":"Active"}}]}}"#,
                hex(0x99, 32)
            ),
            1,
        ),
    ];
    for (name, content, good) in &cases {
        let file = tmp.path().join(name);
        std::fs::write(&file, content).unwrap();
        let set = format!("hotline-a/{}", name.replace('.', "-"));
        let first = import(&node, &set, &file, None);
        let err = text(&first.stderr);
        assert_eq!(first.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&format!("{good} added")), "{name}: {err}");
        assert!(err.contains("1 refused"), "{name}: {err}");
        // The bad record is named by its place in the file.
        assert!(
            err.lines().any(|l| l.contains(name)
                && (l.contains("line ") || l.contains("byte ") || l.contains("record "))),
            "{name}: {err}"
        );
        let head = store(&node).set(&set.parse().unwrap()).unwrap().head_seq;
        assert_eq!(head, *good as u64, "{name}");
        let again = import(&node, &set, &file, None);
        let err = text(&again.stderr);
        assert!(
            err.contains(&format!("0 added, 0 updated, {good} unchanged")),
            "{name}: {err}"
        );
        assert_eq!(
            store(&node).set(&set.parse().unwrap()).unwrap().head_seq,
            head,
            "{name}"
        );
    }
    // StopNCII case numbers identify victims and are not turned into labels.
    let s = store(&node);
    let pdq = Signal::parse("pdq", &hex(0x99, 32)).unwrap();
    let set: SetId = "hotline-a/in-json".parse().unwrap();
    let entry = s.entry(&EntryId::derive(&set, &pdq)).unwrap().unwrap();
    assert_eq!(entry.data.labels, vec!["stopncii"]);
    // NCMEC entries carry their source id and classification.
    let set: SetId = "hotline-a/in-xml".parse().unwrap();
    let md5 = Signal::parse("md5", &hex(0x77, 16)).unwrap();
    let entry = s.entry(&EntryId::derive(&set, &md5)).unwrap().unwrap();
    assert_eq!(entry.data.external_id.as_deref(), Some("ncmec:42:img1"));
    assert_eq!(entry.data.labels, vec!["classification:A1", "media:image"]);
    let report = s.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn ncmec_deletions_retract_every_hash_of_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let (md5, pdq) = (hex(0x12, 16), hex(0x34, 32));
    let add = tmp.path().join("add.xml");
    std::fs::write(
        &add,
        format!("<queryResult><images><image><member id=\"7\"/><id>e1</id><fingerprints><md5>{md5}</md5><pdq>{pdq}</pdq></fingerprints></image></images></queryResult>"),
    )
    .unwrap();
    let del = tmp.path().join("del.xml");
    std::fs::write(
        &del,
        "<queryResult><images><deletedImage><member id=\"7\"/><id>e1</id></deletedImage></images></queryResult>",
    )
    .unwrap();
    assert!(import(&node, "ncmec/feed", &add, None).status.success());
    let dir = node.to_str().unwrap();
    let hit = hashfed(&["match", "--dir", dir, &format!("md5:{md5}"), &pdq]);
    assert!(hit.status.success(), "{}", text(&hit.stdout));
    let out = import(&node, "ncmec/feed", &del, Some("ncmec-xml"));
    assert!(
        text(&out.stderr).contains("2 retracted"),
        "{}",
        text(&out.stderr)
    );
    let miss = hashfed(&["match", "--dir", dir, &format!("md5:{md5}"), &pdq]);
    assert_eq!(miss.status.code(), Some(1), "{}", text(&miss.stdout));
    assert_eq!(text(&miss.stdout).matches("no match").count(), 2);
}

#[test]
fn export_then_import_elsewhere_reproduces_entries_and_retractions() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let list = tmp.path().join("list.txt");
    let mut content = String::new();
    for i in 0..50u8 {
        content.push_str(&format!("pdq {}\nmd5 {}\n", hex(i, 32), hex(i, 16)));
    }
    std::fs::write(&list, content).unwrap();
    assert!(import(&a, "hotline-a/list", &list, None).status.success());
    // Withdraw one value on A.
    let retract = tmp.path().join("retract.jsonl");
    std::fs::write(
        &retract,
        format!(
            "{{\"op\":\"retract\",\"type\":\"md5\",\"value\":\"{}\"}}\n",
            hex(3, 16)
        ),
    )
    .unwrap();
    let out = import(&a, "hotline-a/list", &retract, None);
    assert!(
        text(&out.stderr).contains("1 retracted"),
        "{}",
        text(&out.stderr)
    );

    for format in ["jsonl", "te-csv", "te-lines"] {
        let file = tmp.path().join(format!("export.{format}"));
        let out = hashfed(&[
            "export",
            "--dir",
            a.to_str().unwrap(),
            "--set",
            "hotline-a/list",
            "--format",
            format,
            "--output",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let set = format!("hotline-b/{format}");
        let out = import(&b, &set, &file, Some(format));
        assert!(out.status.success(), "{format}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("99 added"),
            "{format}: {}",
            text(&out.stderr)
        );
    }
    // With retracted entries included, JSON lines carry the retraction over.
    let file = tmp.path().join("all.jsonl");
    let out = hashfed(&[
        "export",
        "--dir",
        a.to_str().unwrap(),
        "--include-retracted",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    std::fs::write(
        tmp.path().join("with-add.jsonl"),
        format!("{{\"type\":\"md5\",\"value\":\"{}\"}}\n", hex(3, 16)),
    )
    .unwrap();
    import(
        &b,
        "hotline-b/mirror",
        &tmp.path().join("with-add.jsonl"),
        None,
    );
    let out = import(&b, "hotline-b/mirror", &file, None);
    let err = text(&out.stderr);
    assert!(
        err.contains("99 added") && err.contains("1 retracted"),
        "{err}"
    );
    let verify = hashfed(&["verify", "--dir", b.to_str().unwrap()]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
}

#[test]
fn unknown_format_and_missing_file_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("n");
    let odd = tmp.path().join("odd.bin");
    std::fs::write(&odd, [0u8, 1, 2, 3]).unwrap();
    let out = import(&node, "o/s", &odd, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot tell the format"),
        "{}",
        text(&out.stderr)
    );
    let out = import(&node, "o/s", &tmp.path().join("missing"), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    let out = import(&node, "../etc", &odd, None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// A 50,000-record import killed with SIGKILL part-way: after reopening,
/// every entry is wholly there (log record, state, by-value key, PDQ slot,
/// match index) or wholly absent, and running the import again completes it.
#[test]
fn sigkill_during_import_leaves_whole_entries_and_rerun_completes() {
    const N: usize = 50_000;
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let list = tmp.path().join("big.txt");
    let mut values = Vec::with_capacity(N);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&list).unwrap());
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..N {
            let mut bytes = Vec::with_capacity(32);
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                bytes.extend_from_slice(&x.to_be_bytes());
            }
            let (kind, value) = if i % 2 == 0 {
                ("pdq", hashfed::signal::exact::to_hex(&bytes))
            } else {
                ("md5", hashfed::signal::exact::to_hex(&bytes[..16]))
            };
            writeln!(f, "{kind} {value}").unwrap();
            values.push(Signal::parse(kind, &value).unwrap());
        }
    }
    let set: SetId = "hotline-a/big".parse().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args([
            "import",
            "--dir",
            node.to_str().unwrap(),
            "--set",
            set.as_str(),
            "--progress-every",
            "4000",
        ])
        .arg(&list)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once a few batches have landed, mid-stream.
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = Instant::now();
    let mut progress = 0;
    while let Some(Ok(line)) = lines.next() {
        if line.contains("records applied") {
            progress += 1;
            if progress == 2 {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        progress == 2,
        "the import finished before it could be killed"
    );

    let present = |s: &Store| -> Vec<bool> {
        values
            .iter()
            .map(|v| s.entry(&EntryId::derive(&set, v)).unwrap().is_some())
            .collect()
    };
    {
        let s = store(&node);
        let report = s.verify().unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
        let here = present(&s);
        let count = here.iter().filter(|&&p| p).count();
        // Progress lines are printed after a flush: at least 8,000 are durable.
        assert!(
            (8_000..N).contains(&count),
            "{count} of {N} present after the kill"
        );
        // The log holds exactly the entries that exist, once each.
        let state = s.set(&set).unwrap();
        assert_eq!(state.head_seq as usize, count);
        let mut logged = std::collections::HashSet::new();
        for item in s.log(&set, 0).unwrap() {
            let (_, bytes) = item.unwrap();
            let RecordBody::Add(data) = Record::decode(&bytes).unwrap().body else {
                panic!("unexpected retraction")
            };
            assert!(logged.insert(EntryId::derive(&set, &data.signal)));
        }
        for (v, here) in values.iter().zip(&here) {
            assert_eq!(logged.contains(&EntryId::derive(&set, v)), *here);
            assert_eq!(!s.entries_with_value(v).unwrap().is_empty(), *here);
        }
        drop(s);
        // The index rebuilt at open agrees with the store.
        let db = Database::open(&node.join("store"), &StoreOptions::default()).unwrap();
        for (v, here) in values.iter().zip(&here) {
            assert_eq!(!db.match_exact(v).unwrap().is_empty(), *here);
        }
    }
    let out = import(&node, set.as_str(), &list, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = store(&node);
    assert!(present(&s).iter().all(|&p| p));
    assert_eq!(s.set(&set).unwrap().head_seq as usize, N);
    let report = s.verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.matchable as usize, N);
}

#[test]
fn operators_show_disable_enable_and_retract_single_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let node = tmp.path().join("node");
    let list = tmp.path().join("one.txt");
    let pdq = hex(0x5c, 32);
    std::fs::write(&list, format!("pdq {pdq}\n")).unwrap();
    assert!(import(&node, "hotline-a/ops", &list, None).status.success());
    let set: SetId = "hotline-a/ops".parse().unwrap();
    let id = EntryId::derive(&set, &Signal::parse("pdq", &pdq).unwrap()).to_string();
    let dir = node.to_str().unwrap();
    let matches = || hashfed(&["match", "--dir", dir, &pdq]).status.code();

    let shown = hashfed(&["entry", "--dir", dir, "show", &id]);
    assert!(
        text(&shown.stdout).contains(&format!("\"value\":\"{pdq}\"")),
        "{}",
        text(&shown.stdout)
    );
    assert_eq!(matches(), Some(0));
    assert!(hashfed(&["entry", "--dir", dir, "disable", &id])
        .status
        .success());
    assert_eq!(matches(), Some(1));
    assert!(hashfed(&["entry", "--dir", dir, "enable", &id])
        .status
        .success());
    assert_eq!(matches(), Some(0));
    let out = hashfed(&[
        "entry",
        "--dir",
        dir,
        "retract",
        &id,
        "--reason",
        "false positive",
    ]);
    assert!(
        text(&out.stderr).contains("retracted"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(matches(), Some(1));
    // Disabling is local: no log record; retracting is one.
    assert_eq!(store(&node).set(&set).unwrap().head_seq, 2);
    let bad = hashfed(&["entry", "--dir", dir, "show", "not-an-id"]);
    assert_eq!(bad.status.code(), Some(2));
    let missing = hashfed(&["entry", "--dir", dir, "show", &"0".repeat(32)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no entry"));
    assert!(hashfed(&["verify", "--dir", dir]).status.success());
}
