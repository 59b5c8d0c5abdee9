//! A real node keeping a set current from an exchange's stand-in, and
//! sending a provider's verdict back: the "must show" for every
//! service, in one copy. Each service's file gives its stand-in as a
//! [`Service`] (what is live there, how its list changes, what feedback
//! it received) and calls [`keeps_current`].
//!
//! The node is the real one (`crate::nodes::TestNode`, its sled store in a
//! temp dir): the exchange is in its `hashfed.toml`, the credentials in an
//! owner-only file beside it, and everything else (the schedule, the
//! client, the outbox) is the node's own, over real HTTPS to the stand-in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashfed::config::ExchangeConfig;
use hashfed::database::Database;
use hashfed::model::{SetId, Signal};

use crate::nodes::{self, eventually, TestNode};

/// What a set holds of an exchange: external id → its (signal type, hex
/// value)s, in the node's own spelling ([`normal`]), so the node's store
/// and a stand-in's live entries compare as they are.
pub type Model = BTreeMap<String, BTreeSet<(String, String)>>;

/// A stand-in's `(type, value)` as the node stores it: the type's
/// canonical name (`pdna` is `photodna`, `video_md5` is `md5`) and the
/// value in lower-case hex (an opaque value given in base64 too).
pub fn normal(type_name: &str, text: &str) -> (String, String) {
    let signal = Signal::parse(type_name, text)
        .unwrap_or_else(|e| panic!("the stand-in's {type_name} value {text:?}: {e}"));
    (signal.kind().name().to_owned(), signal.value_hex())
}

/// A stand-in as the node-level test drives it.
pub trait Service {
    /// Its live entries, [`normal`]ised.
    fn live(&self) -> Model;
    /// Changes its list as the service's would between two fetches: new
    /// entries, changed ones and deletions.
    fn churn(&self);
    /// Verdicts it received (for a service that takes none: requests it
    /// got that were neither a login nor its list).
    fn feedback_received(&self) -> usize;
    /// Whether its client sends verdicts at all.
    fn takes_feedback(&self) -> bool {
        true
    }
    /// Checks that the one verdict received says "false positive, benign
    /// collision" on `external_id`'s PDQ `pdq` (hex), in the service's
    /// words.
    fn check_feedback(&self, external_id: &str, pdq: &str);
}

/// How the node is to reach the stand-in.
pub struct Setup<'a> {
    /// The exchange, as the service's file configures it for its client
    /// tests: its set's origin names the node, its `credentials` the
    /// file written for it.
    pub config: ExchangeConfig,
    /// The stand-in's CA.
    pub ca_file: &'a Path,
    /// The credentials file's text.
    pub credentials: String,
    /// What must never show in `hashfed exchange status`.
    pub secrets: &'a [&'a str],
}

/// A real node with `setup`'s exchange in its `hashfed.toml` fetches the
/// stand-in's list (its schedule, every second) until its set equals the
/// stand-in's live entries, follows a [`Service::churn`] to equality
/// again, answers `hashfed exchange fetch|status` (no error, no secret),
/// sends a provider's false positive on a PDQ entry of the exchange to
/// the service once (or, for a service that takes none, drops it from the
/// outbox with an audited reason and sends nothing), also across a
/// restart, and leaves a store `hashfed verify` finds clean. Prints how
/// long each step took.
pub async fn keeps_current(service: &impl Service, setup: Setup<'_>) {
    use std::os::unix::fs::PermissionsExt;

    let started = Instant::now();
    let mut exchange = setup.config;
    let set: SetId = exchange.set.parse().unwrap();
    let name = exchange.name.clone();
    let (node_tmp, dir) = nodes::node_dir(set.origin());
    let creds = dir.join(&exchange.credentials);
    std::fs::write(&creds, &setup.credentials).unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    exchange.ca_file = Some(setup.ca_file.to_str().unwrap().to_owned());
    exchange.interval_secs = 1;
    // A loaded CI machine may answer slowly; timeouts have their own
    // tests in each service's file.
    exchange.timeout_secs = 20;
    let mut node_config = hashfed::identity::load_config(&dir).unwrap();
    node_config.exchanges.push(exchange.clone());
    std::fs::write(
        dir.join("hashfed.toml"),
        toml::to_string(&node_config).unwrap(),
    )
    .unwrap();

    let node = TestNode::start_in(node_tmp, dir.clone()).await;
    let want = service.live();
    converge(&node, &set, &name, &want, "the initial fetch").await;
    let initial = started.elapsed();
    let first = format!("{} records ({} hashes)", want.len(), hashes(&want));
    let metrics = node.node().metrics().render();
    assert!(
        metrics.contains(&format!(
            "hashfed_exchange_pages_total{{exchange=\"{name}\"}}"
        )),
        "{metrics}"
    );

    let churned = Instant::now();
    service.churn();
    let want = service.live();
    converge(&node, &set, &name, &want, "the changes").await;
    let followed = churned.elapsed();

    // An operator's fetch (it waits for the schedule's, if one runs) and
    // the status, through the running node.
    let fetched = cli(&["exchange", "fetch", &name], &dir).await;
    assert!(
        fetched.status.success(),
        "{}",
        String::from_utf8_lossy(&fetched.stderr)
    );
    healthy(&dir, &exchange, setup.secrets).await;

    // A provider calls a match of one of the exchange's PDQ entries a
    // false positive.
    let (id, pdq) = want
        .iter()
        .find_map(|(id, values)| {
            values
                .iter()
                .find(|(t, _)| t == "pdq")
                .map(|(_, v)| (id.clone(), v.clone()))
        })
        .expect("the stand-in has PDQ entries");
    let code: [u8; 32] = hashfed::model::signal::decode_hex(&pdq)
        .unwrap()
        .try_into()
        .unwrap();
    let hit = nodes::match_and_give_feedback(
        &node,
        code,
        hashfed::wire::proto::Verdict::FalsePositive,
        hashfed::wire::proto::FeedbackReason::BenignCollision,
    )
    .await;
    assert_eq!(hit.external_id, id);
    let outbox_empty = |db: &Database| db.store().exchange_outbox(&set, 1).unwrap().is_empty();
    if service.takes_feedback() {
        eventually(Duration::from_secs(20), || service.feedback_received() > 0)
            .await
            .expect("the verdict never reached the service");
    } else {
        // The client cannot send it: it leaves the outbox (nothing waits
        // forever), and the audit log says why.
        eventually(Duration::from_secs(20), || outbox_empty(&node.db))
            .await
            .expect("a verdict the service cannot take stays in the outbox");
        let refusal = format!("on {id} refused by the service");
        let audit = node.db.store().audit_events(0, usize::MAX).unwrap();
        assert!(
            audit.iter().any(|e| {
                e.action == hashfed::model::audit::Action::ExchangeFeedbackSent
                    && e.detail.contains(&refusal)
            }),
            "no audit record of the dropped verdict"
        );
    }

    // Once, also across a restart of the node (its feedback sender looks
    // every 2 s).
    let (node_tmp, dir) = node.close().await;
    let node = TestNode::start_in(node_tmp, dir.clone()).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let state = node.node().ops().exchange_state(&name).unwrap();
    if service.takes_feedback() {
        assert_eq!(
            service.feedback_received(),
            1,
            "the verdict was sent more than once"
        );
        service.check_feedback(&id, &pdq);
        assert_eq!(state.feedback_sent, 1, "{state:?}");
    } else {
        assert_eq!(service.feedback_received(), 0, "something was sent");
        assert_eq!(state.feedback_sent, 0, "{state:?}");
    }
    assert!(outbox_empty(&node.db));
    healthy(&dir, &exchange, setup.secrets).await;

    let (_node_tmp, dir) = node.close().await;
    let verify = cli(&["verify"], &dir).await;
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    eprintln!(
        "{name}: {first} in {initial:?}; the changes, to {} records ({} hashes), in \
         {followed:?}; {:?} in all",
        want.len(),
        hashes(&want),
        started.elapsed()
    );
}

