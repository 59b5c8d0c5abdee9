//! The hash database through its library API, on a real sled directory:
//! writes, retractions, local disabling, reopening, and PDQ answers checked
//! against a brute-force oracle.

use std::collections::BTreeMap;

use hashfed::database::{Database, Match, MatchError, PdqQuery};
use hashfed::model::{EntryData, EntryId, SetId, SetInfo, Signal};
use hashfed::signal::pdq::PdqHash;
use hashfed::store::{Change, Outcome, StoreOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn open(dir: &std::path::Path) -> Database {
    Database::open(dir, &StoreOptions::default()).expect("open database")
}

fn add(signal: Signal, labels: &[&str]) -> Change {
    Change::Add(EntryData {
        signal,
        labels: labels.iter().map(|s| s.to_string()).collect(),
        external_id: None,
        vetting: vec![],
    })
}

fn pdq(bytes: [u8; 32]) -> Signal {
    Signal::pdq(PdqHash::from_bytes(bytes))
}

fn make_set(db: &Database, origin: &str, name: &str, threshold: Option<u32>) -> SetId {
    let id = SetId::new(origin, name).unwrap();
    let mut info = SetInfo::new(id.clone());
    if let Some(t) = threshold {
        info.thresholds.insert("pdq".into(), t);
    }
    db.create_set(info, hashfed::model::audit::unaudited)
        .unwrap();
    id
}

#[test]
fn add_update_retract_disable_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let md5 = Signal::parse("md5", "d41d8cd98f00b204e9800998ecf8427e").unwrap();
    let code = [0x5a; 32];
    let (set, entry);
    {
        let db = open(dir.path());
        set = make_set(&db, "hotline-a", "confirmed", None);
        let applied = db
            .apply(
                &set,
                &[add(md5.clone(), &["A1"]), add(pdq(code), &["B2"])],
                hashfed::model::audit::unaudited,
            )
            .unwrap();
        assert_eq!(applied.appended, 2);
        entry = match applied.outcomes[1] {
            Outcome::Added(id) => id,
            ref other => panic!("{other:?}"),
        };
        // Importing the same thing again changes nothing.
        let again = db
            .apply(
                &set,
                &[add(md5.clone(), &["A1"])],
                hashfed::model::audit::unaudited,
            )
            .unwrap();
        assert_eq!(again.appended, 0);
        assert!(matches!(again.outcomes[0], Outcome::Unchanged(_)));
        // New labels are an update, recorded in the log.
        let update = db
            .apply(
                &set,
                &[add(md5.clone(), &["A1", "extra"])],
                hashfed::model::audit::unaudited,
            )
            .unwrap();
        assert!(matches!(update.outcomes[0], Outcome::Updated(_)));
        assert_eq!(db.match_exact(&md5).unwrap()[0].labels, vec!["A1", "extra"]);

        let mut near = code;
        near[0] ^= 0b111; // three bits away
        let hits = db
            .match_pdq(&PdqQuery::new(&[PdqHash::from_bytes(near)]))
            .unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].entry, hits[0].distance), (entry, 3));
        assert_eq!(hits[0].origin, "hotline-a");

        db.set_disabled(&entry, true, hashfed::model::audit::unaudited)
            .unwrap();
        assert!(db.match_exact(&pdq(code)).unwrap().is_empty());
        db.set_disabled(&entry, false, hashfed::model::audit::unaudited)
            .unwrap();
        assert_eq!(db.match_exact(&pdq(code)).unwrap().len(), 1);
        db.store().flush().unwrap();
    }
    let db = open(dir.path());
    assert_eq!(db.match_exact(&md5).unwrap()[0].labels, vec!["A1", "extra"]);
    assert_eq!(db.match_exact(&pdq(code)).unwrap()[0].entry, entry);
    let state = db.store().set(&set).unwrap();
    assert_eq!(state.head_seq, 3);
    let retract = db
        .apply(
            &set,
            &[Change::RetractValue {
                signal: pdq(code),
                reason: "error".into(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    assert_eq!(retract.outcomes, vec![Outcome::Retracted(vec![entry])]);
    assert!(db.match_exact(&pdq(code)).unwrap().is_empty());
    // A second retraction finds nothing to do and appends nothing.
    let twice = db
        .apply(
            &set,
            &[Change::RetractEntry {
                entry,
                reason: "again".into(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    assert_eq!(
        (twice.outcomes[0].clone(), twice.appended),
        (Outcome::NotFound, 0)
    );
    let log: Vec<_> = db
        .store()
        .log(&set, 0)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(log, vec![1, 2, 3, 4]);
    let report = db.store().verify().unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!((report.entries, report.matchable), (2, 1));
}

#[test]
fn external_ids_retract_every_hash_of_a_source_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let set = make_set(&db, "ncmec", "hashes", None);
    let ext = |s: Signal| {
        Change::Add(EntryData {
            signal: s,
            labels: vec![],
            external_id: Some("ncmec:7".into()),
            vetting: vec![],
        })
    };
    let md5 = Signal::parse("md5", &"ab".repeat(16)).unwrap();
    let sha1 = Signal::parse("sha1", &"cd".repeat(20)).unwrap();
    db.apply(
        &set,
        &[ext(md5.clone()), ext(sha1.clone())],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    let out = db
        .apply(
            &set,
            &[Change::RetractExternal {
                external_id: "ncmec:7".into(),
                reason: "deleted at source".into(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    assert!(matches!(&out.outcomes[0], Outcome::Retracted(ids) if ids.len() == 2));
    assert!(db.match_exact(&md5).unwrap().is_empty());
    assert!(db.match_exact(&sha1).unwrap().is_empty());
    assert!(db.store().verify().unwrap().is_ok());
}

#[test]
fn query_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let h = [PdqHash::ZERO];
    let mut q = PdqQuery::new(&h);
    q.quality = Some(49);
    assert!(matches!(
        db.match_pdq(&q),
        Err(MatchError::LowQuality {
            quality: 49,
            floor: 50
        })
    ));
    q.quality = Some(50);
    q.radius = Some(129);
    assert!(matches!(
        db.match_pdq(&q),
        Err(MatchError::RadiusTooLarge(129))
    ));
    let nine = [PdqHash::ZERO; 9];
    assert!(matches!(
        db.match_pdq(&PdqQuery::new(&nine)),
        Err(MatchError::BadVariantCount(9))
    ));
    assert!(matches!(
        db.match_pdq(&PdqQuery::new(&[])),
        Err(MatchError::BadVariantCount(0))
    ));
}

/// What the oracle knows about one live entry.
struct Known {
    set: SetId,
    code: PdqHash,
    threshold: u32,
}

fn oracle(
    known: &BTreeMap<EntryId, Known>,
    hashes: &[PdqHash],
    radius: Option<u32>,
) -> Vec<(u32, SetId, EntryId, usize)> {
    let mut out = Vec::new();
    for (id, k) in known {
        let (d, v) = hashes
            .iter()
            .enumerate()
            .map(|(v, h)| (h.distance(&k.code), v))
            .min()
            .unwrap();
        if d <= radius.unwrap_or(k.threshold) {
            out.push((d, k.set.clone(), *id, v));
        }
    }
    out.sort();
    out
}

fn summary(hits: &[Match]) -> Vec<(u32, SetId, EntryId, usize)> {
    hits.iter()
        .map(|m| (m.distance, m.set.clone(), m.entry, m.variant))
        .collect()
}

fn flip(code: [u8; 32], bits: &[u16]) -> [u8; 32] {
    let mut c = code;
    for &b in bits {
        c[(b % 256) as usize / 8] ^= 1 << (b % 8);
    }
    c
}

/// Random and clustered codes in two sets with different thresholds, with
/// retractions and local disabling, queried with and without dihedral-like
/// extra hashes at radii 0-128 and at the sets' own thresholds: every answer
/// equals the brute-force oracle, before and after reopening.
#[test]
fn pdq_matches_equal_brute_force_oracle() {
    let strategy = (
        prop::collection::vec(any::<[u8; 32]>(), 1..6), // cluster centres
        prop::collection::vec(
            (
                0usize..6,
                prop::collection::vec(any::<u16>(), 0..40),
                any::<bool>(),
            ),
            1..300,
        ),
        prop::collection::vec(
            (
                0usize..6,
                prop::collection::vec(any::<u16>(), 0..60),
                prop::collection::vec(any::<[u8; 32]>(), 0..8),
                prop::option::of(0u32..=128),
            ),
            1..12,
        ),
        any::<u64>(),
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    runner
        .run(&strategy, |(centres, members, queries, seed)| {
            let dir = tempfile::tempdir().unwrap();
            let db = open(dir.path());
            let tight = make_set(&db, "a", "tight", Some(10));
            let wide = make_set(&db, "b", "wide", Some(70));
            let mut known = BTreeMap::new();
            let mut changes = (Vec::new(), Vec::new());
            for (i, (c, bits, in_wide)) in members.iter().enumerate() {
                let code = flip(centres[c % centres.len()], bits);
                let (set, threshold, list) = if *in_wide {
                    (&wide, 70, &mut changes.1)
                } else {
                    (&tight, 10, &mut changes.0)
                };
                list.push(add(pdq(code), &[&format!("n{i}")]));
                let id = EntryId::derive(set, &pdq(code));
                known.insert(
                    id,
                    Known {
                        set: set.clone(),
                        code: PdqHash::from_bytes(code),
                        threshold,
                    },
                );
            }
            db.apply(&tight, &changes.0, hashfed::model::audit::unaudited)
                .unwrap();
            db.apply(&wide, &changes.1, hashfed::model::audit::unaudited)
                .unwrap();
            // Retract about a tenth and disable about a tenth, chosen by the seed.
            let ids: Vec<EntryId> = known.keys().copied().collect();
            for (n, id) in ids.iter().enumerate() {
                let pick = (seed.rotate_left(n as u32) ^ n as u64) % 10;
                if pick == 0 {
                    let set = known[id].set.clone();
                    db.apply(
                        &set,
                        &[Change::RetractEntry {
                            entry: *id,
                            reason: String::new(),
                        }],
                        hashfed::model::audit::unaudited,
                    )
                    .unwrap();
                    known.remove(id);
                } else if pick == 1 {
                    db.set_disabled(id, true, hashfed::model::audit::unaudited)
                        .unwrap();
                    known.remove(id);
                }
            }
            let check = |db: &Database| -> Result<(), TestCaseError> {
                for (c, bits, extra, radius) in &queries {
                    let mut hashes =
                        vec![PdqHash::from_bytes(flip(centres[c % centres.len()], bits))];
                    hashes.extend(extra.iter().map(|e| PdqHash::from_bytes(*e)));
                    for n in [1, hashes.len()] {
                        let mut q = PdqQuery::new(&hashes[..n]);
                        q.radius = *radius;
                        let got = summary(&db.match_pdq(&q).unwrap());
                        prop_assert_eq!(got, oracle(&known, &hashes[..n], *radius));
                    }
                }
                Ok(())
            };
            check(&db)?;
            let report = db.store().verify().unwrap();
            prop_assert!(report.is_ok(), "{:?}", report.problems);
            drop(db);
            check(&open(dir.path()))?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_store_in_use_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    match Database::open(dir.path(), &StoreOptions::default()) {
        Err(e) => assert!(e.to_string().contains("in use by another process"), "{e}"),
        Ok(_) => panic!("opened twice"),
    }
}

/// A clean close writes an index snapshot that the next open uses; a write
/// since, or a damaged snapshot, sends the open back to the store, and
/// every way gives the same answers.
#[test]
fn index_snapshot_is_used_only_when_current_and_intact() {
    use hashfed::database::IndexSource;
    let dir = tempfile::tempdir().unwrap();
    let md5 = Signal::parse("md5", &"12".repeat(16)).unwrap();
    let codes: Vec<[u8; 32]> = (0..300u32)
        .map(|i| {
            let mut c = [0u8; 32];
            c[..4].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
            c[31] = i as u8;
            c
        })
        .collect();
    let set;
    {
        let db = open(dir.path());
        assert_eq!(db.index_source(), IndexSource::Store);
        set = make_set(&db, "o", "snap", None);
        let mut changes: Vec<Change> = codes.iter().map(|c| add(pdq(*c), &[])).collect();
        changes.push(add(md5.clone(), &[]));
        db.apply(&set, &changes, hashfed::model::audit::unaudited)
            .unwrap();
        db.apply(
            &set,
            &[Change::RetractValue {
                signal: pdq(codes[7]),
                reason: String::new(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
        db.close().unwrap();
    }
    // Matches, then whether each entry is found by id (through the entry
    // id map, which has its own snapshot).
    let answers = |db: &Database| -> Vec<usize> {
        let mut out: Vec<usize> = codes
            .iter()
            .map(|c| db.match_exact(&pdq(*c)).unwrap().len())
            .collect();
        out.push(db.match_exact(&md5).unwrap().len());
        for signal in codes.iter().map(|c| pdq(*c)).chain([md5.clone()]) {
            let found = db.store().entry(&EntryId::derive(&set, &signal)).unwrap();
            out.push(usize::from(found.is_some()));
        }
        assert_eq!(db.store().stats().unwrap().entries, 301);
        out
    };
    let db = open(dir.path());
    assert_eq!(db.index_source(), IndexSource::Snapshot);
    let expected = answers(&db);
    assert!(db.store().ids_from_snapshot());
    assert_eq!(expected.iter().sum::<usize>(), 300 + 301);
    assert_eq!(expected[7], 0);
    // A write after the snapshot makes it stale.
    db.apply(
        &set,
        &[Change::RetractValue {
            signal: pdq(codes[8]),
            reason: String::new(),
        }],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.index_source(), IndexSource::Store);
    assert!(!db.store().ids_from_snapshot());
    let now = answers(&db);
    assert_eq!(now[8], 0);
    db.close().unwrap();
    // A damaged snapshot is ignored.
    let path = dir.path().join("index.snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let db = open(dir.path());
    assert_eq!(db.index_source(), IndexSource::Store);
    assert_eq!(answers(&db), now);
    db.close().unwrap();
    let db = open(dir.path());
    assert_eq!(db.index_source(), IndexSource::Snapshot);
    assert!(db.store().ids_from_snapshot());
    assert_eq!(answers(&db), now);
    db.close().unwrap();
    // So is a damaged id map snapshot, on its own.
    let path = dir.path().join("ids.snapshot");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let db = open(dir.path());
    assert_eq!(db.index_source(), IndexSource::Snapshot);
    assert!(!db.store().ids_from_snapshot());
    assert_eq!(answers(&db), now);
    db.close().unwrap();
    let db = open(dir.path());
    assert!(db.store().ids_from_snapshot());
    assert_eq!(answers(&db), now);
}

#[test]
fn an_entry_moved_to_another_source_record_follows_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let set = make_set(&db, "ncmec", "moves", None);
    let md5 = Signal::parse("md5", &"ef".repeat(16)).unwrap();
    let with_ext = |ext: &str| {
        Change::Add(EntryData {
            signal: md5.clone(),
            labels: vec![],
            external_id: Some(ext.into()),
            vetting: vec![],
        })
    };
    db.apply(
        &set,
        &[with_ext("ncmec:1")],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    db.apply(
        &set,
        &[with_ext("ncmec:2")],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    let retract = |ext: &str| Change::RetractExternal {
        external_id: ext.into(),
        reason: String::new(),
    };
    let old = db
        .apply(
            &set,
            &[retract("ncmec:1")],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    assert_eq!(old.outcomes, vec![Outcome::NotFound]);
    assert_eq!(db.match_exact(&md5).unwrap().len(), 1);
    let new = db
        .apply(
            &set,
            &[retract("ncmec:2")],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    assert!(matches!(&new.outcomes[0], Outcome::Retracted(ids) if ids.len() == 1));
    assert!(db.match_exact(&md5).unwrap().is_empty());
}

/// What a reader sees through `settled` has landed whole: a writer lands
/// pages of entries, each with a counter beside it in the same batch (as an
/// exchange's cursor is); a reader that sees the counter at `n` finds page
/// `n`'s entries in the indexes at once. Through a plain store read, the
/// batch is visible a moment before the indexes follow it (the demo's
/// provider saw "caught up" and then no hit).
#[test]
fn what_a_settled_read_sees_is_matchable() {
    const PAGES: u64 = 300;
    const PER_PAGE: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open(dir.path()));
    let set = make_set(&db, "provider", "feed", None);
    let md5 = |page: u64, i: u64| {
        let digest = blake3::hash(&[page.to_be_bytes(), i.to_be_bytes()].concat());
        Signal::from_bytes(
            hashfed::model::SignalType::Md5,
            digest.as_bytes()[..16].to_vec(),
        )
        .unwrap()
    };
    let writer = {
        let (db, set) = (db.clone(), set.clone());
        std::thread::spawn(move || {
            for page in 1..=PAGES {
                let changes: Vec<Change> = (0..PER_PAGE).map(|i| add(md5(page, i), &[])).collect();
                db.apply_exchange_page(
                    &set,
                    &changes,
                    "feed",
                    |_, _| page.to_be_bytes().to_vec(),
                    hashfed::model::audit::unaudited,
                )
                .unwrap();
            }
        })
    };
    let counter = |db: &Database| {
        db.settled(|store| store.exchange_state("feed"))
            .unwrap()
            .map_or(0, |b| u64::from_be_bytes(b[..8].try_into().unwrap()))
    };
    let mut seen = 0;
    while seen < PAGES {
        let now = counter(&db);
        if now == seen {
            std::thread::yield_now();
            continue;
        }
        // The last entry of the page the counter names, the first checked.
        let hits = db.match_exact(&md5(now, PER_PAGE - 1)).unwrap();
        assert_eq!(
            hits.len(),
            1,
            "page {now} counted but its entries do not match"
        );
        seen = now;
    }
    writer.join().unwrap();
}
