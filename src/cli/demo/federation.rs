//! `hashfed demo`: a real local federation, walked through one hash list's
//! life.
//!
//! Three nodes run in this process, each from its own node directory (made
//! by `hashfed init`'s code) in a temporary directory, with a real sled
//! store and real mTLS listeners on 127.0.0.1 (ephemeral ports):
//!
//! ```text
//!  hotline-a ──sends hotline-a/*──▶ hotline-b ──relays hotline-a/*──▶ provider
//!  (origin)                         (hotline)                         (upload pipeline)
//!      ▲                                                                  │
//!      └────────────── false-positive feedback, hop by hop ───────────────┘
//! ```
//!
//! Steps: publish (hotline-a signs entries into its set) → vet (each entry
//! carries two reviewers' confirmations) → sync (matchable on hotline-b and,
//! relayed, on the provider) → match (the provider's upload pipeline sends
//! an edited copy over mTLS) → false-positive feedback (back to the origin)
//! → retraction → no match. Every latency printed is measured here. Any
//! step that does not behave as expected ends the demo with an error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context};
use hashfed::database::Database;
use hashfed::exchange::standin::NcmecStandIn;
use hashfed::identity::client::node_endpoint;
use hashfed::identity::roles::{issue_client, ClientRole};
use hashfed::model::{EntryData, EntryId, SetId, SetPolicy, Signal, SignalType, Verdict};
use hashfed::ops::{Actor, ConfirmOutcome};
use hashfed::peers::{Peer, PeerCard};
use hashfed::server::Node;
use hashfed::signal::content::{hash_image, HashOptions};
use hashfed::signal::pdq::{PdqHasher, DEFAULT_MATCH_THRESHOLD};
use hashfed::store::StoreOptions;
use hashfed::wire::proto;
use hashfed::wire::proto::match_client::MatchClient;
use tokio::sync::watch;
use tonic::transport::Channel;

use super::pdq::{brighten, jpeg, resize, scene};

mod hotline_api;

/// The set hotline-a publishes.
const SET: &str = "hotline-a/csam-confirmed";

/// How long any one step may take before the demo gives up.
const WAIT: Duration = Duration::from_secs(10);

/// The three nodes, in start order.
const NAMES: [&str; 3] = ["hotline-a", "hotline-b", "provider"];

/// Runs the federation demo; the scenes are drawn from `seed`.
pub fn run(seed: u32) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let root = TempRoot::create()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(demo(root.path(), seed));
    drop(runtime);
    let removed = root.remove();
    result?;
    removed?;
    step(
        "stop",
        format_args!("temporary directory removed; nothing left behind"),
    );
    println!(
        "\nhashfed demo: every step behaved as expected ({:.1} s in all). \
         `hashfed demo pdq` shows PDQ on edited images.",
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints one step: `[tag]` in a column, then the text.
fn step(tag: &str, text: std::fmt::Arguments<'_>) {
    println!("{:<11}{text}", format!("[{tag}]"));
}

/// Milliseconds, one decimal.
fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The first `n` characters of `s`, then `…`.
fn short(s: &str, n: usize) -> String {
    match s.get(..n) {
        Some(head) if head.len() < s.len() => format!("{head}…"),
        _ => s.to_owned(),
    }
}

/// A temporary directory, removed when dropped (also on errors and panics).
struct TempRoot(Option<PathBuf>);

impl TempRoot {
    fn create() -> anyhow::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path =
            std::env::temp_dir().join(format!("hashfed-demo-{}-{nanos:08x}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(TempRoot(Some(path)))
    }

    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new("."))
    }

    fn remove(mut self) -> anyhow::Result<()> {
        match self.0.take() {
            Some(path) => std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display())),
            None => Ok(()),
        }
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// One running node.
struct DemoNode {
    name: &'static str,
    dir: PathBuf,
    db: Arc<Database>,
    node: Node,
    /// When it started, ms since the epoch (its exchange is timed from it).
    started_ms: u64,
}

impl DemoNode {
    /// `hashfed init` in `root/name`, every listener on 127.0.0.1 port 0,
    /// a fresh sled store, the node's services started; the provider also
    /// with an exchange that pulls from `api`.
    async fn start(
        root: &Path,
        name: &'static str,
        api: &NcmecStandIn,
    ) -> anyhow::Result<DemoNode> {
        let dir = root.join(name);
        hashfed::identity::init(&dir, name).with_context(|| format!("initialising {name}"))?;
        ephemeral_ports(&dir)?;
        let mut config = hashfed::identity::load_config(&dir)?;
        if name == "provider" {
            config.exchanges.push(hotline_api::exchange(api, &dir)?);
        }
        let started_ms = hotline_api::epoch_ms();
        let db = Database::open(&dir.join("store"), &StoreOptions::default())
            .with_context(|| format!("opening {name}'s database"))?;
        let db = Arc::new(db);
        let node = Node::start(&dir, &config, db.clone())
            .await
            .with_context(|| format!("starting {name}"))?;
        Ok(DemoNode {
            name,
            dir,
            db,
            node,
            started_ms,
        })
    }

