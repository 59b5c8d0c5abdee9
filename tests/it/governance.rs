//! Governance over real nodes (loopback, real mTLS, real sled): two-person
//! vetting by operator certificates, and the audit trail it leaves.

use crate::nodes;

use std::time::Duration;

use crate::nodes::{eventually, TestNode};
use hashfed::identity::roles::ClientRole;
use hashfed::model::audit::Action;
use hashfed::model::{EntryData, EntryId, SetId, SetInfo, Signal};
use hashfed::store::{Change, StoreError, VettingRefusal};
use hashfed::wire::proto::{self, admin_client::AdminClient};
use tonic::transport::Channel;
use tonic::Code;

/// How long a sync may take before a test gives up: generous, because CI
/// runs every test at once on two cores (a 10 s wait once ran out there).
const WAIT: Duration = Duration::from_secs(30);

async fn operator(node: &TestNode) -> AdminClient<Channel> {
    let cert = node.issue(ClientRole::Operator);
    let addr = node.node().addresses().admin;
    AdminClient::new(nodes::channel(&node.dir, addr, Some(&cert)).await.unwrap())
}

fn submit(set: &str, value: &str) -> proto::SubmitEntryRequest {
    proto::SubmitEntryRequest {
        set: set.into(),
        signal_type: "pdq".into(),
        value: value.into(),
        labels: vec!["sexual-abuse".into()],
        external_id: String::new(),
    }
}

