//! Data minimisation, end to end through the `hashfed` binary: after
//! 10,000 non-matching queries (PDQ and exact, as batches, single calls and
//! a stream), the store holds exactly what it held before (but for the
//! day's query counts per signal type), and the node's
//! logs, at their most verbose, hold no query value. A query that does
//! match leaves one match record, which holds no query value either.

use crate::nodes;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::nodes::{add_pdq, channel, hex, pdq_query};
use hashfed::database::Database;
use hashfed::identity::roles::ClientRole;
use hashfed::store::{keys, Store, StoreOptions};
use hashfed::wire::proto::{self, match_client::MatchClient};

/// A deterministic stream of pseudo-random bytes (xorshift), so a failure
/// names values that can be reproduced.
struct Bytes(u64);

impl Bytes {
    fn fill(&mut self, out: &mut [u8]) {
        for b in out {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}

fn dump(store_dir: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = Store::open(store_dir, &StoreOptions::default()).unwrap();
    store.raw_scan().map(Result::unwrap).collect()
}

fn sha256_query(value: Vec<u8>) -> proto::Query {
    proto::Query {
        signal: Some(proto::Signal {
            r#type: proto::SignalType::Sha256 as i32,
            value,
            opaque_type: String::new(),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn non_matching_queries_leave_no_trace_in_store_or_logs() {
    let (tmp, dir) = nodes::node_dir("provider-m");
    let store_dir = dir.join("store");
    // 200 entries, all with bytes 0..16 = 0x00, so random queries (whose
    // bytes are all over the place) are ~128 bits away from every one.
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    let mut entries = Vec::new();
    for _ in 0..200 {
        let mut code = [0u8; 32];
        rng.fill(&mut code[16..]);
        entries.push(code);
    }
    {
        let db = Database::open(&store_dir, &StoreOptions::default()).unwrap();
        add_pdq(&db, "hotline-a/csam", &entries);
        db.close().unwrap();
    }
    let before = dump(&store_dir);

    let log_path = tmp.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["serve", "--dir", dir.to_str().unwrap()])
        // Everything the node and its gRPC stack log, at the finest level.
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let addr: std::net::SocketAddr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if let Some(a) = line.split("match listening on ").nth(1) {
            break a.trim().parse().unwrap();
        }
    };
    // Keep draining the log into the file while the test runs.
    let copier = std::thread::spawn(move || {
        let mut log = log;
        std::io::copy(&mut stderr, &mut log).unwrap();
    });

    let cert = hashfed::identity::roles::issue_client(&dir, "svc", ClientRole::Local, 1).unwrap();
    let mut client = MatchClient::new(channel(&dir, addr, Some(&cert)).await.unwrap());
    let mut queries: Vec<proto::Query> = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    for i in 0..10_000 {
        if i % 5 == 0 {
            let mut v = vec![0u8; 32];
            rng.fill(&mut v);
            values.push(v.clone());
            queries.push(sha256_query(v));
        } else {
            let mut v = vec![0u8; 32];
            rng.fill(&mut v);
            v[0] |= 0x81; // never all-zero in the first bytes
            values.push(v.clone());
            queries.push(pdq_query(v));
        }
    }
    let mut answered = 0;
    // 5,000 as batches of 100.
    for chunk in queries[..5_000].chunks(100) {
        let r = client
            .match_hashes(proto::MatchRequest {
                queries: chunk.to_vec(),
                tag: 0,
            })
            .await
            .unwrap()
            .into_inner();
        answered += r.results.iter().filter(|q| q.hits.is_empty()).count();
    }
    // 1,000 single calls.
    for q in &queries[5_000..6_000] {
        let r = client
            .match_hashes(proto::MatchRequest {
                queries: vec![q.clone()],
                tag: 0,
            })
            .await
            .unwrap()
            .into_inner();
        answered += r.results.iter().filter(|q| q.hits.is_empty()).count();
    }
    // 4,000 on a stream, 40 requests of 100.
    let requests: Vec<proto::MatchRequest> = queries[6_000..]
        .chunks(100)
        .enumerate()
        .map(|(tag, chunk)| proto::MatchRequest {
            queries: chunk.to_vec(),
            tag: tag as u64,
        })
        .collect();
    let mut stream = client
        .match_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    while let Some(r) = stream.message().await.unwrap() {
        answered += r.results.iter().filter(|q| q.hits.is_empty()).count();
    }
    assert_eq!(answered, 10_000, "every query answered, none matched");

    // One query that matches: 3 bits off an entry.
    let mut near = entries[7];
    near[31] ^= 0b111;
    let hit = client
        .match_hashes(proto::MatchRequest {
            queries: vec![pdq_query(near.to_vec())],
            tag: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hit.results[0].hits.len(), 1);
    assert_eq!(hit.results[0].hits[0].distance, 3);
    drop(client);

    assert!(Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap()
        .success());
    assert!(server.wait().unwrap().success());
    copier.join().unwrap();
    let logs = std::fs::read(&log_path).unwrap();
    assert!(
        String::from_utf8_lossy(&logs).contains("stopped cleanly"),
        "the node did not stop cleanly"
    );

    // The store: what it held before, plus one match record and the day's
    // counts for the transparency report (numbers, under names of signal
    // types and sets only).
    let after = dump(&store_dir);
    let (counts, added): (Vec<_>, Vec<_>) = after
        .iter()
        .filter(|kv| !before.contains(kv))
        .partition(|(k, _)| k[0] == keys::USAGE);
    let removed = before.iter().filter(|kv| !after.contains(kv)).count();
    assert_eq!(removed, 0, "queries changed stored data");
    let mut named: Vec<String> = counts
        .iter()
        .map(|(k, v)| {
            assert_eq!(v.len(), 8, "a count is a u64");
            String::from_utf8(k[5..].to_vec()).unwrap()
        })
        .collect();
    named.sort();
    assert_eq!(named, ["mhotline-a/csam\0pdq", "q\0pdq", "q\0sha256"]);
    assert_eq!(added.len(), 1, "exactly one new key (the match record)");
    assert_eq!(added[0].0[0], keys::MATCHES);
    let record = &added[0].1;
    assert_eq!(
        Needles::of(&[near.to_vec()]).raw_in(record),
        None,
        "the matching query is in its match record"
    );
    assert!(!String::from_utf8_lossy(record).contains(&hex(&near)));

    // No query value anywhere, not even an 8-byte piece of one: not in any
    // key or value, not in the logs (as hex, in either case, or raw).
    // (The matching query is left out of the store check: it shares most
    // of its bytes with the entry it matched, which is stored by design;
    // its match record was checked above.)
    let mut all = values.clone();
    all.push(near.to_vec());
    let in_logs = Needles::of(&all);
    let log_text = String::from_utf8_lossy(&logs).to_lowercase();
    assert!(
        log_text.len() > 10_000,
        "the trace log is suspiciously short"
    );
    assert_eq!(
        in_logs.hex_in(&log_text),
        None,
        "a query value is in the logs"
    );
    assert_eq!(
        in_logs.raw_in(&logs),
        None,
        "raw query bytes are in the logs"
    );
    let needles = Needles::of(&values);
    for (k, v) in &after {
        assert_eq!(needles.raw_in(k), None, "a query value is in a store key");
        assert_eq!(needles.raw_in(v), None, "a query value is in a store value");
        let text = String::from_utf8_lossy(v).to_lowercase();
        assert_eq!(
            needles.hex_in(&text),
            None,
            "a query value is in a store value"
        );
    }
}

/// Every 8-byte piece of every query value, raw and as hex.
struct Needles {
    raw: std::collections::HashSet<[u8; 8]>,
    hex: std::collections::HashSet<String>,
}

impl Needles {
    fn of(values: &[Vec<u8>]) -> Self {
        let mut raw = std::collections::HashSet::new();
        let mut hexes = std::collections::HashSet::new();
        for v in values {
            for w in v.windows(8) {
                raw.insert(<[u8; 8]>::try_from(w).unwrap());
                hexes.insert(hex(w));
            }
        }
        Needles { raw, hex: hexes }
    }

    /// The offset of a raw piece in `hay`, if any.
    fn raw_in(&self, hay: &[u8]) -> Option<usize> {
        hay.windows(8)
            .position(|w| self.raw.contains(&<[u8; 8]>::try_from(w).unwrap()))
    }

    /// The offset of a hex piece in `text` (lower case), if any.
    fn hex_in(&self, text: &str) -> Option<usize> {
        let b = text.as_bytes();
        (0..b.len().saturating_sub(15)).find(|&i| {
            b[i..i + 16].iter().all(u8::is_ascii_hexdigit)
                && self
                    .hex
                    .contains(std::str::from_utf8(&b[i..i + 16]).unwrap_or(""))
        })
    }
}
