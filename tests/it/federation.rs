//! Federation between real nodes on loopback: three (or more) nodes, each
//! with its own init'ed directory, real sled store, real mTLS on port 0.
//!
//! A is the origin (a hotline), B a relay (another hotline), C a provider
//! that peers with B only but holds A's card to trust A's signatures.

use crate::nodes;

use std::time::Duration;

use crate::nodes::{add_pdq, eventually, TestNode};
use hashfed::database::Database;
use hashfed::model::audit::Action;
use hashfed::model::{Signal, SignalType};
use hashfed::ops::Actor;
use hashfed::store::Change;
use hashfed::wire::proto;

const WAIT: Duration = Duration::from_secs(15);

fn code(i: u32) -> [u8; 32] {
    let mut c = [0u8; 32];
    let h = blake3::hash(&i.to_be_bytes());
    c.copy_from_slice(h.as_bytes());
    c
}

fn matches(db: &Database, c: &[u8; 32]) -> usize {
    let signal = Signal::from_bytes(SignalType::Pdq, c.to_vec()).unwrap();
    db.match_exact(&signal).map(|m| m.len()).unwrap_or(0)
}

fn head(db: &Database, set: &str) -> u64 {
    db.store()
        .set(&set.parse().unwrap())
        .map_or(0, |s| s.head_seq)
}

/// A, B, C with A → B → C wiring; A's set `a/list` holds `n` entries.
async fn three(n: u32) -> (TestNode, TestNode, TestNode) {
    let a = TestNode::start("a", |db| {
        add_pdq(db, "a/list", &(0..n).map(code).collect::<Vec<_>>())
    })
    .await;
    let b = TestNode::start("b", |_| {}).await;
    let c = TestNode::start("c", |_| {}).await;
    a.add_peer(&b, &["a/*"], &[]);
    b.add_peer(&a, &[], &["a/*"]);
    b.add_peer(&c, &["a/*"], &[]);
    c.add_peer(&b, &[], &["*"]);
    // C never talks to A; A's card only lets it check A's signatures.
    c.add_card(a.card(), &[], &[]);
    (a, b, c)
}

