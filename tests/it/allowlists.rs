//! Allowlists on real nodes: a query (or an image) that matches an entry
//! of an allowlist within its threshold gets no hit from the block lists,
//! over gRPC and the CLI alike, and is counted in the metrics and the
//! transparency report; an allowlist shared by a hotline is signed and
//! synced like any set, and only where granted.

use std::time::Duration;

use crate::nodes::process::hashfed;
use crate::nodes::{add_pdq, channel, eventually, node_dir, pdq_query, TestNode};
use hashfed::database::Database;
use hashfed::identity::roles::ClientRole;
use hashfed::model::{EntryData, SetKind, Signal, SignalType};
use hashfed::ops::Actor;
use hashfed::store::Change;
use hashfed::wire::proto;
use hashfed::wire::proto::match_client::MatchClient;

const WAIT: Duration = Duration::from_secs(15);

fn code(i: u32) -> [u8; 32] {
    *blake3::hash(&i.to_be_bytes()).as_bytes()
}

/// `code` with its first `n` bits flipped.
fn flipped(mut code: [u8; 32], n: usize) -> [u8; 32] {
    for bit in 0..n {
        code[bit / 8] ^= 1 << (bit % 8);
    }
    code
}

fn md5(i: u32) -> Signal {
    Signal::from_bytes(SignalType::Md5, code(i)[..16].to_vec()).unwrap()
}

fn add(db: &Database, set: &str, signals: Vec<Signal>) {
    let changes: Vec<Change> = signals
        .into_iter()
        .map(|signal| {
            Change::Add(EntryData {
                signal,
                labels: vec![],
                external_id: None,
                vetting: vec![],
            })
        })
        .collect();
    db.apply(
        &set.parse().unwrap(),
        &changes,
        hashfed::model::audit::unaudited,
    )
    .unwrap();
}

fn create_allowlist(node: &TestNode, set: &str) {
    let state = node
        .node()
        .ops()
        .create_set(
            &Actor::new("operator"),
            &set.parse().unwrap(),
            SetKind::Allow,
            "known benign",
        )
        .unwrap();
    assert_eq!(state.info.kind, SetKind::Allow);
}

fn exact_query(signal: &Signal) -> proto::Query {
    proto::Query {
        signal: Some(hashfed::wire::signal(signal)),
        pdq_variants: vec![],
        quality: None,
        radius: None,
    }
}

async fn match_client(node: &TestNode) -> MatchClient<tonic::transport::Channel> {
    let cert = node.issue(ClientRole::Local);
    let ch = channel(&node.dir, node.node().addresses().match_, Some(&cert))
        .await
        .unwrap();
    MatchClient::new(ch)
}