fn hashes(model: &Model) -> usize {
    model.values().map(BTreeSet::len).sum()
}

/// The most a convergence may take (100k entries on a loaded 2-core
/// machine, in the debug profile).
const CONVERGE_WITHIN: Duration = Duration::from_secs(240);

/// Waits until the node's set of exchange `name` equals `want`, or fails
/// saying how far apart they are. The set is read (a scan of the store)
/// only after a pass that caught up, once per pass.
async fn converge(node: &TestNode, set: &SetId, name: &str, want: &Model, what: &str) {
    let started = Instant::now();
    let mut scanned = 0;
    let have = loop {
        let caught_up = node.node().ops().exchange_state(name).unwrap().caught_up_ms;
        let done = started.elapsed() > CONVERGE_WITHIN;
        if caught_up > scanned || done {
            scanned = caught_up;
            let have = node_model(&node.db, set).await;
            if have == *want || done {
                break have;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if have == *want {
        return;
    }
    let missing: Vec<_> = want.keys().filter(|k| !have.contains_key(*k)).collect();
    let extra: Vec<_> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    let differ: Vec<_> = want
        .iter()
        .filter_map(|(k, v)| have.get(k).filter(|h| *h != v).map(|h| (k, v, h)))
        .collect();
    panic!(
        "the node never caught up with {what} in {CONVERGE_WITHIN:?}: it holds {} entries, \
         the service {}; {} missing (first {:?}), {} extra (first {:?}), {} differ \
         (first, wanted and held: {:?}); exchange state {:?}",
        have.len(),
        want.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>(),
        differ.len(),
        differ.iter().take(3).collect::<Vec<_>>(),
        node.node().ops().exchange_state(name)
    );
}

/// The node's view of `set`: its live entries by external id ("" for
/// entries without one, which an exchange never writes).
async fn node_model(db: &Arc<Database>, set: &SetId) -> Model {
    let (db, set) = (db.clone(), set.clone());
    tokio::task::spawn_blocking(move || {
        let mut model = Model::new();
        let Ok(entries) = db.store().entries(Some(&set)) else {
            return model;
        };
        for e in entries.map(Result::unwrap).filter(|e| !e.retracted) {
            model
                .entry(e.data.external_id.clone().unwrap_or_default())
                .or_default()
                .insert((
                    e.data.signal.kind().name().to_owned(),
                    e.data.signal.value_hex(),
                ));
        }
        model
    })
    .await
    .unwrap()
}

/// `hashfed exchange status` on the node in `dir` says `exchange` is
/// well: no error, and none of `secrets`.
async fn healthy(dir: &Path, exchange: &ExchangeConfig, secrets: &[&str]) {
    let status = cli(&["exchange", "status"], dir).await;
    let text = String::from_utf8_lossy(&status.stdout).into_owned();
    assert_eq!(status.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "exchange {} ({})",
            exchange.name,
            exchange.kind.name()
        )),
        "{text}"
    );
    assert!(text.contains("last error    none"), "{text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{text}");
    }
}

/// The `hashfed` binary with `args` and `--dir dir`.
async fn cli(args: &[&str], dir: &Path) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"));
    command.args(args).arg("--dir").arg(dir);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}