fn confirm(id: &str) -> proto::EntryRef {
    proto::EntryRef { id: id.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_enter_the_log_only_with_two_reviewers_besides_their_submitter() {
    let set: SetId = "a/vetted".parse().unwrap();
    let a = TestNode::start("a", |db| {
        db.create_set(
            SetInfo::new("a/vetted".parse().unwrap()),
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    })
    .await;
    let b = TestNode::start("b", |_| {}).await;
    a.add_peer(&b, &["a/*"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    let (mut op1, mut op2, mut op3) = (operator(&a).await, operator(&a).await, operator(&a).await);

    // One reviewer is not vetting; two are.
    let one = op1
        .set_vetting(proto::SetVettingRequest {
            set: set.to_string(),
            reviewers: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(one.code(), Code::InvalidArgument, "{one:?}");
    op1.set_vetting(proto::SetVettingRequest {
        set: set.to_string(),
        reviewers: 2,
    })
    .await
    .unwrap();
    // B sees the set (empty) once its configuration says so.
    eventually(WAIT, || {
        b.db.store().set(&set).is_some_and(|s| s.info.vetting == 2)
    })
    .await
    .expect("B never received the set's signed configuration");

    // Nothing enters the set without vetting, not even through the store.
    let value = "5a".repeat(32);
    let signal = Signal::parse("pdq", &value).unwrap();
    let direct = a.db.apply(
        &set,
        &[Change::Add(EntryData {
            signal: signal.clone(),
            labels: vec![],
            external_id: None,
            vetting: vec![],
        })],
        hashfed::model::audit::unaudited,
    );
    assert!(
        matches!(
            direct,
            Err(StoreError::Vetting(VettingRefusal::Unvetted {
                needed: 2,
                ..
            }))
        ),
        "{direct:?}"
    );

    let submitted = op1
        .submit_entry(submit("a/vetted", &value))
        .await
        .unwrap()
        .into_inner();
    let id = submitted.id.clone();
    assert_eq!(id, EntryId::derive(&set, &signal).to_string());
    assert_eq!((submitted.needed, submitted.reviewers.len()), (2, 0));
    assert!(submitted.submitter.starts_with("operator:"));
    let again = op2
        .submit_entry(submit("a/vetted", &value))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);

    // The submitter cannot confirm their own entry.
    let own = op1.confirm_entry(confirm(&id)).await.unwrap_err();
    assert_eq!(own.code(), Code::PermissionDenied);
    assert!(
        own.message().contains("cannot confirm"),
        "{}",
        own.message()
    );

    // One confirmation: still pending, not in the log, not matching, and B
    // never gets it.
    let first = op2.confirm_entry(confirm(&id)).await.unwrap().into_inner();
    assert!(!first.vetted);
    let reviewer2 = first.pending.unwrap().reviewers[0].clone();
    assert_ne!(reviewer2, submitted.submitter);
    let twice = op2.confirm_entry(confirm(&id)).await.unwrap_err();
    assert_eq!(twice.code(), Code::AlreadyExists);
    assert_eq!(a.db.store().set(&set).unwrap().head_seq, 0);
    assert!(a.db.match_exact(&signal).unwrap().is_empty());
    let pending = op3
        .list_pending(proto::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].reviewers, std::slice::from_ref(&reviewer2));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b
        .db
        .store()
        .entry(&EntryId::derive(&set, &signal))
        .unwrap()
        .is_none());

    // The second reviewer completes it: in the log with both reviewers,
    // matching on A at once and on B after the sync.
    let second = op3.confirm_entry(confirm(&id)).await.unwrap().into_inner();
    assert!(second.vetted);
    let entry = second.entry.unwrap();
    assert_eq!(entry.reviewers.len(), 2);
    assert_eq!(entry.reviewers[0], reviewer2);
    let reviewer3 = entry.reviewers[1].clone();
    assert!(![reviewer2.as_str(), submitted.submitter.as_str()].contains(&reviewer3.as_str()));
    assert_eq!(a.db.store().set(&set).unwrap().head_seq, 1);
    assert_eq!(a.db.match_exact(&signal).unwrap().len(), 1);
    eventually(WAIT, || !b.db.match_exact(&signal).unwrap().is_empty())
        .await
        .expect("the vetted entry never reached B");
    let at_b =
        b.db.store()
            .entry(&EntryId::derive(&set, &signal))
            .unwrap()
            .unwrap();
    let reviewers: Vec<&str> = at_b
        .data
        .vetting
        .iter()
        .map(|v| v.reviewer.as_str())
        .collect();
    assert_eq!(reviewers, [reviewer2.as_str(), reviewer3.as_str()]);
    assert!(op1
        .list_pending(proto::ListPendingRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .is_empty());

    // A rejected entry never enters the log.
    let other = "6b".repeat(32);
    let rejected = op1
        .submit_entry(submit("a/vetted", &other))
        .await
        .unwrap()
        .into_inner();
    op2.reject_entry(proto::RejectEntryRequest {
        id: rejected.id.clone(),
        reason: "not this material".into(),
    })
    .await
    .unwrap();
    let gone = op3.confirm_entry(confirm(&rejected.id)).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(a.db.store().set(&set).unwrap().head_seq, 1);

    // The audit trail, in order, with who did what.
    let events = a.db.store().audit_events(0, 1000).unwrap();
    let trail: Vec<(Action, &str)> = events
        .iter()
        .filter(|e| e.subject == id || e.subject == rejected.id || e.subject == "a/vetted")
        .map(|e| (e.action, e.actor.as_str()))
        .collect();
    assert_eq!(
        trail,
        [
            (Action::VettingSet, submitted.submitter.as_str()),
            (Action::EntrySubmitted, submitted.submitter.as_str()),
            (Action::EntryConfirmed, reviewer2.as_str()),
            (Action::EntryConfirmed, reviewer3.as_str()),
            (Action::EntryVetted, "node"),
            (Action::EntrySubmitted, submitted.submitter.as_str()),
            (Action::EntryRejected, reviewer2.as_str()),
        ]
    );
    assert!(a.db.store().check_audit().unwrap().is_ok());
}

/// A kill switch on a received set: it stops matching at once on B only,
/// keeps syncing, and matches again (including what arrived meanwhile) when
/// switched back on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_suppressed_set_stops_matching_at_once_and_still_syncs() {
    let set: SetId = "a/list".parse().unwrap();
    let code = |i: u8| [i; 32];
    let a = TestNode::start("a", |db| nodes::add_pdq(db, "a/list", &[code(1)])).await;
    let b = TestNode::start("b", |_| {}).await;
    a.add_peer(&b, &["a/*"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    let pdq = |i: u8| Signal::parse("pdq", &nodes::hex(&code(i))).unwrap();
    eventually(WAIT, || !b.db.match_exact(&pdq(1)).unwrap().is_empty())
        .await
        .expect("B never matched a/list");

    let mut admin = operator(&b).await;
    let started = std::time::Instant::now();
    let s = admin
        .set_suppressed(proto::SetSuppressedRequest {
            set: set.to_string(),
            suppressed: true,
            reason: "collision reports from our reviewers".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(s.suppressed);
    assert!(b.db.match_exact(&pdq(1)).unwrap().is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The origin is untouched, and the set keeps syncing to B.
    assert_eq!(a.db.match_exact(&pdq(1)).unwrap().len(), 1);
    nodes::add_pdq(&a.db, "a/list", &[code(2)]);
    let a_head = a.db.store().set(&set).unwrap().head_seq;
    eventually(WAIT, || b.db.store().set(&set).unwrap().head_seq == a_head)
        .await
        .expect("a suppressed set stopped syncing");
    assert!(b
        .db
        .store()
        .entry(&EntryId::derive(&set, &pdq(2)))
        .unwrap()
        .is_some());
    assert!(b.db.match_exact(&pdq(2)).unwrap().is_empty());

    admin
        .set_suppressed(proto::SetSuppressedRequest {
            set: set.to_string(),
            suppressed: false,
            reason: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(b.db.match_exact(&pdq(1)).unwrap().len(), 1);
    assert_eq!(b.db.match_exact(&pdq(2)).unwrap().len(), 1);
    let actions: Vec<Action> =
        b.db.store()
            .audit_events(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| matches!(a, Action::SetSuppressed | Action::SetUnsuppressed))
            .collect();
    assert_eq!(actions, [Action::SetSuppressed, Action::SetUnsuppressed]);
}

/// A flood of matches on one entry (as a benign collision would cause)
/// quarantines it on this node; other entries keep matching, operators see
/// it in the audit log, and enabling the entry lifts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_matches_on_one_entry_quarantines_it() {
    use hashfed::database::FloodLimits;
    use hashfed::wire::proto::match_client::MatchClient;
    let (flooded, quiet) = ([1u8; 32], [2u8; 32]);
    let a = TestNode::start("a", |db| nodes::add_pdq(db, "a/list", &[flooded, quiet])).await;
    a.db.set_flood_limits(FloodLimits {
        per_minute: 50,
        share: 0.0,
        min_matches: 0,
    });
    let cert = a.issue(ClientRole::Local);
    let channel = nodes::channel(&a.dir, a.node().addresses().match_, Some(&cert))
        .await
        .unwrap();
    let mut client = MatchClient::new(channel);
    let mut ask = async |code: [u8; 32]| -> usize {
        let r = client
            .match_hashes(proto::MatchRequest {
                queries: vec![nodes::pdq_query(code.to_vec())],
                tag: 0,
            })
            .await
            .unwrap()
            .into_inner();
        r.results[0].hits.len()
    };
    // Counts are per minute: start well inside one.
    while hashfed::database::now_ms() / 1000 % 60 >= 55 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut hits = 0;
    for _ in 0..60 {
        hits += ask(flooded).await;
    }
    assert_eq!(hits, 50);
    assert_eq!(ask(flooded).await, 0);
    assert_eq!(ask(quiet).await, 1);
    let set: SetId = "a/list".parse().unwrap();
    let id = EntryId::derive(&set, &Signal::parse("pdq", &nodes::hex(&flooded)).unwrap());
    let entry = a.db.store().entry(&id).unwrap().unwrap();
    assert!(entry.disabled && !entry.retracted);
    let flagged: Vec<_> =
        a.db.store()
            .audit_events(0, 100)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == Action::Quarantined)
            .collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(
        (flagged[0].actor.as_str(), flagged[0].subject.clone()),
        ("node", id.to_string())
    );
    assert!(
        flagged[0].detail.contains("matches within a minute"),
        "{}",
        flagged[0].detail
    );

    // An operator who finds it sound switches it back on.
    let mut admin = operator(&a).await;
    admin
        .set_entry_disabled(proto::SetEntryDisabledRequest {
            id: id.to_string(),
            disabled: false,
        })
        .await
        .unwrap();
    assert_eq!(ask(flooded).await, 1);
}

/// Reports a false positive on `code` from `node`'s local service: a match
/// over its match service, then feedback on that match (which travels to
/// the origin).
async fn false_positive(node: &TestNode, code: [u8; 32]) {
    nodes::match_and_give_feedback(
        node,
        code,
        proto::Verdict::FalsePositive,
        proto::FeedbackReason::BenignCollision,
    )
    .await;
}

/// K false positives from distinct peers raise an entry at its origin and,
/// as the origin's policy says, suspend it network-wide until an operator
/// reviews it; the review brings it back everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn k_false_positives_from_distinct_peers_raise_and_suspend_an_entry() {
    let set: SetId = "a/list".parse().unwrap();
    let (disputed, other) = ([3u8; 32], [4u8; 32]);
    let a = TestNode::start("a", |db| nodes::add_pdq(db, "a/list", &[disputed, other])).await;
    let peers = [
        TestNode::start("b", |_| {}).await,
        TestNode::start("c", |_| {}).await,
        TestNode::start("d", |_| {}).await,
    ];
    for p in &peers {
        a.add_peer(p, &["a/*"], &[]);
        p.add_peer(&a, &[], &["a/*"]);
    }
    let mut admin = operator(&a).await;
    admin
        .set_dispute_policy(proto::SetDisputePolicyRequest {
            set: set.to_string(),
            threshold: 2,
            suspend: true,
        })
        .await
        .unwrap();
    let pdq = |c: [u8; 32]| Signal::parse("pdq", &nodes::hex(&c)).unwrap();
    let id = EntryId::derive(&set, &pdq(disputed));
    for p in &peers {
        eventually(WAIT, || {
            !p.db.match_exact(&pdq(disputed)).unwrap().is_empty()
        })
        .await
        .expect("a peer never matched the entry");
    }
    let queue = |admin: &mut AdminClient<Channel>| {
        let mut admin = admin.clone();
        async move {
            admin
                .list_disputes(proto::ListDisputesRequest::default())
                .await
                .unwrap()
                .into_inner()
                .disputes
        }
    };

    // One report: counted, below the threshold, still matching everywhere.
    false_positive(&peers[0], disputed).await;
    let disputes = || a.db.store().disputes(None).unwrap();
    eventually(WAIT, || {
        disputes().first().is_some_and(|d| d.false_positives == 1)
    })
    .await
    .expect("the first report never reached A");
    let q = queue(&mut admin).await;
    assert!(!q[0].raised && !q[0].retracted);
    assert_eq!(a.db.match_exact(&pdq(disputed)).unwrap().len(), 1);

    // A second node: raised at the top of the queue and suspended on every
    // node; the other entry is untouched.
    false_positive(&peers[1], disputed).await;
    eventually(WAIT, || {
        a.db.store()
            .entry(&id)
            .unwrap()
            .is_some_and(|e| e.retracted)
    })
    .await
    .expect("the disputed entry was never suspended");
    let q = queue(&mut admin).await;
    assert_eq!(q[0].entry_id, id.to_string());
    assert_eq!(
        (q[0].false_positives, q[0].raised, q[0].retracted),
        (2, true, true)
    );
    for p in &peers {
        eventually(WAIT, || {
            p.db.match_exact(&pdq(disputed)).unwrap().is_empty()
        })
        .await
        .expect("a peer kept matching the suspended entry");
        assert_eq!(p.db.match_exact(&pdq(other)).unwrap().len(), 1);
    }
    let trail: Vec<Action> =
        a.db.store()
            .audit_events(0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.subject == id.to_string())
            .map(|e| e.action)
            .collect();
    assert_eq!(
        trail,
        [
            Action::FeedbackReceived,
            Action::FeedbackReceived,
            Action::DisputeRaised,
            Action::DisputeSuspended
        ]
    );

    // The operator finds it sound and restores it: matching everywhere
    // again, and the old reports no longer count.
    let e = admin
        .review_dispute(proto::ReviewDisputeRequest {
            id: id.to_string(),
            restore: true,
            reason: "checked: it is the listed image".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!e.retracted);
    for p in &peers {
        eventually(WAIT, || {
            !p.db.match_exact(&pdq(disputed)).unwrap().is_empty()
        })
        .await
        .expect("a peer never matched the restored entry");
    }
    assert!(queue(&mut admin).await.is_empty());
    // A third node's report after the review counts alone.
    false_positive(&peers[2], disputed).await;
    eventually(WAIT, || !disputes().is_empty())
        .await
        .expect("the third report never reached A");
    let q = queue(&mut admin).await;
    assert_eq!((q[0].false_positives, q[0].raised), (1, false));
    assert!(!a.db.store().entry(&id).unwrap().unwrap().retracted);
}

/// The transparency report's figures equal what the test drove: entries
/// added and retracted, queries, matches and feedback per signal type and
/// set, through the real match service and `hashfed report`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_counts_exactly_what_happened() {
    use hashfed::wire::proto::match_client::MatchClient;
    let md5 = |b: u8| Signal::parse("md5", &nodes::hex(&[b; 16])).unwrap();
    let a = TestNode::start("a", |db| {
        nodes::add_pdq(db, "a/list", &[[5; 32], [6; 32], [7; 32]]);
        let set: SetId = "a/list".parse().unwrap();
        let add = |s: Signal| {
            Change::Add(EntryData {
                signal: s,
                labels: vec![],
                external_id: None,
                vetting: vec![],
            })
        };
        db.apply(
            &set,
            &[add(md5(1)), add(md5(2))],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
        db.apply(
            &set,
            &[Change::RetractValue {
                signal: Signal::parse("pdq", &nodes::hex(&[7; 32])).unwrap(),
                reason: "withdrawn".into(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    })
    .await;
    let cert = a.issue(ClientRole::Local);
    let ch = nodes::channel(&a.dir, a.node().addresses().match_, Some(&cert))
        .await
        .unwrap();
    let mut client = MatchClient::new(ch);
    let md5_query = |b: u8| proto::Query {
        signal: Some(proto::Signal {
            r#type: proto::SignalType::Md5 as i32,
            value: vec![b; 16],
            opaque_type: String::new(),
        }),
        pdq_variants: vec![],
        quality: None,
        radius: None,
    };
    let queries = [
        nodes::pdq_query(vec![5; 32]),
        nodes::pdq_query(vec![5; 32]),
        nodes::pdq_query(vec![6; 32]),
        nodes::pdq_query(vec![6; 32]),
        nodes::pdq_query(vec![0x55; 32]),
        nodes::pdq_query(vec![0xaa; 32]),
        md5_query(1),
        md5_query(1),
        md5_query(9),
    ];
    let mut hits = Vec::new();
    for q in queries {
        let r = client
            .match_hashes(proto::MatchRequest {
                queries: vec![q],
                tag: 0,
            })
            .await
            .unwrap()
            .into_inner();
        hits.extend(r.results[0].hits.clone());
    }
    assert_eq!(hits.len(), 6);
    let verdicts = [
        (0, proto::Verdict::Confirmed),
        (1, proto::Verdict::FalsePositive),
        (4, proto::Verdict::FalsePositive),
    ];
    for (i, verdict) in verdicts {
        client
            .feedback(proto::FeedbackRequest {
                match_id: hits[i].match_id.clone(),
                verdict: verdict as i32,
                reason: proto::FeedbackReason::Reviewed as i32,
            })
            .await
            .unwrap();
    }

    let today = hashfed::report::date(hashfed::store::usage::today());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args([
            "report",
            "--dir",
            a.dir.to_str().unwrap(),
            "--from",
            &today,
            "--to",
            &today,
        ])
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: hashfed::report::Report = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.signal_types, ["md5", "pdq"]);
    let t = &r.total;
    assert_eq!(
        (t.queries, t.matches, t.confirmed, t.false_positives),
        (Some(9), 6, 1, 2)
    );
    assert_eq!((t.entries_added, t.entries_retracted), (5, 1));
    let pdq = &r.by_signal_type["pdq"];
    assert_eq!(
        (pdq.queries, pdq.matches, pdq.confirmed, pdq.false_positives),
        (Some(6), 4, 1, 1)
    );
    assert_eq!(pdq.false_positive_rate, Some(0.5));
    assert_eq!((pdq.entries_added, pdq.entries_retracted), (3, 1));
    let m = &r.by_signal_type["md5"];
    assert_eq!(
        (m.queries, m.matches, m.confirmed, m.false_positives),
        (Some(3), 2, 0, 1)
    );
    assert_eq!(r.by_set.len(), 2);
    assert!(r
        .by_set
        .iter()
        .all(|s| s.set == "a/list" && s.figures.queries.is_none()));

    // Markdown, for publishing; and a match record past its retention is
    // deleted while the figures stay.
    let md = std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args([
            "report",
            "--dir",
            a.dir.to_str().unwrap(),
            "--from",
            &today,
            "--to",
            &today,
        ])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("| a/list | pdq | 4 | 1 | 1 | 50.00% | 3 | 1 |"),
        "{md}"
    );
    let expired =
        a.db.store()
            .expire_matches(hashfed::database::now_ms() + 1)
            .unwrap();
    assert_eq!(expired, 6);
    let again =
        a.db.report(
            "a",
            hashfed::store::usage::today(),
            hashfed::store::usage::today(),
        )
        .unwrap();
    assert_eq!(again.total.matches, 6);
}

/// A backup taken while B serves, restored after B moved on: B comes back
/// at the backup's heads and converges with its peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_backup_converges_with_its_peers() {
    let set: SetId = "a/list".parse().unwrap();
    let code = |i: u32| {
        let mut c = [0u8; 32];
        c[..4].copy_from_slice(&i.to_be_bytes());
        c[4..8].copy_from_slice(&i.wrapping_mul(2_654_435_761).to_be_bytes());
        c
    };
    let a = TestNode::start("a", |db| {
        nodes::add_pdq(db, "a/list", &(0..100).map(code).collect::<Vec<_>>())
    })
    .await;
    let b = TestNode::start("b", |_| {}).await;
    a.add_peer(&b, &["a/*"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    let head = |n: &TestNode| n.db.store().set(&set).map_or(0, |s| s.head_seq);
    eventually(WAIT, || head(&b) == 100)
        .await
        .expect("B never synced");

    let backup = b.tmp.path().join("b.backup");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "backup",
        "--dir",
        b.dir.to_str().unwrap(),
        "--out",
        backup.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a backup holds the sets: owner-only");
    }

    // The origin moves on; B follows, then is stopped and restored.
    nodes::add_pdq(&a.db, "a/list", &(100..150).map(code).collect::<Vec<_>>());
    let retracted = Signal::parse("pdq", &nodes::hex(&code(3))).unwrap();
    a.db.apply(
        &set,
        &[Change::RetractValue {
            signal: retracted.clone(),
            reason: "withdrawn".into(),
        }],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    let a_head = head(&a);
    eventually(WAIT, || head(&b) == a_head)
        .await
        .expect("B never followed");
    let (tmp, dir) = b.close().await;
    let running = run(&[
        "restore",
        "--dir",
        dir.to_str().unwrap(),
        backup.to_str().unwrap(),
    ]);
    assert!(
        !running.status.success(),
        "restore over a database needs --force"
    );
    let out = run(&[
        "restore",
        "--dir",
        dir.to_str().unwrap(),
        "--force",
        backup.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Restored at the backup's head (looked at before the node starts: it
    // catches up at once).
    let restored = hashfed::store::Store::open(&dir.join("store"), &Default::default()).unwrap();
    assert_eq!(
        restored.set(&set).map(|s| s.head_seq),
        Some(100),
        "restored at the backup's head"
    );
    drop(restored);
    let b = TestNode::start_in(tmp, dir).await;
    eventually(WAIT, || head(&b) == a_head)
        .await
        .expect("the restored node never converged");
    let (sa, sb) = (
        a.db.store().set(&set).unwrap(),
        b.db.store().set(&set).unwrap(),
    );
    assert_eq!(sa.head_digest, sb.head_digest);
    assert!(b.db.match_exact(&retracted).unwrap().is_empty());
    assert_eq!(b.db.store().set(&set).unwrap().matchable, 149);
    assert!(b.db.store().verify().unwrap().is_ok());
    assert!(b.db.store().check_audit().unwrap().is_ok());
}

/// Trust per peer: with review on, a peer's new entries sync but do not
/// match until an operator releases them (one, or a whole set); with it
/// off, they match as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_from_a_peer_under_review_wait_for_release() {
    let set: SetId = "a/list".parse().unwrap();
    let code = |i: u8| [i; 32];
    let pdq = |i: u8| Signal::parse("pdq", &nodes::hex(&code(i))).unwrap();
    let a = TestNode::start("a", |db| {
        nodes::add_pdq(db, "a/list", &[code(11), code(12)])
    })
    .await;
    let b = TestNode::start("b", |_| {}).await;
    a.add_peer(&b, &["a/*"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    let mut admin = operator(&b).await;
    // Review on before the first sync: B's registry holds `a`.
    let peer = admin
        .set_peer_review(proto::SetPeerReviewRequest {
            name: "a".into(),
            review: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(peer.review);
    let head = |n: &TestNode| n.db.store().set(&set).map_or(0, |s| s.head_seq);
    // Entries that arrived before review was on (if any) are not held;
    // add fresh ones after it.
    nodes::add_pdq(&a.db, "a/list", &[code(13), code(14)]);
    let a_head = head(&a);
    if eventually(WAIT, || head(&b) == a_head).await.is_none() {
        panic!(
            "B never synced: head {} of {a_head}, sync with a: {}",
            head(&b),
            b.node().federation().sync_status("a")
        );
    }
    let held = admin
        .list_held(proto::ListHeldRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries;
    let held_ids: Vec<String> = held.iter().map(|e| e.id.clone()).collect();
    let id = |i: u8| EntryId::derive(&set, &pdq(i)).to_string();
    assert!(
        held_ids.contains(&id(13)) && held_ids.contains(&id(14)),
        "{held_ids:?}"
    );
    assert!(b.db.match_exact(&pdq(13)).unwrap().is_empty());
    assert!(b.db.match_exact(&pdq(14)).unwrap().is_empty());

    // One released: it matches at once; the other still waits.
    let r = admin
        .release_held(proto::ReleaseHeldRequest {
            id: id(13),
            set: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.released, 1);
    assert_eq!(b.db.match_exact(&pdq(13)).unwrap().len(), 1);
    assert!(b.db.match_exact(&pdq(14)).unwrap().is_empty());
    // The rest of the set at once.
    let r = admin
        .release_held(proto::ReleaseHeldRequest {
            id: String::new(),
            set: set.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.released >= 1);
    for i in 11..=14 {
        assert_eq!(b.db.match_exact(&pdq(i)).unwrap().len(), 1, "entry {i}");
    }
    assert!(b.db.store().verify().unwrap().is_ok());

    // Review off: new entries match as they come.
    admin
        .set_peer_review(proto::SetPeerReviewRequest {
            name: "a".into(),
            review: false,
        })
        .await
        .unwrap();
    nodes::add_pdq(&a.db, "a/list", &[code(15)]);
    eventually(WAIT, || !b.db.match_exact(&pdq(15)).unwrap().is_empty())
        .await
        .expect("an entry from a trusted peer never matched");
    let actions: Vec<Action> =
        b.db.store()
            .audit_events(0, 100)
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .filter(|a| matches!(a, Action::PeerReview | Action::EntriesReleased))
            .collect();
    assert_eq!(
        actions,
        [
            Action::PeerReview,
            Action::EntriesReleased,
            Action::EntriesReleased,
            Action::PeerReview
        ]
    );
}