/// A PNG with structure (high PDQ quality) and its hashes.
fn picture() -> (Vec<u8>, hashfed::signal::content::ImageHashes) {
    use hashfed::signal::content::{hash_image, HashOptions};
    let img = image::RgbImage::from_fn(256, 192, |x, y| {
        let v = ((x * 5 + y * 11) % 256) as u8;
        image::Rgb([v, (y % 48 * 5) as u8, (x % 40 * 6) as u8])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let hashes = hash_image(
        &png,
        &HashOptions::default(),
        &mut hashfed::signal::pdq::PdqHasher::new(),
    )
    .unwrap();
    (png, hashes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_in_a_block_list_and_an_allowlist_does_not_hit_and_the_report_counts_it() {
    let (png, hashes) = picture();
    let image_md5 = Signal::from_bytes(SignalType::Md5, hashes.exact.md5.to_vec()).unwrap();
    let mut node = TestNode::start("provider", |db| {
        add_pdq(
            db,
            "hotline/csam",
            &[code(1), code(2), hashes.pdq.hash.to_bytes()],
        );
        add(db, "hotline/csam", vec![md5(1)]);
    })
    .await;
    create_allowlist(&node, "provider/benign");
    // In the allowlist: code 1 and MD5 1 (also in the block list), a hash
    // 40 bits from code 2 (outside the threshold of 31), and the
    // picture's MD5 (the block list has its PDQ hash).
    add(
        &node.db,
        "provider/benign",
        vec![
            Signal::from_bytes(SignalType::Pdq, code(1).to_vec()).unwrap(),
            md5(1),
            Signal::from_bytes(SignalType::Pdq, flipped(code(2), 40).to_vec()).unwrap(),
            image_md5,
        ],
    );

    let mut client = match_client(&node).await;
    let answer = client
        .match_hashes(proto::MatchRequest {
            queries: vec![
                pdq_query(code(1).to_vec()),
                pdq_query(flipped(code(1), 10).to_vec()),
                exact_query(&md5(1)),
                pdq_query(code(2).to_vec()),
            ],
            tag: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let r = &answer.results;
    for (i, what) in [(0, "PDQ exact"), (1, "PDQ at 10 bits"), (2, "MD5")] {
        assert!(r[i].hits.is_empty(), "{what}: {:?}", r[i]);
        assert_eq!(r[i].allowlisted, ["provider/benign"], "{what}");
    }
    assert_eq!(
        r[3].hits.len(),
        1,
        "outside the allowlist's threshold: {:?}",
        r[3]
    );
    assert_eq!(r[3].hits[0].set, "hotline/csam");
    assert!(r[3].allowlisted.is_empty());

    // An image: its PDQ hash is listed, its MD5 allowlisted: no hit.
    let image = client
        .match_image(proto::MatchImageRequest {
            image: png,
            dihedral: false,
            radius: None,
            quality_floor: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(image.hits.is_empty(), "{image:?}");
    assert_eq!(image.allowlisted, ["provider/benign"]);

    // Metrics: four queries answered by the allowlist (three hashes, one
    // image); the hits count has only the PDQ query outside it.
    let text = node.node().metrics().render();
    let sample = |name: &str, kind: &str| -> u64 {
        let prefix = format!("{name}{{type=\"{kind}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {prefix} in metrics"))
            .parse()
            .unwrap()
    };
    assert_eq!(sample("hashfed_match_allowlisted_total", "pdq"), 2);
    assert_eq!(sample("hashfed_match_allowlisted_total", "md5"), 1);
    assert_eq!(sample("hashfed_match_allowlisted_total", "image"), 1);
    assert_eq!(sample("hashfed_match_hits_total", "pdq"), 1);

    // The report: four allowlisted queries, by the allowlist; the CLI
    // (through the running node's socket) says the same.
    let today = hashfed::report::date(hashfed::store::usage::today());
    let report = node
        .node()
        .ops()
        .report(
            hashfed::store::usage::today(),
            hashfed::store::usage::today(),
        )
        .unwrap();
    assert_eq!(report.total.allowlisted, 4, "{report:?}");
    let benign: u64 = report
        .by_set
        .iter()
        .filter(|s| s.set == "provider/benign")
        .map(|s| s.figures.allowlisted)
        .sum();
    assert_eq!(benign, 4);
    let dir = node.dir.to_str().unwrap().to_owned();
    let out = hashfed(&[
        "report", "--dir", &dir, "--from", &today, "--to", &today, "--format", "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: hashfed::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli.total.allowlisted, report.total.allowlisted);
    assert_eq!(cli.by_set, report.by_set);

    // `hashfed match` says why there is no hit, and exits 1.
    let out = hashfed(&[
        "match",
        "--dir",
        &dir,
        &hashfed::signal::exact::to_hex(&code(1)),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("allowlisted by provider/benign"), "{text}");

    // Suppressing the allowlist turns the block hits back on.
    node.node()
        .ops()
        .suppress(
            &Actor::new("operator"),
            &"provider/benign".parse().unwrap(),
            true,
            "test",
        )
        .unwrap();
    let again = client
        .match_hashes(proto::MatchRequest {
            queries: vec![pdq_query(code(1).to_vec())],
            tag: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.results[0].hits.len(), 1);
    assert!(again.results[0].allowlisted.is_empty());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shared_allowlist_syncs_like_any_set_and_only_where_granted() {
    // Hotline A keeps two allowlists; provider B is granted one of them.
    let mut a = TestNode::start("a", |_| {}).await;
    let mut b = TestNode::start("b", |db| add_pdq(db, "ncmec/list", &[code(7), code(8)])).await;
    create_allowlist(&a, "a/benign");
    create_allowlist(&a, "a/private");
    add(
        &a.db,
        "a/benign",
        vec![Signal::from_bytes(SignalType::Pdq, code(7).to_vec()).unwrap()],
    );
    add(
        &a.db,
        "a/private",
        vec![Signal::from_bytes(SignalType::Pdq, code(8).to_vec()).unwrap()],
    );
    let mut client = match_client(&b).await;
    let ask = |c: [u8; 32]| proto::MatchRequest {
        queries: vec![pdq_query(c.to_vec())],
        tag: 0,
    };
    let before = client
        .match_hashes(ask(code(7)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.results[0].hits.len(), 1);

    a.add_peer(&b, &["a/benign"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    let head = |db: &Database| {
        db.settled(|s| s.set(&"a/benign".parse().unwrap()))
            .map_or(0, |s| s.head_seq)
    };
    eventually(WAIT, || head(&b.db) == 1).await.unwrap();
    let received = b.db.store().set(&"a/benign".parse().unwrap()).unwrap();
    assert_eq!(received.info.kind, SetKind::Allow);
    assert_eq!(received.upstream.as_deref(), Some("a"));
    assert!(
        received.signed_info.is_some(),
        "received allowlists are signed"
    );

    let after = client
        .match_hashes(ask(code(7)))
        .await
        .unwrap()
        .into_inner();
    assert!(after.results[0].hits.is_empty(), "{after:?}");
    assert_eq!(after.results[0].allowlisted, ["a/benign"]);
    // The allowlist A did not grant never reaches B; its hash still hits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.db.store().set(&"a/private".parse().unwrap()).is_none());
    let private = client
        .match_hashes(ask(code(8)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(private.results[0].hits.len(), 1);
    let compared = b.node().ops().verify_sets().await.unwrap();
    assert!(
        compared.iter().any(|c| c.set == "a/benign")
            && compared.iter().all(|c| c.verdict == "equal"),
        "{compared:?}"
    );
    b.stop().await;
    a.stop().await;
}

#[test]
fn set_create_makes_an_allowlist_and_refuses_what_it_cannot_make() {
    let (_tmp, dir) = node_dir("hotline");
    let dir = dir.to_str().unwrap();
    let out = hashfed(&["set", "create", "--dir", dir, "--allow", "hotline/benign"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("an allowlist"));
    // Again, the same: fine; as a block list: refused.
    let out = hashfed(&["set", "create", "--dir", dir, "--allow", "hotline/benign"]);
    assert!(out.status.success());
    let out = hashfed(&["set", "create", "--dir", dir, "hotline/benign"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another node's name: refused, in words.
    let out = hashfed(&["set", "create", "--dir", dir, "--allow", "ncmec/benign"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("own sets are named hotline/"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = hashfed(&["sets", "--dir", dir]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("hotline/benign\t") && l.contains("\tallowlist")),
        "{text}"
    );
    // The audit log says who made it, and what.
    let out = hashfed(&["audit", "list", "--dir", dir]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("an allowlist, by an operator"), "{text}");
}