    fn fed(&self) -> &Arc<hashfed::federation::Federation> {
        self.node.federation()
    }

    fn ops(&self) -> &hashfed::ops::Ops {
        self.node.ops()
    }

    fn node_id(&self) -> &str {
        &self.fed().config().node_id
    }

    /// This node's peer card, with its federation listener's real address.
    fn card(&self) -> anyhow::Result<String> {
        let endpoint = self.node.addresses().federation.to_string();
        Ok(PeerCard::of_node(&self.dir, &endpoint)?.to_toml()?)
    }

    /// Adds `other` as a peer with these grants.
    fn add_peer(&self, other: &DemoNode, send: &[&str], accept: &[&str]) -> anyhow::Result<()> {
        self.ops()
            .add_peer(
                &operator(),
                &other.card()?,
                send.iter().map(|s| s.to_string()).collect(),
                accept.iter().map(|s| s.to_string()).collect(),
            )
            .with_context(|| format!("{}: adding peer {}", self.name, other.name))?;
        Ok(())
    }

    /// Head seq and digest of the demo set here (0 and "" if absent).
    fn head(&self, set: &SetId) -> (u64, String) {
        self.db
            .settled(|store| store.set(set))
            .map_or((0, String::new()), |s| (s.head_seq, s.head_digest))
    }

    /// Stops the node and closes its database, which the node hands back
    /// once every task it started has ended.
    async fn stop(self) -> anyhow::Result<()> {
        let DemoNode { name, db, node, .. } = self;
        drop(db);
        let db = node
            .into_database(Duration::from_secs(2))
            .await
            .with_context(|| format!("stopping {name}"))?;
        tokio::task::spawn_blocking(move || db.close())
            .await?
            .with_context(|| format!("closing {name}'s database"))
    }
}

