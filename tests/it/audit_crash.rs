//! SIGKILL at random points while operators make every kind of change
//! (imports, retractions, switching entries off and on, vetting, set
//! suppression, dispute policies, peers and their grants and status):
//! after each kill `hashfed verify` and `hashfed audit verify` pass, and
//! every effect in the database has its audit record and every record its
//! effect. Real `hashfed serve` processes, operators over the admin
//! listener with their own certificates (real mTLS), real sled.
//!
//! `HASHFED_AUDIT_KILLS` kills (default 10, for CI); the closing notes'
//! run uses `HASHFED_AUDIT_KILLS=200 cargo test --test it audit_crash --
//! --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::nodes;
use crate::nodes::process::{hashfed, kill, serve};
use hashfed::database::Database;
use hashfed::identity::roles::{issue_client, ClientRole};
use hashfed::model::audit::{Action, AuditEvent};
use hashfed::model::{EntryId, SetId, Signal};
use hashfed::store::StoreOptions;
use hashfed::wire::proto::{self, admin_client::AdminClient};
use tonic::transport::Channel;

const IMPORTS: &str = "n/imports";
const VETTED: &str = "n/vetted";

fn kills() -> u32 {
    std::env::var("HASHFED_AUDIT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// A small deterministic generator (the same run every time).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// The PDQ value number `i` of a stream named `tag`.
fn value(tag: &str, i: u64) -> String {
    blake3::hash(format!("{tag} {i}").as_bytes())
        .to_hex()
        .to_string()
}

fn entry_id(set: &str, hex: &str) -> EntryId {
    let signal = Signal::parse("pdq", hex).unwrap();
    EntryId::derive(&set.parse::<SetId>().unwrap(), &signal)
}

/// What the operators' worker has done so far (values handed out), so
/// that later operations pick from them; a call the kill cut off leaves
/// its value here too, which is fine: the checks read the database.
struct Worker {
    rng: Lcg,
    imported: u64,
    submitted: u64,
    admin: Vec<AdminClient<Channel>>,
    card: String,
    /// Key rotations asked for (a chain holds at most 256).
    rotations: u32,
}

impl Worker {
    /// One random operation; an error ends the round (the node died).
    async fn step(&mut self) -> Result<(), tonic::Status> {
        let op = self.rng.below(11);
        let a = &mut self.admin;
        match op {
            0 | 1 => {
                // An import of a few hundred new values, in one stream.
                // Up to 40k values, then a few at a time: every round
                // checks the whole database, and a long run (200 kills)
                // must not grow it without bound.
                let n = if self.imported < 40_000 {
                    50 + self.rng.below(400)
                } else {
                    1 + self.rng.below(10)
                };
                let mut text = String::new();
                for i in self.imported..self.imported + n {
                    text.push_str("pdq ");
                    text.push_str(&value("import", i));
                    text.push('\n');
                }
                self.imported += n;
                let chunk = proto::ImportChunk {
                    set: IMPORTS.into(),
                    format: "te-lines".into(),
                    file_name: "list.txt".into(),
                    reason: String::new(),
                    data: text.into_bytes(),
                };
                a[0].import(tokio_stream::iter(vec![chunk])).await?;
            }
            2 => {
                let i = self.rng.below(self.imported.max(1));
                let id = entry_id(IMPORTS, &value("import", i));
                tolerate(
                    a[0].retract(proto::RetractRequest {
                        id: id.to_string(),
                        reason: "crash test".into(),
                    })
                    .await,
                )?;
            }
            3 => {
                let i = self.rng.below(self.imported.max(1));
                let id = entry_id(IMPORTS, &value("import", i));
                let disabled = self.rng.below(2) == 0;
                tolerate(
                    a[1].set_entry_disabled(proto::SetEntryDisabledRequest {
                        id: id.to_string(),
                        disabled,
                    })
                    .await,
                )?;
            }
            4 => {
                // Submitted by one operator, confirmed by the two others
                // (or rejected), each a call of its own.
                let hex = value("vetted", self.submitted);
                self.submitted += 1;
                let pending = a[0]
                    .submit_entry(proto::SubmitEntryRequest {
                        set: VETTED.into(),
                        signal_type: "pdq".into(),
                        value: hex,
                        labels: vec![],
                        external_id: String::new(),
                    })
                    .await?
                    .into_inner();
                let id = proto::EntryRef { id: pending.id };
                if self.rng.below(4) == 0 {
                    a[1].reject_entry(proto::RejectEntryRequest {
                        id: id.id,
                        reason: "not what it seemed".into(),
                    })
                    .await?;
                } else {
                    a[1].confirm_entry(id.clone()).await?;
                    a[2].confirm_entry(id).await?;
                }
            }
            5 => {
                a[2].set_suppressed(proto::SetSuppressedRequest {
                    set: IMPORTS.into(),
                    suppressed: self.rng.below(2) == 0,
                    reason: "crash test".into(),
                })
                .await?;
            }
            6 => {
                a[1].set_dispute_policy(proto::SetDisputePolicyRequest {
                    set: IMPORTS.into(),
                    threshold: self.rng.below(5) as u32 + 2,
                    suspend: self.rng.below(2) == 0,
                })
                .await?;
            }
            7 => {
                a[0].add_peer(proto::AddPeerRequest {
                    card: self.card.clone(),
                    send: vec!["n/*".into()],
                    accept: vec![],
                })
                .await?;
            }
            8 => {
                let send = if self.rng.below(2) == 0 {
                    vec!["n/imports".into()]
                } else {
                    vec!["n/*".into()]
                };
                tolerate(
                    a[2].set_peer_grants(proto::SetPeerGrantsRequest {
                        name: "p".into(),
                        send,
                        accept: vec![],
                    })
                    .await,
                )?;
            }
            10 if self.rotations < 200 => {
                // The signing key, and now and then the certificates too:
                // files beside the store, journalled with their record.
                self.rotations += 1;
                a[0].rotate_keys(proto::RotateKeysRequest {
                    signing: true,
                    tls: self.rng.below(3) == 0,
                })
                .await?;
            }
            _ => {
                let status = if self.rng.below(2) == 0 {
                    "suspended"
                } else {
                    "active"
                };
                tolerate(
                    a[1].set_peer_status(proto::SetPeerStatusRequest {
                        name: "p".into(),
                        status: status.into(),
                    })
                    .await,
                )?;
            }
        }
        Ok(())
    }
}

/// An operation refused for what it names (no such entry or peer yet, an
/// entry already in that state) is part of the mix; anything else (the
/// node died) ends the round.
fn tolerate<T>(result: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    use tonic::Code;
    match result {
        Ok(_) => Ok(()),
        Err(s)
            if matches!(
                s.code(),
                Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists
            ) =>
        {
            Ok(())
        }
        Err(s) => Err(s),
    }
}

#[test]
fn every_change_and_its_audit_record_survive_a_kill_together() {
    let kills = kills();
    let (_tmp, dir) = nodes::node_dir("n");
    let (_tp, peer_dir) = nodes::node_dir("p");
    let card_file = peer_dir.join("p.card");
    nodes::process::card(&peer_dir, "127.0.0.1:1", &card_file);
    let card = std::fs::read_to_string(&card_file).unwrap();
    let d = dir.to_str().unwrap();
    // The vetted set: created by an empty import, then asking for two
    // reviewers.
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    for args in [
        &[
            "import",
            "--dir",
            d,
            "--set",
            VETTED,
            "--format",
            "te-lines",
            empty.to_str().unwrap(),
        ][..],
        &["set", "vetting", "--dir", d, VETTED, "2"][..],
    ] {
        let o = hashfed(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let certs: Vec<_> = (0..3)
        .map(|i| issue_client(&dir, &format!("operator-{i}"), ClientRole::Operator, 1).unwrap())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rng = Lcg(0x5eed_a0d1);
    let mut worker = Worker {
        rng: Lcg(7),
        imported: 0,
        submitted: 0,
        admin: Vec::new(),
        card,
        rotations: 0,
    };
    let mut cut_short = 0;
    for round in 0..kills {
        let mut node = serve(&dir);
        let addr: std::net::SocketAddr = node.admin.parse().unwrap();
        worker.admin = runtime.block_on(async {
            let mut clients = Vec::new();
            for cert in &certs {
                let channel = nodes::channel(&dir, addr, Some(cert)).await.unwrap();
                clients.push(AdminClient::new(channel));
            }
            clients
        });
        let stop = Arc::new(AtomicBool::new(false));
        let wait = Duration::from_millis(20 + rng.below(400));
        // The kill lands wherever the operations are when `wait` is up.
        let killer = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                stop.store(true, Ordering::SeqCst);
            })
        };
        runtime.block_on(async {
            while !stop.load(Ordering::SeqCst) {
                if worker.step().await.is_err() {
                    break;
                }
            }
        });
        kill(&mut node.child, "-KILL");
        killer.join().unwrap();
        if stop.load(Ordering::SeqCst) {
            cut_short += 1;
        }
        check(&dir, round);
    }
    eprintln!(
        "audit_crash: {kills} kills, {} values imported, {} entries submitted, {} key rotations, {cut_short} rounds cut by the kill",
        worker.imported, worker.submitted, worker.rotations
    );
}

/// After a kill: the CLI's checks pass, and effects and audit records
/// correspond one to one.
fn check(dir: &Path, round: u32) {
    let d = dir.to_str().unwrap();
    let verify = hashfed(&["verify", "--dir", d]);
    assert!(
        verify.status.success(),
        "round {round}: hashfed verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let audit = hashfed(&["audit", "verify", "--dir", d]);
    assert!(
        audit.status.success(),
        "round {round}: hashfed audit verify: {}{}",
        String::from_utf8_lossy(&audit.stdout),
        String::from_utf8_lossy(&audit.stderr)
    );

    // The node as it opens: the peer registry's interrupted change is
    // finished or dropped here, as at any start.
    let config = hashfed::identity::load_config(dir).unwrap();
    let db = Arc::new(Database::open(&dir.join("store"), &StoreOptions::default()).unwrap());
    let fed = hashfed::federation::Federation::for_node(
        dir,
        &config,
        db.clone(),
        Default::default(),
        Default::default(),
    )
    .unwrap();
    let store = db.store();
    let events: Vec<AuditEvent> = store.audit_events(0, usize::MAX).unwrap();
    let of = |action: Action| events.iter().filter(move |e| e.action == action);
    let imports: SetId = IMPORTS.parse().unwrap();
    let vetted: SetId = VETTED.parse().unwrap();

    // Imports: every entry of the set came from an audited batch.
    let entries: Vec<_> = store
        .entries(Some(&imports))
        .map(|it| it.map(Result::unwrap).collect())
        .unwrap_or_default();
    let added: u64 = of(Action::Imported)
        .filter(|e| e.subject == IMPORTS)
        .map(|e| count(&e.detail, " added"))
        .sum();
    assert_eq!(
        entries.len() as u64,
        added,
        "round {round}: entries in {IMPORTS} against the audited imports"
    );

    // Retractions: exactly the audited ones.
    let retracted: BTreeSet<String> = entries
        .iter()
        .filter(|e| e.retracted)
        .map(|e| e.id.to_string())
        .collect();
    let audited: BTreeSet<String> = of(Action::EntryRetracted)
        .map(|e| e.subject.clone())
        .collect();
    assert_eq!(retracted, audited, "round {round}: retractions");

    // Switched off: as the last audited switch of each entry says.
    let mut switched: BTreeMap<String, bool> = BTreeMap::new();
    for e in &events {
        match e.action {
            Action::EntryDisabled => {
                switched.insert(e.subject.clone(), true);
            }
            Action::EntryEnabled => {
                switched.insert(e.subject.clone(), false);
            }
            _ => {}
        }
    }
    for e in &entries {
        let id = e.id.to_string();
        assert_eq!(
            e.disabled,
            switched.get(&id).copied().unwrap_or(false),
            "round {round}: entry {id} disabled"
        );
    }

    // Vetting: pending = submitted − rejected − vetted; each pending
    // entry's confirmations are the audited ones; the set holds exactly
    // the audited vetted entries, each with two reviewers.
    let subjects = |action| -> BTreeSet<String> { of(action).map(|e| e.subject.clone()).collect() };
    let submitted = subjects(Action::EntrySubmitted);
    let rejected = subjects(Action::EntryRejected);
    let vetted_ids = subjects(Action::EntryVetted);
    let pending: BTreeMap<String, usize> = store
        .pending(Some(&vetted))
        .unwrap()
        .into_iter()
        .map(|p| (p.id.to_string(), p.data.vetting.len()))
        .collect();
    let expected: BTreeSet<String> = submitted
        .difference(&rejected)
        .filter(|id| !vetted_ids.contains(*id))
        .cloned()
        .collect();
    assert_eq!(
        pending.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "round {round}: pending entries"
    );
    for (id, confirmations) in &pending {
        let audited = of(Action::EntryConfirmed)
            .filter(|e| &e.subject == id)
            .count();
        assert_eq!(
            *confirmations, audited,
            "round {round}: confirmations of {id}"
        );
    }
    let in_log: BTreeSet<String> = store
        .entries(Some(&vetted))
        .unwrap()
        .map(|e| e.unwrap())
        .inspect(|e| assert_eq!(e.data.vetting.len(), 2, "round {round}: {}", e.id))
        .map(|e| e.id.to_string())
        .collect();
    assert_eq!(in_log, vetted_ids, "round {round}: vetted entries");

    // The set's switches and rules: as last audited.
    let state = store.set(&imports);
    let last = |actions: &[Action]| {
        events
            .iter()
            .rev()
            .find(|e| e.subject == IMPORTS && actions.contains(&e.action))
    };
    let suppressed = last(&[Action::SetSuppressed, Action::SetUnsuppressed])
        .is_some_and(|e| e.action == Action::SetSuppressed);
    assert_eq!(
        state.as_ref().is_some_and(|s| s.suppressed),
        suppressed,
        "round {round}: suppression"
    );
    if let Some(policy) = last(&[Action::DisputePolicySet]) {
        let s = state.as_ref().unwrap();
        assert_eq!(
            policy.detail,
            format!(
                "threshold {}, suspend {}",
                s.info.disputes.threshold, s.info.disputes.suspend
            ),
            "round {round}: dispute policy"
        );
    }

    // The peer: present if and only if its addition was audited; its
    // grants and status as last audited.
    let peers = fed.list_peers();
    let added = events.iter().any(|e| e.action == Action::PeerAdded);
    assert_eq!(peers.len(), usize::from(added), "round {round}: peers");
    if let Some(view) = peers.first() {
        let p = &view.peer;
        let grants = events
            .iter()
            .rev()
            .find(|e| matches!(e.action, Action::PeerAdded | Action::PeerGranted))
            .unwrap();
        assert_eq!(
            grants.detail,
            format!("send {:?}, accept {:?}", p.send, p.accept),
            "round {round}: grants"
        );
        let status = events
            .iter()
            .rev()
            .find(|e| matches!(e.action, Action::PeerSuspended | Action::PeerResumed))
            .map_or("active", |e| {
                if e.action == Action::PeerSuspended {
                    "suspended"
                } else {
                    "active"
                }
            });
        assert_eq!(p.status.as_str(), status, "round {round}: peer status");
    }
    assert!(
        !dir.join("peers.toml.tmp").exists(),
        "round {round}: a change left half done"
    );

    // Key rotations: one per audited record, nothing left staged.
    let history = hashfed::identity::keys::history(dir).unwrap();
    let rotated = of(Action::KeysRotated)
        .filter(|e| e.detail.contains("signing key"))
        .count();
    assert_eq!(
        history.rotations.len(),
        rotated,
        "round {round}: key rotations"
    );
    for staged in [
        "keys/rotations.json.tmp",
        "keys/signing.next.pem",
        "tls/renew.commit",
        "tls/federation.pem.next",
        "tls/admin.key.next",
    ] {
        assert!(!dir.join(staged).exists(), "round {round}: {staged} left");
    }

    drop(fed);
    match Arc::try_unwrap(db) {
        Ok(db) => db.close().unwrap(),
        Err(_) => panic!("round {round}: the database is still shared"),
    }
}

/// The number before `label` in an audit detail ("… 12 added, …").
fn count(detail: &str, label: &str) -> u64 {
    let Some(end) = detail.find(label) else {
        return 0;
    };
    detail[..end]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