fn policy(node: &TestNode, reshare: bool) {
    node.node()
        .ops()
        .set_policy(
            &Actor::new("local-socket"),
            &"a/list".parse().unwrap(),
            hashfed::model::SetPolicy {
                share_with: vec![],
                reshare,
            },
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relayed_only_when_the_origin_allows_and_retractions_follow() {
    let (mut a, mut b, mut c) = three(200).await;
    let a_head = head(&a.db, "a/list");
    assert_eq!(a_head, 200);

    // B is granted the set directly: it arrives, verified, with A's digest.
    // (The set's head is visible a moment before the index update of the
    // same write lands, so wait for both.)
    eventually(WAIT, || {
        head(&b.db, "a/list") == a_head && matches(&b.db, &code(7)) == 1
    })
    .await
    .expect("B never caught up with A");
    let (sa, sb) = (
        a.db.store().set(&"a/list".parse().unwrap()).unwrap(),
        b.db.store().set(&"a/list".parse().unwrap()).unwrap(),
    );
    assert_eq!(sa.head_digest, sb.head_digest);
    assert_eq!(sb.upstream.as_deref(), Some("a"));
    assert_eq!(matches(&b.db, &code(7)), 1);

    // Re-sharing is off: B holds the set but never offers it to C.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(c.db.store().set(&"a/list".parse().unwrap()).is_none());
    assert_eq!(matches(&c.db, &code(7)), 0);

    // The origin allows re-sharing (a signed policy, version 2): C gets
    // the set through B, records exactly as A wrote them.
    policy(&a, true);
    eventually(WAIT, || head(&c.db, "a/list") == a_head)
        .await
        .expect("C never received the re-shared set through B");
    let sc = c.db.store().set(&"a/list".parse().unwrap()).unwrap();
    assert_eq!(sc.head_digest, sa.head_digest);
    assert_eq!(sc.upstream.as_deref(), Some("b"));
    assert_eq!(matches(&c.db, &code(7)), 1);

    // A new entry on A is matchable on C.
    let fresh = code(10_000);
    add_pdq(&a.db, "a/list", &[fresh]);
    let took = eventually(WAIT, || matches(&c.db, &fresh) == 1)
        .await
        .expect("new entry never reached C");
    eprintln!("publish on A -> matchable on C (two hops): {took:?}");

    // C's local service matches it over the match service and says it is
    // a false positive; the feedback travels C -> B -> A.
    let hit = &nodes::match_and_give_feedback(
        &c,
        fresh,
        proto::Verdict::FalsePositive,
        proto::FeedbackReason::BenignCollision,
    )
    .await;
    assert_eq!(hit.set, "a/list");
    let ops_a = a.node().ops().clone();
    eventually(WAIT, || {
        ops_a
            .received_feedback()
            .map(|r| r.len() == 1)
            .unwrap_or(false)
    })
    .await
    .expect("feedback never reached the origin");
    let fb = &received(&ops_a)[0];
    assert_eq!(fb.entry_id, hit.entry_id);
    assert_eq!(fb.verdict, "false_positive");
    assert_eq!(fb.via, "b");
    assert_eq!(fb.reporter_node_id, c.node().federation().config().node_id);
    assert!(
        !fb.verified,
        "A has no card of C, so it cannot check C's signature"
    );
    // Both ends audited it: A the feedback (from b, about the entry, no
    // hash value), C the set it received through b.
    let audited = |node: &TestNode, action: Action| {
        node.db
            .store()
            .audit_events(0, 1000)
            .unwrap()
            .into_iter()
            .filter(move |e| e.action == action)
    };
    let at_a: Vec<_> = audited(&a, Action::FeedbackReceived).collect();
    assert_eq!(at_a.len(), 1);
    assert_eq!(at_a[0].actor, "peer:b");
    assert_eq!(at_a[0].subject, hit.entry_id);
    assert!(at_a[0].detail.starts_with("false_positive from node "));
    let at_c: Vec<_> = audited(&c, Action::SetReceived).collect();
    assert_eq!(at_c.len(), 1);
    assert_eq!(
        (at_c[0].actor.as_str(), at_c[0].subject.as_str()),
        ("peer:b", "a/list")
    );
    assert!(a.db.store().check_audit().unwrap().is_ok());

    // A retracts it: it stops matching on C.
    let signal = Signal::from_bytes(SignalType::Pdq, fresh.to_vec()).unwrap();
    a.db.apply(
        &"a/list".parse().unwrap(),
        &[Change::RetractValue {
            signal,
            reason: "false positive".into(),
        }],
        hashfed::model::audit::unaudited,
    )
    .unwrap();
    let took = eventually(WAIT, || matches(&c.db, &fresh) == 0)
        .await
        .expect("retraction never reached C");
    eprintln!("retract on A -> no match on C: {took:?}");

    let received = c.node().metrics().render();
    assert!(
        received
            .lines()
            .any(|l| l == "hashfed_federation_records_received_total 202"),
        "{received}"
    );

    // Everyone verifies clean and agrees.
    for n in [&a, &b, &c] {
        let report = n.db.store().verify().unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
    }
    let verify = c.node().federation().verify_sets().await;
    assert!(
        verify.iter().any(|x| x.peer == "b" && x.verdict == "equal"),
        "{verify:?}"
    );
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_reaches_a_peer_without_a_grant_and_received_sets_are_read_only() {
    let (mut a, mut b, mut c) = three(20).await;
    // A local-only set (not named after A) and a set B is not granted.
    add_pdq(&a.db, "ncmec/local", &[code(1)]);
    b.node()
        .federation()
        .set_peer_grants(
            "a",
            vec![],
            vec!["a/list".into()],
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    add_pdq(&a.db, "a/other", &[code(2)]);
    eventually(WAIT, || head(&b.db, "a/list") == 20)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(b.db.store().set(&"ncmec/local".parse().unwrap()).is_none());
    assert!(b.db.store().set(&"a/other".parse().unwrap()).is_none());
    // B cannot write into A's set.
    let err =
        b.db.apply(
            &"a/list".parse().unwrap(),
            &[Change::RetractValue {
                signal: Signal::from_bytes(SignalType::Pdq, code(3).to_vec()).unwrap(),
                reason: "x".into(),
            }],
            hashfed::model::audit::unaudited,
        )
        .unwrap_err();
    assert!(err.to_string().contains("only its origin"), "{err}");
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_peer_is_cut_off_at_once() {
    let (mut a, mut b, mut c) = three(5).await;
    eventually(WAIT, || head(&b.db, "a/list") == 5)
        .await
        .unwrap();
    let trust = a.node().federation().trust().clone();
    eventually(WAIT, || trust.open_connections("b") > 0)
        .await
        .expect("B's subscription is not open");

    // Open a subscription of our own with B's identity and keep it open.
    let a_card = hashfed::peers::PeerCard::parse(&a.card()).unwrap();
    let endpoint = hashfed::identity::client::peer_endpoint(
        &b.dir,
        &a_card.endpoint,
        &a_card.node_id,
        &a_card.ca,
    )
    .unwrap();
    let mut client =
        proto::federation_client::FederationClient::new(endpoint.connect().await.unwrap());
    let mut stream = client
        .subscribe(proto::ManifestRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().sets.len(), 1);

    a.node()
        .federation()
        .set_peer_status(
            "b",
            hashfed::peers::PeerStatus::Revoked,
            hashfed::model::audit::unaudited,
        )
        .unwrap();
    // The open stream ends at once.
    let ended = tokio::time::timeout(Duration::from_secs(2), stream.message())
        .await
        .expect("the revoked peer's stream stayed open");
    assert!(!matches!(ended, Ok(Some(_))), "{ended:?}");
    assert_eq!(trust.open_connections("b"), 0);
    // New calls are refused at the handshake.
    let again = match endpoint.connect().await {
        Ok(ch) => proto::federation_client::FederationClient::new(ch)
            .manifest(proto::ManifestRequest {})
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
        Err(e) => Err(format!("{e:?}")),
    };
    let err = again.expect_err("a revoked peer was served");
    assert!(
        err.contains("UnknownCA") || err.contains("transport"),
        "{err}"
    );
    // Publishing more on A never reaches B.
    add_pdq(&a.db, "a/list", &[code(99)]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(head(&b.db, "a/list"), 5);
    c.stop().await;
    b.stop().await;
    a.stop().await;
}

/// A malicious relay: a real node identity and a real mTLS federation
/// listener, serving A's real set but tampering with it.
mod evil {
    use std::pin::Pin;
    use std::sync::Arc;

    use hashfed::database::Database;
    use hashfed::identity::peers::{PeerTrust, TrustedPeer};
    use hashfed::model::signed::Signer;
    use hashfed::wire::federation::{checkpoint, head};
    use hashfed::wire::proto;
    use hashfed::wire::proto::federation_server::{Federation, FederationServer};
    use tokio_stream::Stream;
    use tonic::{Request, Response, Status};

    #[derive(Clone, Copy, Debug)]
    pub enum Trick {
        /// Flips one byte inside a record.
        Alter,
        /// Swaps two records.
        Reorder,
        /// Leaves one record out.
        Drop,
        /// Replaces the checkpoint with one signed by the relay's own key.
        Forge,
        /// Serves the set faithfully although its origin forbids re-sharing.
        IgnorePolicy,
        /// Sends records and never a checkpoint.
        Flood,
        /// Claims the origin rotated to the relay's key (a statement the
        /// relay signed itself) and signs the checkpoint with it.
        ForgeRotation,
        /// Sends the first records, then the same records again.
        Replay,
        /// Cuts the last record in half.
        Truncate,
        /// Offers the set under a configuration that asks for vetting
        /// (signed by `own_key`: here the origin's own), with the
        /// unattested records of before.
        Unvetted,
        /// Appends a record of its own and signs its checkpoint with
        /// `own_key` (here the origin's old, leaked key).
        Extend,
    }

    pub struct EvilRelay {
        pub origin: Arc<Database>,
        pub trick: Trick,
        pub own_key: Arc<Signer>,
        /// Key histories its manifest carries.
        pub keys: Vec<proto::KeyHistory>,
    }

    /// A record adding one MD5 entry at `seq`, unattested.
    fn extra_record(seq: u64) -> Vec<u8> {
        use hashfed::model::record::{EntryData, Record, RecordBody};
        Record {
            seq,
            time_ms: 1,
            body: RecordBody::Add(EntryData {
                signal: hashfed::model::Signal::parse("md5", &"7".repeat(32)).unwrap(),
                labels: vec![],
                external_id: None,
                vetting: vec![],
            }),
        }
        .encode()
    }

    type S<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

    #[tonic::async_trait]
    impl Federation for EvilRelay {
        async fn manifest(
            &self,
            _r: Request<proto::ManifestRequest>,
        ) -> Result<Response<proto::ManifestResponse>, Status> {
            let mut sets: Vec<proto::SetHead> =
                self.origin.store().sets().iter().map(head).collect();
            for h in &mut sets {
                match self.trick {
                    Trick::Unvetted => {
                        let signed = h.info.as_ref().unwrap();
                        let mut info: hashfed::model::SetInfo =
                            serde_json::from_str(&signed.json).unwrap();
                        info.vetting = 2;
                        let again = self.own_key.info(&info, signed.version + 1).unwrap();
                        h.info = Some(hashfed::wire::federation::signed_info(&again));
                    }
                    Trick::Extend => h.head_seq += 1,
                    _ => {}
                }
            }
            Ok(Response::new(proto::ManifestResponse {
                sets,
                node_id: String::new(),
                keys: self.keys.clone(),
            }))
        }

        type PullStream = S<proto::PullChunk>;

        async fn pull(
            &self,
            r: Request<proto::PullRequest>,
        ) -> Result<Response<Self::PullStream>, Status> {
            let set: hashfed::model::SetId = r.into_inner().set.parse().unwrap();
            let store = self.origin.store();
            let mut records: Vec<Vec<u8>> =
                store.log(&set, 0).unwrap().map(|r| r.unwrap().1).collect();
            let mut cp = store
                .checkpoints(&set, 0)
                .unwrap()
                .map(|c| c.unwrap())
                .last()
                .unwrap();
            match self.trick {
                Trick::Alter => {
                    let r = &mut records[3];
                    let last = r.len() - 12;
                    r[last] ^= 1;
                }
                Trick::Reorder => records.swap(2, 3),
                Trick::Drop => {
                    records.remove(4);
                }
                Trick::Forge | Trick::ForgeRotation => {
                    cp = self.own_key.checkpoint(&set, cp.seq, cp.digest);
                }
                Trick::Truncate => {
                    let last = records.last_mut().unwrap();
                    last.truncate(last.len() / 2);
                }
                Trick::Extend => {
                    let record = extra_record(cp.seq + 1);
                    let digest = hashfed::model::record::chain_digest(&cp.digest, &record);
                    records.push(record);
                    cp = self.own_key.checkpoint(&set, cp.seq + 1, digest);
                }
                Trick::IgnorePolicy | Trick::Flood | Trick::Replay | Trick::Unvetted => {}
            }
            if let Trick::Replay = self.trick {
                let again = |first_seq| {
                    Ok(proto::PullChunk {
                        first_seq,
                        records: records[..4].to_vec(),
                        checkpoint: None,
                    })
                };
                let chunks = vec![again(1), again(1)];
                return Ok(Response::new(Box::pin(tokio_stream::iter(chunks))));
            }
            if let Trick::Flood = self.trick {
                let chunks: Vec<Result<proto::PullChunk, Status>> = (0..4u64)
                    .map(|i| {
                        Ok(proto::PullChunk {
                            first_seq: 1 + i * 4096,
                            records: vec![records[0].clone(); 4096],
                            checkpoint: None,
                        })
                    })
                    .collect();
                return Ok(Response::new(Box::pin(tokio_stream::iter(chunks))));
            }
            let chunk = proto::PullChunk {
                first_seq: 1,
                checkpoint: Some(checkpoint(&cp)),
                records,
            };
            Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(chunk)]))))
        }

        type SubscribeStream = S<proto::ManifestResponse>;

        async fn subscribe(
            &self,
            r: Request<proto::ManifestRequest>,
        ) -> Result<Response<Self::SubscribeStream>, Status> {
            let first = self.manifest(r).await?.into_inner();
            let stream = tokio_stream::iter(vec![Ok(first)]).chain(tokio_stream::pending());
            Ok(Response::new(Box::pin(stream)))
        }

        async fn get_checkpoint(
            &self,
            _r: Request<proto::CheckpointRequest>,
        ) -> Result<Response<proto::Checkpoint>, Status> {
            Err(Status::unimplemented("evil"))
        }

        async fn send_feedback(
            &self,
            _r: Request<proto::FeedbackBatch>,
        ) -> Result<Response<proto::FeedbackAck>, Status> {
            Err(Status::unimplemented("evil"))
        }
    }

    use tokio_stream::StreamExt as _;

    /// Serves `relay` on a real federation listener of the node in `dir`,
    /// trusting `peer`; returns the address.
    pub async fn serve(
        dir: &std::path::Path,
        relay: EvilRelay,
        peer: TrustedPeer,
    ) -> std::net::SocketAddr {
        let trust = PeerTrust::new();
        trust.replace(vec![peer]).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let incoming = hashfed::identity::server::Acceptor::federation(
            &hashfed::identity::server::ServerCerts::load(dir).unwrap(),
            trust,
        )
        .unwrap()
        .incoming(tcp, &hashfed::tasks::Tasks::new());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(FederationServer::new(relay))
                .serve_with_incoming(incoming),
        );
        addr
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_altered_forged_or_relayed_against_policy_are_refused() {
    use evil::{EvilRelay, Trick};
    let a = TestNode::start("a", |db| {
        add_pdq(db, "a/list", &(0..8).map(code).collect::<Vec<_>>())
    })
    .await;
    for (trick, reshare, expect) in [
        (
            Trick::Alter,
            true,
            "does not match the origin's signed checkpoint",
        ),
        (Trick::Reorder, true, "where"),
        (Trick::Drop, true, "do not end at the last checkpoint"),
        (Trick::Forge, true, "signature does not verify"),
        (Trick::IgnorePolicy, false, "does not allow re-sharing"),
        (Trick::Flood, true, "records without a checkpoint"),
        (Trick::ForgeRotation, true, "signature does not verify"),
        (
            Trick::Replay,
            true,
            "chunk starts at seq 1 where 5 was next",
        ),
        (Trick::Truncate, true, "refused"),
    ] {
        policy(&a, reshare);
        let mut c = TestNode::start("c", |_| {}).await;
        let (_evil_tmp, evil_dir) = nodes::node_dir("evil");
        let evil_config = hashfed::identity::load_config(&evil_dir).unwrap();
        let c_card = hashfed::peers::PeerCard::parse(&c.card()).unwrap();
        let evil_key = hashfed::identity::keys::read(&evil_dir).unwrap();
        let signer = std::sync::Arc::new(hashfed::model::signed::Signer::new(
            "a",
            &evil_config.node_id,
            evil_key.clone(),
        ));
        // A's history as the relay would have it: one rotation to the
        // relay's key, signed by the relay.
        let mut forged = hashfed::identity::keys::history(&a.dir).unwrap();
        forged.rotations.push(hashfed::model::keychain::rotate(
            &forged.node_id,
            &evil_key,
            1,
            &evil_key.verifying_key(),
            1,
            vec![],
        ));
        let keys = match trick {
            Trick::ForgeRotation => {
                vec![hashfed::wire::federation::key_history(&forged)]
            }
            _ => vec![],
        };
        let addr = evil::serve(
            &evil_dir,
            EvilRelay {
                origin: a.db.clone(),
                trick,
                own_key: signer,
                keys,
            },
            hashfed::identity::peers::TrustedPeer {
                name: "c".into(),
                node_id: c_card.node_id.clone(),
                ca_pem: c_card.ca.clone(),
                active: true,
            },
        )
        .await;
        let evil_card = hashfed::peers::PeerCard::of_node(&evil_dir, &addr.to_string())
            .unwrap()
            .to_toml()
            .unwrap();
        c.add_card(a.card(), &[], &[]);
        c.add_card(evil_card, &[], &["*"]);
        let fed = c.node().federation().clone();
        let status = eventually(WAIT, || {
            fed.sync_status("evil").to_string().contains("refused")
        })
        .await
        .map(|_| fed.sync_status("evil").to_string());
        let status = status
            .unwrap_or_else(|| panic!("{trick:?}: never refused: {}", fed.sync_status("evil")));
        assert!(status.contains(expect), "{trick:?}: {status}");
        // Nothing of it was kept.
        assert_eq!(head(&c.db, "a/list"), 0, "{trick:?}");
        assert_eq!(matches(&c.db, &code(3)), 0, "{trick:?}");
        let a_card = c.node().federation().peers().get("a").unwrap().card;
        assert!(
            a_card.rotations.is_empty(),
            "{trick:?}: a forged rotation was learnt"
        );
        assert!(c.db.store().verify().unwrap().problems.is_empty());
        let metrics = c.node().metrics().render();
        assert!(
            !metrics.contains("hashfed_federation_refusals_total 0"),
            "{trick:?}: refusal not counted"
        );
        c.stop().await;
    }
}

/// C syncs `a/list` through an evil relay playing `trick` with `own_key`
/// and `keys` in its manifest; returns C once the relay's sync state says
/// "refused", with that state.
async fn through_evil_relay(
    a: &TestNode,
    trick: evil::Trick,
    own_key: hashfed::model::signed::Signer,
    keys: Vec<proto::KeyHistory>,
) -> (TestNode, String, tempfile::TempDir) {
    let c = TestNode::start("c", |_| {}).await;
    let (evil_tmp, evil_dir) = nodes::node_dir("evil");
    let c_card = hashfed::peers::PeerCard::parse(&c.card()).unwrap();
    let addr = evil::serve(
        &evil_dir,
        evil::EvilRelay {
            origin: a.db.clone(),
            trick,
            own_key: std::sync::Arc::new(own_key),
            keys,
        },
        hashfed::identity::peers::TrustedPeer {
            name: "c".into(),
            node_id: c_card.node_id.clone(),
            ca_pem: c_card.ca.clone(),
            active: true,
        },
    )
    .await;
    let evil_card = hashfed::peers::PeerCard::of_node(&evil_dir, &addr.to_string())
        .unwrap()
        .to_toml()
        .unwrap();
    c.add_card(a.card(), &[], &[]);
    c.add_card(evil_card, &[], &["*"]);
    let fed = c.node().federation().clone();
    eventually(WAIT, || {
        fed.sync_status("evil").to_string().contains("refused")
    })
    .await
    .unwrap_or_else(|| panic!("{trick:?}: never refused: {}", fed.sync_status("evil")));
    let status = fed.sync_status("evil").to_string();
    (c, status, evil_tmp)
}

/// A set whose origin's signed configuration asks for two reviewers: a
/// record that adds an entry without their attestations is refused by
/// the receiver, although the origin's signature on it is good (an origin
/// that skips its own rule gains nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_without_the_attestations_a_vetted_set_asks_for_are_refused() {
    let a = TestNode::start("a", |db| {
        add_pdq(db, "a/list", &(0..8).map(code).collect::<Vec<_>>())
    })
    .await;
    policy(&a, true);
    let config = hashfed::identity::load_config(&a.dir).unwrap();
    let origin = hashfed::model::signed::Signer::new(
        "a",
        &config.node_id,
        hashfed::identity::keys::read(&a.dir).unwrap(),
    );
    let (mut c, status, _t) = through_evil_relay(&a, evil::Trick::Unvetted, origin, vec![]).await;
    assert!(
        status.contains("carries 0 distinct reviewers' attestations; the set's rule asks for 2"),
        "{status}"
    );
    assert_eq!(head(&c.db, "a/list"), 0);
    assert_eq!(matches(&c.db, &code(3)), 0);
    assert!(c.db.store().verify().unwrap().problems.is_empty());
    c.stop().await;
}

/// After A rotates its key, A's old key (leaked) signs a checkpoint past
/// the head it was retired at: C refuses it. A relay that also offers a
/// second, forked rotation signed by the old key raises
/// `hashfed_key_history_refused_total{peer}` and a `hashfed status`
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leaked_old_key_cannot_extend_a_set_and_a_fork_is_reported() {
    let a = TestNode::start("a", |db| {
        add_pdq(db, "a/list", &(0..8).map(code).collect::<Vec<_>>())
    })
    .await;
    policy(&a, true);
    let config = hashfed::identity::load_config(&a.dir).unwrap();
    let old_key = hashfed::identity::keys::read(&a.dir).unwrap();
    a.node()
        .federation()
        .rotate_keys(true, false, |_| vec![])
        .unwrap();
    let history = hashfed::identity::keys::history(&a.dir).unwrap();
    let bounds = history.rotations[0].bounds.clone().unwrap();
    assert_eq!(bounds.len(), 1);
    assert_eq!((bounds[0].set.as_str(), bounds[0].seq), ("a/list", 8));
    // The fork: another rotation 1, signed by the leaked key.
    let mut fork = history.clone();
    fork.rotations[0] = hashfed::model::keychain::rotate(
        &history.node_id,
        &old_key,
        1,
        &hashfed::identity::keys::generate().verifying_key(),
        2,
        bounds,
    );
    let leaked = hashfed::model::signed::Signer::new("a", &config.node_id, old_key);
    let keys = vec![
        hashfed::wire::federation::key_history(&history),
        hashfed::wire::federation::key_history(&fork),
    ];
    let (mut c, status, _t) = through_evil_relay(&a, evil::Trick::Extend, leaked, keys).await;
    assert!(
        status.contains("key 0 was retired at seq 8 of this set, yet signs seq 9"),
        "{status}"
    );
    assert_eq!(head(&c.db, "a/list"), 0);
    // The true rotation was learnt; the fork was not.
    let a_card = c.node().federation().peers().get("a").unwrap().card;
    assert_eq!(a_card.rotations, history.rotations);
    let metrics = c.node().metrics().render();
    assert!(
        metrics.contains("hashfed_key_history_refused_total{peer=\"evil\"}"),
        "{metrics}"
    );
    let dir = c.dir.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
            .args(["status", "--dir"])
            .arg(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("key histories refused from peers"), "{text}");
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_a_key_rotation_peers_keep_syncing_and_verify_old_and_new_records() {
    use hashfed::identity::server::Listener;
    use hashfed::wire::proto::admin_client::AdminClient;

    let (a, b, c) = three(100).await;
    policy(&a, true);
    eventually(WAIT, || head(&c.db, "a/list") == 100)
        .await
        .expect("C never caught up before the rotation");
    let old_card = a.card();
    let old_cert = a.node().federation().certs().current(Listener::Federation);

    // An operator rotates A's signing key and renews its certificates
    // while it serves; the operator's connection stays up throughout.
    let operator = a.issue(hashfed::identity::roles::ClientRole::Operator);
    let channel = nodes::channel(&a.dir, a.node().addresses().admin, Some(&operator))
        .await
        .unwrap();
    let mut admin = AdminClient::new(channel);
    let rotated = admin
        .rotate_keys(proto::RotateKeysRequest {
            signing: true,
            tls: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.key_number, 1);
    assert_eq!(rotated.certificates.len(), 4, "{:?}", rotated.certificates);
    assert_ne!(
        a.node().federation().certs().current(Listener::Federation),
        old_cert,
        "the federation listener serves the renewed certificate"
    );
    let nothing = admin
        .rotate_keys(proto::RotateKeysRequest::default())
        .await
        .unwrap_err();
    assert_eq!(nothing.code(), tonic::Code::InvalidArgument);

    // Records signed by the new key reach B and, relayed, C: both learnt
    // the rotation from the statement the old key signed.
    let fresh: Vec<[u8; 32]> = (100..150).map(code).collect();
    add_pdq(&a.db, "a/list", &fresh);
    eventually(WAIT, || {
        head(&b.db, "a/list") == 150 && head(&c.db, "a/list") == 150
    })
    .await
    .expect("B and C stopped syncing after A rotated its key");
    assert_eq!(matches(&c.db, &code(140)), 1);
    for node in [&b, &c] {
        let learnt = node.node().federation().peers().get("a").unwrap();
        assert_eq!(learnt.card.rotations.len(), 1);
        assert_eq!(
            learnt
                .card
                .keys()
                .unwrap()
                .last()
                .map(|k| nodes::hex(k.as_bytes())),
            Some(rotated.signing_key.clone())
        );
        assert!(node.db.store().verify().unwrap().problems.is_empty());
    }
    let b_audit = b.db.store().audit_events(0, 10_000).unwrap();
    assert!(b_audit.iter().any(|e| e.action == Action::PeerKeyRotated));

    // A new provider D that holds only A's card from before the rotation
    // syncs everything from scratch through B: records signed by the old
    // key and by the new one all verify.
    let d = TestNode::start("d", |_| {}).await;
    b.add_peer(&d, &["a/*"], &[]);
    d.add_peer(&b, &[], &["*"]);
    d.add_card(old_card, &[], &[]);
    eventually(WAIT, || head(&d.db, "a/list") == 150)
        .await
        .expect("a new node never synced A's rotated set");
    assert_eq!(matches(&d.db, &code(3)), 1);
    assert_eq!(matches(&d.db, &code(149)), 1);
    let sa = a.db.store().set(&"a/list".parse().unwrap()).unwrap();
    let sd = d.db.store().set(&"a/list".parse().unwrap()).unwrap();
    assert_eq!(sa.head_digest, sd.head_digest);

    // A fresh connection to A's renewed federation listener works (B
    // compares its copy with A's), and A's audit log, its head now signed
    // by the new key, verifies and records the rotation.
    let compared = b.node().federation().verify_sets().await;
    let with_a = compared.iter().find(|c| c.peer == "a").unwrap();
    assert_eq!(with_a.verdict, "equal", "{compared:?}");
    let audit = admin
        .verify_audit(proto::VerifyAuditRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(audit.ok, "{audit:?}");
    let a_audit = a.db.store().audit_events(0, 10_000).unwrap();
    assert!(a_audit.iter().any(|e| e.action == Action::KeysRotated));

    // B rotates too. A never pulls from B, so it learns B's new key from
    // the feedback batch that carries B's note: the note, signed by the
    // new key, is accepted as B's.
    b.node()
        .federation()
        .rotate_keys(true, false, |_| vec![])
        .unwrap();
    nodes::match_and_give_feedback(
        &b,
        code(120),
        proto::Verdict::Confirmed,
        proto::FeedbackReason::Reviewed,
    )
    .await;
    let fed_a = a.node().federation().clone();
    let ops_a = a.node().ops().clone();
    eventually(WAIT, || {
        ops_a
            .received_feedback()
            .is_ok_and(|r| r.iter().any(|i| i.via == "b"))
    })
    .await
    .expect("B's feedback never reached A after B rotated");
    let fb = received(&ops_a);
    assert!(fb[0].verified, "{fb:?}");
    assert_eq!(fed_a.peers().get("b").unwrap().card.rotations.len(), 1);
}

/// The feedback an origin received, as its admin service lists it.
fn received(ops: &hashfed::ops::Ops) -> Vec<proto::ReceivedFeedback> {
    ops.received_feedback()
        .unwrap()
        .into_iter()
        .map(hashfed::wire::received_feedback)
        .collect()
}

/// Gives the node in `dir` a fixed federation port (free now), so that a
/// peer's card for it stays right across restarts.
fn fixed_federation_port(dir: &std::path::Path) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join("hashfed.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("federation = \"127.0.0.1:0\""), "{text}");
    std::fs::write(
        &path,
        text.replace(
            "federation = \"127.0.0.1:0\"",
            &format!("federation = \"127.0.0.1:{port}\""),
        ),
    )
    .unwrap();
}

/// A match stream held open on `node` (one request answered, then more
/// whose answers are never read, and the caller never ends it): the call
/// a graceful stop cannot wait out, which the cut has to end.
async fn open_match_stream(
    node: &TestNode,
) -> (
    tokio::sync::mpsc::Sender<proto::MatchRequest>,
    tonic::Streaming<proto::MatchResponse>,
) {
    use hashfed::identity::roles::ClientRole;
    let local = node.issue(ClientRole::Local);
    let ch = nodes::channel(&node.dir, node.node().addresses().match_, Some(&local))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(proto::MatchRequest {
        queries: vec![nodes::pdq_query(code(1).to_vec())],
        tag: 1,
    })
    .await
    .unwrap();
    let mut answers = proto::match_client::MatchClient::new(ch)
        .match_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    assert_eq!(first.tag, 1);
    // More requests, their answers never read: the stream's pump waits
    // with the database in hand.
    for tag in 2..30 {
        tx.send(proto::MatchRequest {
            queries: vec![nodes::pdq_query(code(tag).to_vec())],
            tag: u64::from(tag),
        })
        .await
        .unwrap();
    }
    (tx, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_returns_after_every_task_and_hands_the_database_back_every_time() {
    use hashfed::peers::SyncState;
    // A takes B's set and B takes A's: on A run a sync task (A pulls from
    // B) and B's subscription's pump (B follows A's manifest).
    let (tmp, dir) = nodes::node_dir("a");
    fixed_federation_port(&dir);
    let db = Database::open(&dir.join("store"), &Default::default()).unwrap();
    add_pdq(&db, "a/list", &(0..50).map(code).collect::<Vec<_>>());
    drop(db);
    let mut a = TestNode::start_in(tmp, dir).await;
    let b = TestNode::start("b", |db| {
        add_pdq(db, "b/list", &(1000..1050).map(code).collect::<Vec<_>>())
    })
    .await;
    a.add_peer(&b, &["a/*"], &["b/*"]);
    b.add_peer(&a, &["b/*"], &["a/*"]);
    let mut added = 1050;
    for round in 0..20 {
        // Both ways up: A synced from B, B subscribed to A.
        let up = eventually(WAIT, || {
            head(&a.db, "b/list") == head(&b.db, "b/list")
                && head(&b.db, "a/list") == head(&a.db, "a/list")
                && a.node().federation().sync_status("b") == SyncState::Connected
                && b.node().federation().sync_status("a") == SyncState::Connected
                && a.node().federation().trust().open_connections("b") > 0
        })
        .await;
        assert!(
            up.is_some(),
            "round {round}: never up: A's sync {}, B's sync {}",
            a.node().federation().sync_status("b"),
            b.node().federation().sync_status("a")
        );
        // New records on both while A stops: pulls may be under way (and
        // B's sync, which applies records each round, retries at once
        // instead of backing off further every round).
        add_pdq(
            &b.db,
            "b/list",
            &(added..added + 200).map(code).collect::<Vec<_>>(),
        );
        // Every third round many, and no grace at all: B's pull from A is
        // cut half-way, with A's reader of the log blocked on the stream.
        let (more, grace) = if round % 3 == 0 {
            (5000, Duration::ZERO)
        } else {
            (10, Duration::from_millis(300))
        };
        add_pdq(
            &a.db,
            "a/list",
            &(added + 200..added + 200 + more)
                .map(code)
                .collect::<Vec<_>>(),
        );
        added += 200 + more;
        if grace.is_zero() {
            // Long enough for B to hear of them and start pulling.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every third round a call that never ends by itself: the stop
        // goes to the end of its grace period and cuts it.
        let stream = if round % 3 == 1 {
            Some(open_match_stream(&a).await)
        } else {
            None
        };

        let TestNode { tmp, dir, db, node } = a;
        drop(db);
        let node = node.unwrap();
        let tasks = node.tasks().clone();
        assert!(!tasks.is_empty(), "round {round}: no task running");
        let started = std::time::Instant::now();
        let db = node
            .into_database(grace)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            tasks.is_empty(),
            "round {round}: stop returned with {} tasks running",
            tasks.len()
        );
        if let Some((tx, mut answers)) = stream {
            assert!(started.elapsed() >= grace);
            // Answers sent before the cut may still be read; then it ends.
            let ended = tokio::time::timeout(Duration::from_secs(5), async {
                while let Ok(Some(_)) = answers.message().await {}
            })
            .await;
            assert!(
                ended.is_ok(),
                "round {round}: the open stream was not ended"
            );
            drop(tx);
        }
        tokio::task::spawn_blocking(move || db.close())
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("round {round}: closing: {e}"));
        a = TestNode::start_in(tmp, dir).await;
    }
    a.close().await;
    b.close().await;
}
