//! Real nodes for the service tests: a node directory made by `init` in a
//! temp dir, every listener on 127.0.0.1 port 0, a real sled store, real
//! certificates, served in-process or by the `hashfed` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub mod process;
pub mod proxy;

use hashfed::database::Database;
use hashfed::identity::roles::{issue_client, ClientRole};
use hashfed::identity::tls::CertKey;
use hashfed::model::{EntryData, SetId, SetInfo, Signal, SignalType};
use hashfed::server::Node;
use hashfed::store::{Change, StoreOptions};
use tonic::transport::Channel;

/// Points every listener of the node in `dir` at an ephemeral loopback
/// port, so tests can run side by side.
pub fn ephemeral_ports(dir: &Path) {
    let path = dir.join("hashfed.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for port in ["7701", "7702", "7703", "7709"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    std::fs::write(&path, text).unwrap();
}

/// A node directory (init'ed, ephemeral ports) in a fresh temp dir.
pub fn node_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    hashfed::identity::init(&dir, name).unwrap();
    ephemeral_ports(&dir);
    (tmp, dir)
}

/// Adds PDQ entries to `set` (created if missing) with one label each.
pub fn add_pdq(db: &Database, set: &str, codes: &[[u8; 32]]) {
    let set: SetId = set.parse().unwrap();
    if db.store().set(&set).is_none() {
        db.create_set(SetInfo::new(set.clone()), hashfed::model::audit::unaudited)
            .unwrap();
    }
    let changes: Vec<Change> = codes
        .iter()
        .map(|code| {
            Change::Add(EntryData {
                signal: Signal::from_bytes(SignalType::Pdq, code.to_vec()).unwrap(),
                labels: vec!["A1".into()],
                external_id: None,
                vetting: vec![],
            })
        })
        .collect();
    db.apply(&set, &changes, hashfed::model::audit::unaudited)
        .unwrap();
}

/// A node served in-process.
pub struct TestNode {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub db: Arc<Database>,
    pub node: Option<Node>,
}

impl TestNode {
    /// Starts a node named `name`; `seed` fills its database first.
    pub async fn start(name: &str, seed: impl FnOnce(&Database)) -> TestNode {
        let (tmp, dir) = node_dir(name);
        let db = Database::open(&dir.join("store"), &StoreOptions::default()).unwrap();
        seed(&db);
        Self::serve(tmp, dir, Arc::new(db)).await
    }

    /// Starts a node again in the directory of a stopped one (`tmp` keeps
    /// the temporary directory alive).
    pub async fn start_in(tmp: tempfile::TempDir, dir: PathBuf) -> TestNode {
        let db = Database::open(&dir.join("store"), &StoreOptions::default()).unwrap();
        Self::serve(tmp, dir, Arc::new(db)).await
    }

    async fn serve(tmp: tempfile::TempDir, dir: PathBuf, db: Arc<Database>) -> TestNode {
        let config = hashfed::identity::load_config(&dir).unwrap();
        let node = Node::start(&dir, &config, db.clone()).await.unwrap();
        TestNode {
            tmp,
            dir,
            db,
            node: Some(node),
        }
    }

    pub fn node(&self) -> &Node {
        self.node.as_ref().unwrap()
    }

    /// A client certificate of this node for `role`.
    pub fn issue(&self, role: ClientRole) -> CertKey {
        issue_client(&self.dir, "test-client", role, 1).unwrap()
    }

    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.stop(Duration::from_secs(2)).await.unwrap();
        }
    }

    /// Stops the node and closes its database, which the node hands back
    /// once every task it started has ended (no waiting for stray
    /// handles: it fails if one is left). Returns the directory, to start
    /// a node in it again or work on its stopped store.
    pub async fn close(self) -> (tempfile::TempDir, PathBuf) {
        let TestNode { tmp, dir, db, node } = self;
        drop(db);
        if let Some(node) = node {
            let db = node.into_database(Duration::from_secs(2)).await.unwrap();
            tokio::task::spawn_blocking(move || db.close())
                .await
                .unwrap()
                .unwrap();
        }
        (tmp, dir)
    }
}