/// Points every listener of the node in `dir` at an ephemeral loopback port.
fn ephemeral_ports(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("hashfed.toml");
    let mut text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for port in ["7701", "7702", "7703", "7709"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

/// Starts the nodes, runs the steps, and stops every node that started,
/// whatever the steps' outcome.
async fn demo(root: &Path, seed: u32) -> anyhow::Result<()> {
    println!(
        "hashfed demo: a federation of three real nodes on this machine \
         (own identities, sled stores, mTLS gRPC on 127.0.0.1)\n\
         The \"abuse images\" are generated scenes (seed {seed}), never real content.\n"
    );
    let images = images(seed)?;
    let api = hotline_api::start(&images).await?;
    let mut nodes = Vec::new();
    let mut failed = None;
    for name in NAMES {
        let t = Instant::now();
        match DemoNode::start(root, name, &api).await {
            Ok(n) => {
                let a = n.node.addresses();
                step(
                    "start",
                    format_args!(
                        "{name:<10} node {}  federation {}  match {}  ({})",
                        short(n.node_id(), 8),
                        a.federation,
                        a.match_,
                        ms(t.elapsed())
                    ),
                );
                nodes.push(n);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let outcome = match failed {
        Some(e) => Err(e),
        None => match &nodes[..] {
            // Ctrl-C still stops the nodes and removes the directory.
            [a, b, p] => tokio::select! {
                r = steps(a, b, p, &api, images) => r,
                _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            },
            _ => Err(anyhow!("expected three nodes")),
        },
    };
    let t = Instant::now();
    let count = nodes.len();
    let mut stopped = Ok(());
    // The provider first, the origin last.
    for n in nodes.into_iter().rev() {
        let r = n.stop().await;
        if stopped.is_ok() {
            stopped = r;
        }
    }
    if outcome.is_ok() && stopped.is_ok() {
        step(
            "stop",
            format_args!(
                "{count} nodes stopped cleanly, databases closed ({})",
                ms(t.elapsed())
            ),
        );
    }
    outcome.and(stopped)
}

/// One stand-in image: its file bytes and hashes as the hotline computed
/// them.
struct StandIn {
    bytes: Vec<u8>,
    pdq: Signal,
    md5: Signal,
}

fn stand_in(bytes: Vec<u8>, hasher: &mut PdqHasher) -> anyhow::Result<StandIn> {
    let h = hash_image(&bytes, &HashOptions::default(), hasher).context("hashing a stand-in")?;
    Ok(StandIn {
        pdq: Signal::pdq(h.pdq.hash),
        md5: Signal::from_bytes(SignalType::Md5, h.exact.md5.to_vec())?,
        bytes,
    })
}

/// Waits until `check` holds on `db`, waking on each of its changes (and
/// every 5 ms); returns the time since `since`, or `None` after [`WAIT`].
/// `changes` must be taken before the awaited write, so none is missed.
async fn until(
    db: &Database,
    mut changes: watch::Receiver<u64>,
    since: Instant,
    check: impl Fn(&Database) -> bool,
) -> Option<Duration> {
    loop {
        if check(db) {
            return Some(since.elapsed());
        }
        if since.elapsed() > WAIT {
            return None;
        }
        // A closed channel (the database is gone) would return at once.
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_millis(5), changes.changed()).await
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Polls `check` every millisecond; the time since `since`, or `None`
/// after [`WAIT`].
async fn poll(since: Instant, mut check: impl FnMut() -> bool) -> Option<Duration> {
    loop {
        if check() {
            return Some(since.elapsed());
        }
        if since.elapsed() > WAIT {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Whether `signal` matches an entry of `set` on `db`.
fn matchable(db: &Database, set: &SetId, signal: &Signal) -> bool {
    db.match_exact(signal)
        .map(|hits| hits.iter().any(|m| &m.set == set))
        .unwrap_or(false)
}

/// An mTLS channel to the provider's match listener, trusting the node's
/// CA and presenting a local-service client certificate.
async fn match_client(p: &DemoNode) -> anyhow::Result<MatchClient<Channel>> {
    let cert = issue_client(&p.dir, "upload-pipeline", ClientRole::Local, 1)
        .context("issuing the upload pipeline's client certificate")?;
    let addr = p.node.addresses().match_.to_string();
    let channel = node_endpoint(&p.dir, &addr, "localhost", Some(&cert))
        .context("dialling the provider's match listener")?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .context("connecting to the provider's match service")?;
    Ok(MatchClient::new(channel))
}

/// `MatchImage` with `bytes`; the response and the round trip.
async fn match_image(
    client: &mut MatchClient<Channel>,
    bytes: &[u8],
) -> anyhow::Result<(proto::MatchImageResponse, Duration)> {
    let t = Instant::now();
    let response = client
        .match_image(proto::MatchImageRequest {
            image: bytes.to_vec(),
            dihedral: false,
            radius: None,
            quality_floor: None,
        })
        .await
        .map_err(|s| anyhow!("MatchImage: {}", s.message()))?
        .into_inner();
    Ok((response, t.elapsed()))
}

/// The short name of a wire signal type, as the match checks compare it.
fn type_name(code: i32) -> &'static str {
    match proto::SignalType::try_from(code) {
        Ok(proto::SignalType::Pdq) => "PDQ",
        Ok(proto::SignalType::Md5) => "MD5",
        _ => "other",
    }
}

/// The demo proper, on running nodes: the steps in order, each checking
/// what it shows; the first that does not behave ends the demo.
async fn steps(
    a: &DemoNode,
    b: &DemoNode,
    p: &DemoNode,
    api: &NcmecStandIn,
    images: Images,
) -> anyhow::Result<()> {
    let set: SetId = SET.parse()?;
    let mut demo = Demo {
        a,
        b,
        p,
        api,
        set,
        images,
        signals: Vec::new(),
        ids: Vec::new(),
    };
    demo.peer()?;
    let peered = demo.policy()?;
    demo.subscriptions(peered).await?;
    demo.publish()?;
    let vetted = demo.vet().await?;
    demo.sync(&vetted)?;
    demo.sync_equal(vetted).await?;
    // The provider's upload pipeline, connected for the matches, the
    // feedback and the check after the retraction.
    let mut client = match_client(p).await?;
    let hit = demo.match_edited(&mut client).await?;
    demo.match_copy(&mut client).await?;
    demo.match_unrelated(&mut client).await?;
    demo.feedback(&mut client, &hit).await?;
    demo.retract().await?;
    demo.no_match(&mut client).await?;
    demo.exchange_fetch().await?;
    let hit = demo.exchange_match(&mut client).await?;
    demo.exchange_feedback(&mut client, &hit).await?;
    drop(client);
    demo.rotate().await?;
    demo.verify().await
}

/// What the steps share: the three running nodes, the demo set, the
/// images, and (once published) the entries every later step checks.
struct Demo<'a> {
    /// hotline-a, the origin.
    a: &'a DemoNode,
    /// hotline-b, which relays hotline-a's set.
    b: &'a DemoNode,
    /// The provider, whose upload pipeline matches.
    p: &'a DemoNode,
    /// The hotline API the provider's exchange pulls from.
    api: &'a NcmecStandIn,
    /// hotline-a's set ([`SET`]).
    set: SetId,
    /// The stand-ins and the pictures the upload pipeline sends.
    images: Images,
    /// What hotline-a published, in submission order (set by `publish`).
    signals: Vec<Signal>,
    /// The published entries' ids, in the same order (set by `publish`).
    ids: Vec<EntryId>,
}

/// The demo's pictures: stand-ins for three confirmed images, an edited
/// copy of the first (what an upload usually is), an unrelated one, and
/// one more that the hotline API lists, with an edited copy.
struct Images {
    stand_ins: Vec<StandIn>,
    edited: Vec<u8>,
    unrelated: Vec<u8>,
    listed: StandIn,
    listed_edited: Vec<u8>,
}

/// Draws the pictures from `seed`; generated, so no real content is ever
/// needed.
fn images(seed: u32) -> anyhow::Result<Images> {
    let mut hasher = PdqHasher::new();
    let originals: Vec<_> = (0..3u32)
        .map(|k| scene(640, 480, seed.wrapping_add(k * 7919)))
        .collect();
    let stand_ins = originals
        .iter()
        .map(|img| stand_in(jpeg(img, 90)?, &mut hasher))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let edited = jpeg(&brighten(&resize(&originals[0], 0.5), 20), 60)?;
    let unrelated = jpeg(&scene(640, 480, seed.wrapping_add(99_991)), 90)?;
    let listed = scene(640, 480, seed.wrapping_add(54_321));
    let listed_edited = jpeg(&brighten(&resize(&listed, 0.5), 20), 60)?;
    let listed = stand_in(jpeg(&listed, 90)?, &mut hasher)?;
    step(
        "images",
        format_args!(
            "3 generated stand-ins for confirmed images (JPEG 640x480), and an edited copy \
             of #1 (half size, brighter, JPEG q60); a 4th for the hotline API's list"
        ),
    );
    Ok(Images {
        stand_ins,
        edited,
        unrelated,
        listed,
        listed_edited,
    })
}

/// What vetting leaves for the sync step: the origin's head once the
/// entries are in, the first entry's reviewers there, and when (if at all)
/// the entries became matchable downstream, timed from the vetting write.
struct Vetted {
    seq: u64,
    digest: String,
    reviewers: Vec<String>,
    on_b: Option<Duration>,
    on_p: Option<Duration>,
}

impl Demo<'_> {
    /// Peering: each side adds the other's card with its grants; each
    /// node's peers are listed, so the topology is visible.
    fn peer(&self) -> anyhow::Result<()> {
        let (a, b, p) = (self.a, self.b, self.p);
        a.add_peer(b, &["hotline-a/*"], &[])?;
        b.add_peer(a, &[], &["hotline-a/*"])?;
        b.add_peer(p, &["hotline-a/*"], &[])?;
        p.add_peer(b, &[], &["*"])?;
        // The provider never talks to hotline-a; its card lets it check
        // hotline-a's signatures on what hotline-b relays.
        p.add_peer(a, &[], &[])?;
        for n in [a, b, p] {
            let peers: Vec<String> = n
                .ops()
                .peers()?
                .iter()
                .map(|view| peer_grants(&view.peer))
                .collect();
            step(
                "peers",
                format_args!("{:<10} peers with {}", n.name, peers.join("; ")),
            );
        }
        Ok(())
    }

    /// The origin's set, with a signed policy that lets hotline-b relay it;
    /// returns when this began, which the subscriptions are timed from.
    fn policy(&self) -> anyhow::Result<Instant> {
        let (a, set) = (self.a, &self.set);
        let t = Instant::now();
        a.ops().ensure_set(&operator(), set, "by the demo")?;
        a.ops().set_vetting(&operator(), set, 2)?;
        let policy = SetPolicy {
            share_with: vec![],
            reshare: true,
        };
        a.ops()
            .set_policy(&operator(), set, policy)
            .context("set policy")?;
        step(
            "policy",
            format_args!(
                "hotline-a creates {SET}; its policy, signed by hotline-a, allows re-sharing, \
                 so hotline-b may relay it to the provider"
            ),
        );
        Ok(t)
    }

    /// Waits for the subscriptions to open and the provider to hold the
    /// (empty) set through hotline-b, so the publish below has a path.
    async fn subscriptions(&self, since: Instant) -> anyhow::Result<()> {
        let (a, b, p) = (self.a, self.b, self.p);
        let ready = poll(since, || {
            p.db.store()
                .set(&self.set)
                .is_some_and(|s| s.upstream.as_deref() == Some("hotline-b"))
                && a.fed().trust().open_connections("hotline-b") > 0
                && b.fed().trust().open_connections("provider") > 0
        })
        .await
        .ok_or_else(|| {
            anyhow!(
                "the federation did not come up: hotline-b's sync: {}; provider's sync: {}",
                b.fed().sync_status("hotline-a"),
                p.fed().sync_status("hotline-b")
            )
        })?;
        step(
            "peers",
            format_args!(
                "subscriptions open (hotline-b ⇐ hotline-a, provider ⇐ hotline-b); the provider \
                 holds the empty set, relayed ({} after peering)",
                ms(ready)
            ),
        );
        Ok(())
    }

    /// Publish: three PDQ hashes and the MD5 of stand-in #2's file, put up
    /// for vetting by one analyst; they enter the signed log only once two
    /// others confirmed them.
    fn publish(&mut self) -> anyhow::Result<()> {
        let stand_ins = &self.images.stand_ins;
        let mut signals: Vec<Signal> = stand_ins.iter().map(|i| i.pdq.clone()).collect();
        signals.push(stand_ins[1].md5.clone());
        let mut ids = Vec::with_capacity(signals.len());
        for signal in &signals {
            ids.push(
                self.a
                    .ops()
                    .submit(&analyst(0), &self.set, entry(signal))?
                    .id,
            );
        }
        let (pending_seq, _) = self.a.head(&self.set);
        let pending = self.a.db.store().pending(Some(&self.set))?.len();
        ensure!(
            pending == signals.len() && pending_seq == 0,
            "publish: {pending} pending, head seq {pending_seq}"
        );
        let listed: Vec<String> = signals
            .iter()
            .map(|s| format!("{} {}", s.kind().name(), short(&s.value_hex(), 8)))
            .collect();
        step(
            "publish",
            format_args!(
                "analyst-0 submits {} entries to {SET}, label A1: {}; pending, not in the log \
                 (head seq {pending_seq})",
                signals.len(),
                listed.join(", ")
            ),
        );
        self.signals = signals;
        self.ids = ids;
        Ok(())
    }

    /// Vet: the submitter may not confirm; two other analysts do, and the
    /// confirmations travel inside the signed records. The downstream waits
    /// start at the vetting write, so they run here and sync reports them.
    async fn vet(&self) -> anyhow::Result<Vetted> {
        let (a, b, p, set) = (self.a, self.b, self.p, &self.set);
        let own = a.ops().confirm(&analyst(0), &self.ids[0]);
        ensure!(own.is_err(), "vet: the submitter confirmed their own entry");
        for id in &self.ids {
            a.ops().confirm(&analyst(1), id)?;
        }
        let still = a.head(set).0;
        ensure!(still == 0, "vet: one confirmation put entries in the log");
        let (b_changes, p_changes) = (b.db.changes(), p.db.changes());
        let published = Instant::now();
        for id in &self.ids {
            ensure!(
                matches!(
                    a.ops().confirm(&analyst(2), id)?,
                    ConfirmOutcome::Vetted(..)
                ),
                "vet: entry {id} not vetted after two confirmations"
            );
        }
        let write = published.elapsed();
        let all_matchable = |db: &Database| self.signals.iter().all(|s| matchable(db, set, s));
        let (on_b, on_p) = tokio::join!(
            until(&b.db, b_changes, published, all_matchable),
            until(&p.db, p_changes, published, all_matchable),
        );
        let (seq, digest) = a.head(set);
        let first = self.ids[0];
        let reviewers = reviewers(a, &first)?;
        ensure!(
            reviewers.len() >= 2,
            "vet: entry {first} carries {} distinct reviewers",
            reviewers.len()
        );
        step(
            "vet",
            format_args!(
                "analyst-0 may not confirm their own entry (refused); with analyst-1 alone \
                 nothing enters the log; with {}, all {} enter it, signed, head seq {seq} ({})",
                reviewers.join(" and "),
                self.signals.len(),
                ms(write)
            ),
        );
        Ok(Vetted {
            seq,
            digest,
            reviewers,
            on_b,
            on_p,
        })
    }

    /// Sync: every entry matchable on hotline-b and, relayed, on the
    /// provider, with the latencies the vet step measured.
    fn sync(&self, vetted: &Vetted) -> anyhow::Result<()> {
        let on_b = vetted.on_b.ok_or_else(|| {
            anyhow!(
                "sync: hotline-b did not get the entries within {WAIT:?} ({})",
                self.b.fed().sync_status("hotline-a")
            )
        })?;
        let on_p = vetted.on_p.ok_or_else(|| {
            anyhow!(
                "sync: the provider did not get the entries within {WAIT:?} ({})",
                self.p.fed().sync_status("hotline-b")
            )
        })?;
        let n = self.signals.len();
        step(
            "sync",
            format_args!(
                "hotline-a → hotline-b: all {n} matchable after {}",
                ms(on_b)
            ),
        );
        step(
            "sync",
            format_args!(
                "hotline-a → hotline-b → provider: all {n} matchable after {} \
                 (relayed; hotline-a's signature checked on arrival)",
                ms(on_p)
            ),
        );
        Ok(())
    }

    /// Sync, checked: byte for byte the origin's log downstream (equal
    /// heads), and the provider's copy carries the origin's confirmations.
    async fn sync_equal(&self, vetted: Vetted) -> anyhow::Result<()> {
        let (a, b, p, set) = (self.a, self.b, self.p, &self.set);
        let head = (vetted.seq, vetted.digest);
        self.heads_reach(&head).await.ok_or_else(|| {
            anyhow!(
                "sync: heads differ: hotline-a {:?}, hotline-b {:?}, provider {:?}",
                a.head(set),
                b.head(set),
                p.head(set)
            )
        })?;
        step(
            "sync",
            format_args!(
                "head seq {}, digest {} on hotline-a, hotline-b and provider: equal",
                head.0,
                short(&head.1, 12)
            ),
        );
        ensure!(
            reviewers(p, &self.ids[0])? == vetted.reviewers,
            "sync: the provider's copy lost the vetting"
        );
        step(
            "sync",
            format_args!(
                "the provider's copy carries the same confirmations ({})",
                vetted.reviewers.join(", ")
            ),
        );
        Ok(())
    }

    /// Polls until hotline-b and the provider both hold `head` of the set
    /// (the origin's); the time taken, or `None` after [`WAIT`].
    async fn heads_reach(&self, head: &(u64, String)) -> Option<Duration> {
        let (b, p, set) = (self.b, self.p, &self.set);
        poll(Instant::now(), || {
            b.head(set) == *head && p.head(set) == b.head(set)
        })
        .await
    }

    /// Match: the upload pipeline sends the edited copy of #1 over mTLS;
    /// one PDQ hit on the first entry, within the threshold. The hit, which
    /// the feedback step reports on.
    async fn match_edited(&self, client: &mut MatchClient<Channel>) -> anyhow::Result<proto::Hit> {
        let edited = &self.images.edited;
        let (answer, took) = match_image(client, edited).await?;
        let [hit] = &answer.hits[..] else {
            bail!(
                "match: the edited copy gave {} hits, expected 1 ({})",
                answer.hits.len(),
                answer.pdq_skipped
            );
        };
        ensure!(
            hit.set == SET
                && hit.origin == "hotline-a"
                && hit.entry_id == self.ids[0].to_string()
                && type_name(hit.r#type) == "PDQ"
                && hit.distance <= DEFAULT_MATCH_THRESHOLD,
            "match: unexpected hit {hit:?}"
        );
        step(
            "match",
            format_args!(
                "provider ← upload pipeline (mTLS, local-service certificate): MatchImage(edited \
                 copy of #1, {} KB) → hit, PDQ distance {} ≤ {DEFAULT_MATCH_THRESHOLD}, set {}, \
                 origin {}, label {}, in {}",
                edited.len() / 1024,
                hit.distance,
                hit.set,
                hit.origin,
                hit.labels.join(","),
                ms(took)
            ),
        );
        Ok(hit.clone())
    }

    /// A byte-identical copy of #2 matches twice: its PDQ hash and, exactly,
    /// its MD5.
    async fn match_copy(&self, client: &mut MatchClient<Channel>) -> anyhow::Result<()> {
        let (copy, took) = match_image(client, &self.images.stand_ins[1].bytes).await?;
        let mut kinds: Vec<(&str, u32)> = copy
            .hits
            .iter()
            .map(|h| (type_name(h.r#type), h.distance))
            .collect();
        kinds.sort();
        ensure!(
            kinds == [("MD5", 0), ("PDQ", 0)] && copy.hits.iter().all(|h| h.set == SET),
            "match: the exact copy of #2 gave {:?}",
            copy.hits
        );
        step(
            "match",
            format_args!(
                "a byte-identical copy of #2 → 2 hits, PDQ distance 0 and MD5 exact, in {}",
                ms(took)
            ),
        );
        Ok(())
    }

    /// An unrelated picture does not match: no false positive here.
    async fn match_unrelated(&self, client: &mut MatchClient<Channel>) -> anyhow::Result<()> {
        let (other, took) = match_image(client, &self.images.unrelated).await?;
        ensure!(
            other.hits.is_empty(),
            "match: an unrelated picture matched: {:?}",
            other.hits
        );
        step(
            "match",
            format_args!("an unrelated generated picture → no match, in {}", ms(took)),
        );
        Ok(())
    }

    /// False-positive feedback on `hit`, back to the origin hop by hop; the
    /// note names the entry, never the upload or its hash.
    async fn feedback(
        &self,
        client: &mut MatchClient<Channel>,
        hit: &proto::Hit,
    ) -> anyhow::Result<()> {
        let before = self.a.ops().received_feedback()?.len();
        let sent = Instant::now();
        report_false_positive(client, &hit.match_id).await?;
        let recorded = sent.elapsed();
        let (acked, arrived) = self.feedback_hops(sent, before).await?;
        let note = self.note_at_origin(&hit.entry_id)?;
        step(
            "feedback",
            format_args!(
                "provider ← upload pipeline: Feedback(match {}, FALSE_POSITIVE, \
                 BENIGN_COLLISION), recorded in {}",
                short(&hit.match_id, 8),
                ms(recorded)
            ),
        );
        step(
            "feedback",
            format_args!(
                "provider → hotline-b: note (entry {}, verdict, reason; signed by the provider) \
                 acknowledged after {}",
                short(&note.entry_id, 8),
                ms(acked)
            ),
        );
        step(
            "feedback",
            format_args!(
                "hotline-b → hotline-a: at the origin after {}, via {}, verdict {}, reason {}; \
                 neither the upload nor its hash travels",
                ms(arrived),
                note.via,
                note.verdict,
                note.reason
            ),
        );
        Ok(())
    }

    /// Times the feedback's two hops from `sent`: hop one ends when
    /// hotline-b has acknowledged the note (the provider's outbox is empty
    /// again), hop two when hotline-a holds more than `before` notes.
    async fn feedback_hops(
        &self,
        sent: Instant,
        before: usize,
    ) -> anyhow::Result<(Duration, Duration)> {
        let (origin, p) = (self.a.ops(), self.p);
        let mut acked = None;
        let arrived = poll(sent, || {
            if acked.is_none() && p.db.store().outbox(1).is_ok_and(|o| o.is_empty()) {
                acked = Some(sent.elapsed());
            }
            origin.received_feedback().is_ok_and(|r| r.len() > before)
        })
        .await
        .ok_or_else(|| anyhow!("feedback: did not reach hotline-a within {WAIT:?}"))?;
        Ok((acked.unwrap_or(arrived), arrived))
    }

    /// The note hotline-a received on `entry_id`, checked: the provider's
    /// false positive, relayed by hotline-b.
    fn note_at_origin(&self, entry_id: &str) -> anyhow::Result<proto::ReceivedFeedback> {
        let items: Vec<_> = self
            .a
            .ops()
            .received_feedback()?
            .into_iter()
            .map(hashfed::wire::received_feedback)
            .collect();
        let note = items
            .iter()
            .find(|f| f.entry_id == entry_id)
            .ok_or_else(|| {
                anyhow!("feedback: hotline-a got feedback on another entry: {items:?}")
            })?;
        ensure!(
            note.verdict.parse::<Verdict>() == Ok(Verdict::FalsePositive)
                && note.reason == "benign_collision"
                && note.via == "hotline-b"
                && note.reporter_node_id == self.p.node_id()
                && note.set == SET,
            "feedback: unexpected note at hotline-a: {note:?}"
        );
        Ok(note.clone())
    }

    /// Retraction: hotline-a withdraws the first entry; it stops matching
    /// there at once, and downstream as the retraction syncs.
    async fn retract(&self) -> anyhow::Result<()> {
        let (a, b, p, set) = (self.a, self.b, self.p, &self.set);
        let pdq = &self.images.stand_ins[0].pdq;
        let (b_changes, p_changes) = (b.db.changes(), p.db.changes());
        let retracted = Instant::now();
        let retract_id = EntryId::derive(set, pdq);
        let (_, changed) = a.ops().retract(
            &operator(),
            &retract_id,
            "false positive reported by a provider (benign collision)",
        )?;
        ensure!(changed, "retract: the entry was not withdrawn");
        ensure!(
            !matchable(&a.db, set, pdq),
            "retract: still matchable on hotline-a"
        );
        let gone = |db: &Database| !matchable(db, set, pdq);
        let (off_b, off_p) = tokio::join!(
            until(&b.db, b_changes, retracted, gone),
            until(&p.db, p_changes, retracted, gone),
        );
        let off_b =
            off_b.ok_or_else(|| anyhow!("retract: hotline-b still matches after {WAIT:?}"))?;
        let off_p =
            off_p.ok_or_else(|| anyhow!("retract: the provider still matches after {WAIT:?}"))?;
        step(
            "retract",
            format_args!(
                "hotline-a retracts entry {}: hotline-b stops matching it after {}, \
                 the provider after {}",
                short(&self.ids[0].to_string(), 8),
                ms(off_b),
                ms(off_p)
            ),
        );
        Ok(())
    }

    /// No match: the edited copy that matched before no longer does.
    async fn no_match(&self, client: &mut MatchClient<Channel>) -> anyhow::Result<()> {
        let (answer, took) = match_image(client, &self.images.edited).await?;
        ensure!(
            answer.hits.is_empty(),
            "no match: the edited copy still matched after the retraction: {:?}",
            answer.hits
        );
        step(
            "no match",
            format_args!(
                "provider: MatchImage(edited copy of #1) → no match, in {}",
                ms(took)
            ),
        );
        Ok(())
    }

    /// Keys over time: hotline-a rotates its signing key and renews its
    /// certificates while serving; what the new key signs verifies
    /// downstream, the provider learning the key through hotline-b.
    async fn rotate(&self) -> anyhow::Result<()> {
        let rotated = self
            .a
            .ops()
            .rotate_keys(&operator(), true, true)
            .context("rotate")?;
        let took = self.publish_after_rotation().await?;
        let learnt = self
            .p
            .fed()
            .peers()
            .get("hotline-a")
            .map_or(0, |peer| peer.card.rotations.len());
        ensure!(
            learnt == 1,
            "rotate: the provider knows {learnt} rotations of hotline-a"
        );
        step(
            "rotate",
            format_args!(
                "hotline-a: signing key {} {} (announced by a statement key 0 signed), \
                 certificates renewed ({}), node id unchanged, nothing restarted",
                rotated.key_number,
                short(&rotated.signing_key, 8),
                rotated.certificates.join(", ")
            ),
        );
        step(
            "rotate",
            format_args!(
                "a new entry signed by the new key: matchable on the provider after {}, which \
                 learnt the key through hotline-b; earlier records still verify",
                ms(took)
            ),
        );
        Ok(())
    }

    /// Publishes and vets one more entry, which the new key signs; the time
    /// from the vetting write until the provider can match it.
    async fn publish_after_rotation(&self) -> anyhow::Result<Duration> {
        let (a, p, set) = (self.a, self.p, &self.set);
        let extra = Signal::from_bytes(
            SignalType::Pdq,
            blake3::hash(b"hashfed demo: an entry after the rotation")
                .as_bytes()
                .to_vec(),
        )?;
        let id = a.ops().submit(&analyst(0), set, entry(&extra))?.id;
        a.ops().confirm(&analyst(1), &id)?;
        let p_changes = p.db.changes();
        let signed_new = Instant::now();
        a.ops().confirm(&analyst(2), &id)?;
        until(&p.db, p_changes, signed_new, |db| {
            matchable(db, set, &extra)
        })
        .await
        .ok_or_else(|| anyhow!("rotate: the provider never got the entry signed by the new key"))
    }

    /// Everyone agrees: equal heads, the provider's set-by-set comparison
    /// with its upstream, and every store consistent.
    async fn verify(&self) -> anyhow::Result<()> {
        let head = self.a.head(&self.set);
        self.heads_reach(&head)
            .await
            .ok_or_else(|| anyhow!("verify: heads differ after the retraction"))?;
        let report = self.p.ops().verify_sets().await?;
        ensure!(
            !report.is_empty() && report.iter().all(|c| c.verdict == "equal"),
            "verify: {:?}",
            report
        );
        for c in &report {
            step(
                "verify",
                format_args!(
                    "provider vs {}: {} {} (seq {} = {})",
                    c.peer, c.set, c.verdict, c.local_seq, c.peer_seq
                ),
            );
        }
        for n in [self.a, self.b, self.p] {
            let report = n.db.store().verify()?;
            ensure!(
                report.problems.is_empty(),
                "verify: {}'s store: {:?}",
                n.name,
                report.problems
            );
        }
        step(
            "verify",
            format_args!(
                "all three stores verify clean (logs, chains, keys, slots); head seq {} \
                 everywhere",
                head.0
            ),
        );
        Ok(())
    }
}

/// One of a node's peers and its grants, as the peers step lists them.
fn peer_grants(peer: &Peer) -> String {
    let grants = match (peer.send.is_empty(), peer.accept.is_empty()) {
        (true, true) => "card only: checks its signatures".to_owned(),
        (false, true) => format!("sends {}", peer.send.join(", ")),
        (true, false) => format!("accepts {}", peer.accept.join(", ")),
        (false, false) => format!(
            "sends {}, accepts {}",
            peer.send.join(", "),
            peer.accept.join(", ")
        ),
    };
    format!("{} ({grants})", peer.name())
}

/// An entry for `signal` with the demo's label, submitted without vetting
/// (the analysts confirm it afterwards).
fn entry(signal: &Signal) -> EntryData {
    EntryData {
        signal: signal.clone(),
        labels: vec!["A1".into()],
        external_id: None,
        vetting: Vec::new(),
    }
}

/// The distinct reviewers who confirmed entry `id` on node `n`, sorted.
fn reviewers(n: &DemoNode, id: &EntryId) -> anyhow::Result<Vec<String>> {
    let entry =
        n.db.store()
            .entry(id)?
            .ok_or_else(|| anyhow!("{}: entry {id} missing", n.name))?;
    let mut who: Vec<String> = entry
        .data
        .vetting
        .iter()
        .map(|v| v.reviewer.clone())
        .collect();
    who.sort();
    who.dedup();
    Ok(who)
}

/// The upload pipeline's verdict on match `match_id`: a false positive, a
/// benign collision.
async fn report_false_positive(
    client: &mut MatchClient<Channel>,
    match_id: &str,
) -> anyhow::Result<()> {
    report(
        client,
        match_id,
        proto::Verdict::FalsePositive,
        proto::FeedbackReason::BenignCollision,
    )
    .await
}

/// The upload pipeline's verdict on match `match_id`.
async fn report(
    client: &mut MatchClient<Channel>,
    match_id: &str,
    verdict: proto::Verdict,
    reason: proto::FeedbackReason,
) -> anyhow::Result<()> {
    client
        .feedback(proto::FeedbackRequest {
            match_id: match_id.to_owned(),
            verdict: verdict as i32,
            reason: reason as i32,
        })
        .await
        .map_err(|s| anyhow!("Feedback: {}", s.message()))?;
    Ok(())
}

/// The demo's operator at the admin socket, as the audit log names them.
fn operator() -> Actor {
    Actor::new("local-socket")
}

/// One of hotline-a's analysts (the demo's stand-in for their operator
/// certificates).
fn analyst(n: u32) -> Actor {
    Actor::new(format!("analyst-{n}"))
}