/// An mTLS channel to `addr`, trusting the node CA in `dir`, presenting
/// `cert` if given.
pub async fn channel(
    dir: &Path,
    addr: std::net::SocketAddr,
    cert: Option<&CertKey>,
) -> Result<Channel, tonic::transport::Error> {
    hashfed::identity::client::node_endpoint(dir, &addr.to_string(), "localhost", cert)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// A PDQ query for `value` with quality 90.
pub fn pdq_query(value: Vec<u8>) -> hashfed::wire::proto::Query {
    use hashfed::wire::proto;
    proto::Query {
        signal: Some(proto::Signal {
            r#type: proto::SignalType::Pdq as i32,
            value,
            opaque_type: String::new(),
        }),
        pdq_variants: vec![],
        quality: Some(90),
        radius: None,
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a caller with `cert` gets from the listener at `addr` of the node
/// in `dir`: `OK` if a health check is served, else the TLS alert the node
/// refused the handshake with (with TLS 1.3 the client learns it on its
/// first read, as a transport error), else the error as text.
pub async fn handshake_outcome(
    dir: &Path,
    addr: std::net::SocketAddr,
    cert: Option<&CertKey>,
) -> String {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let result = match channel(dir, addr, cert).await {
        Ok(ch) => HealthClient::new(ch)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|s| format!("{s:?}")),
        Err(e) => Err(format!("{e:?}")),
    };
    match result {
        Ok(()) => "OK".into(),
        Err(text) => text
            .split("received fatal alert: ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_alphanumeric()).next())
            .unwrap_or(&text)
            .to_owned(),
    }
}

impl TestNode {
    /// This node's peer card, with its federation listener's real address.
    pub fn card(&self) -> String {
        let endpoint = self.node().addresses().federation.to_string();
        hashfed::peers::PeerCard::of_node(&self.dir, &endpoint)
            .unwrap()
            .to_toml()
            .unwrap()
    }

    /// Adds `other` as a peer of this node with these grants.
    pub fn add_peer(&self, other: &TestNode, send: &[&str], accept: &[&str]) {
        self.add_card(other.card(), send, accept);
    }

    /// Adds the peer with `card`.
    pub fn add_card(&self, card: String, send: &[&str], accept: &[&str]) {
        self.node()
            .federation()
            .add_peer(
                &card,
                send.iter().map(|s| s.to_string()).collect(),
                accept.iter().map(|s| s.to_string()).collect(),
                hashfed::model::audit::unaudited,
            )
            .unwrap();
    }
}

/// A local service of `node` looks `code` up over the match service (it
/// must hit) and gives `verdict` with `reason` on the first hit, which
/// then travels toward the entry's origin. Returns that hit.
pub async fn match_and_give_feedback(
    node: &TestNode,
    code: [u8; 32],
    verdict: hashfed::wire::proto::Verdict,
    reason: hashfed::wire::proto::FeedbackReason,
) -> hashfed::wire::proto::Hit {
    use hashfed::wire::proto;
    let local = node.issue(ClientRole::Local);
    let ch = channel(&node.dir, node.node().addresses().match_, Some(&local))
        .await
        .unwrap();
    let mut client = proto::match_client::MatchClient::new(ch);
    let answer = client
        .match_hashes(proto::MatchRequest {
            queries: vec![pdq_query(code.to_vec())],
            tag: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let hit = answer.results[0].hits[0].clone();
    client
        .feedback(proto::FeedbackRequest {
            match_id: hit.match_id.clone(),
            verdict: verdict as i32,
            reason: reason as i32,
        })
        .await
        .unwrap();
    hit
}

/// Polls `check` every 10 ms until it holds or `limit` passes; returns how
/// long it took.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if check() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check().then(|| started.elapsed())
}
