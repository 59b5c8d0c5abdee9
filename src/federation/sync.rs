//! Pulling sets from one peer: subscribe to its manifest, and whenever a
//! set we accept has a head beyond ours, pull the records after our head,
//! verify them against the origin's signed checkpoints and apply them.
//!
//! The set's head in our store is the cursor: records and head land in one
//! batch, so a restart (even after SIGKILL) asks for exactly the records it
//! lacks. Nothing is applied before the checkpoint that covers it has been
//! verified with the origin's key; a chunk that fails is logged, nothing of
//! it is kept, and the session starts over after a pause.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::Federation;
use crate::error::Chain;
use crate::model::keychain::KeyChain;
use crate::model::signed::{verify_checkpoint_in, SignedInfo, CHECKPOINT_EVERY};
use crate::model::{SetId, ShareRefusal};
use crate::peers::{Peer, SyncState};
use crate::wire::federation::checkpoint_from;
use crate::wire::proto;
use crate::wire::proto::federation_client::FederationClient;
use crate::wire::MAX_MESSAGE_BYTES;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// First pause after a failed session, and the pause after one that
/// applied records.
const MIN_BACKOFF: Duration = Duration::from_millis(250);

/// Most records held unverified (a relay cannot make us buffer without
/// bound by never sending a checkpoint).
const MAX_UNVERIFIED: usize = 2 * CHECKPOINT_EVERY as usize;

/// Most bytes of records held unverified (records can be large: a relay
/// sending few but huge records must not make us hold gigabytes either).
const MAX_UNVERIFIED_BYTES: usize = 64 << 20;

/// Why a sync session (or a feedback delivery) ended. Causes are kept as
/// sources: show it with [`crate::error::Chain`] or `{:#}`.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The peer's card does not make an endpoint, or our client
    /// certificate toward peers is missing.
    #[error("connecting")]
    Endpoint(#[source] crate::identity::IdentityError),
    /// Could not reach the peer.
    #[error("connecting")]
    Connect(#[source] tonic::transport::Error),
    /// A call failed.
    #[error(transparent)]
    Rpc(#[from] tonic::Status),
    /// What the peer sent does not hold up.
    #[error("refused from {set}: {reason}")]
    Refused {
        /// The set.
        set: String,
        /// Why.
        reason: String,
    },
    /// Our own store failed.
    #[error("store")]
    Store(#[from] crate::store::StoreError),
    /// The store work's task failed (it panicked).
    #[error("store")]
    Task(#[from] tokio::task::JoinError),
}

/// A client for `peer`'s federation service.
pub async fn connect(
    fed: &Federation,
    peer: &Peer,
) -> Result<FederationClient<Channel>, SyncError> {
    let endpoint = crate::identity::client::peer_endpoint(
        &fed.dir,
        &peer.card.endpoint,
        &peer.card.node_id,
        &peer.card.ca,
    )
    .map_err(SyncError::Endpoint)?;
    let channel = endpoint.connect().await.map_err(SyncError::Connect)?;
    Ok(FederationClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Syncs from `peer` until `stop` is cancelled, reconnecting with backoff.
/// Runs as one of the federation's tasks (store work included), so it
/// also ends, at the latest, when the node stops.
pub async fn run(fed: Arc<Federation>, peer: Peer, stop: CancellationToken) {
    let name = peer.name().to_owned();
    let mut backoff = MIN_BACKOFF;
    loop {
        let mut applied = 0u64;
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = session(&fed, &peer, &mut applied) => outcome,
        };
        // A session that moved us on was worth having: a link that breaks
        // now and then (but carries records each time) is retried at once,
        // not after a pause that kept doubling over the day.
        if applied > 0 {
            backoff = MIN_BACKOFF;
        }
        match outcome {
            Ok(()) => {
                fed.set_sync_status(&name, SyncState::Disconnected);
                tracing::info!(peer = %name, "subscription ended; reconnecting");
            }
            Err(e) => {
                fed.set_sync_status(&name, SyncState::failed(&e));
                tracing::warn!(peer = %name, error = %Chain(&e), "sync with peer failed");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: subscribe, then follow the manifest. Counts the records
/// applied in `applied`, whatever the outcome.
async fn session(fed: &Federation, peer: &Peer, applied: &mut u64) -> Result<(), SyncError> {
    let mut client = connect(fed, peer).await?;
    let mut manifests = client
        .subscribe(proto::ManifestRequest {})
        .await?
        .into_inner();
    fed.set_sync_status(peer.name(), SyncState::Connected);
    tracing::info!(peer = %peer.name(), "subscribed");
    // The peer sends a manifest when its sets change; our registry can
    // change meanwhile (an origin's card added, a key learnt), which may
    // make a set we ignored verifiable: then the last manifest is looked
    // at again.
    let mut registry = fed.peers.changes();
    let mut last: Option<proto::ManifestResponse> = None;
    loop {
        tokio::select! {
            manifest = manifests.message() => match manifest? {
                Some(manifest) => last = Some(manifest),
                None => return Ok(()),
            },
            changed = registry.changed() => if changed.is_err() { return Ok(()) },
        }
        // Grants changed or the peer was cut off: the federation restarts
        // this task with the registry's view; nothing is done on a stale one.
        if !fed
            .peers
            .get(peer.name())
            .is_some_and(|p| p.same_but_keys(peer))
        {
            return Ok(());
        }
        let Some(manifest) = &last else { continue };
        learn_keys(fed, peer, &manifest.keys);
        for head in manifest.sets.clone() {
            sync_set(fed, peer, &mut client, head, applied).await?;
        }
        fed.set_sync_status(peer.name(), SyncState::Connected);
    }
}

/// Most key histories read from one manifest (ours, its own, and one per
/// origin it relays: a manifest with more is not honest).
const MAX_HISTORIES: usize = 1024;

/// Learns the key rotations a manifest or a feedback batch carries (the
/// peer's own, and those of the nodes it relays for), before checking
/// anything those keys signed. A history that does not verify, or forks
/// what we know, is refused and logged; the caller goes on with the keys
/// we have.
pub(super) fn learn_keys(fed: &Federation, peer: &Peer, histories: &[proto::KeyHistory]) {
    for wire in histories.iter().take(MAX_HISTORIES) {
        let history = crate::wire::federation::key_history_from(wire);
        let actor = format!("peer:{}", peer.name());
        let detail = format!(
            "key {} of node {}, learnt via {}",
            history.rotations.len(),
            history.node_id,
            peer.name()
        );
        let journal = |origin: &str, digest| {
            let note = crate::model::audit::Note::new(
                actor,
                crate::model::audit::Action::PeerKeyRotated,
                origin,
                detail,
            );
            fed.journal_peers(digest, vec![note])
        };
        match fed.peers.learn_keys(&history, journal) {
            Ok(None) => {}
            Ok(Some(origin)) => {
                tracing::info!(peer = %peer.name(), origin = %origin, keys = history.rotations.len() + 1, "learnt a key rotation");
            }
            Err(e) => {
                // A fork or a forged rotation: someone holds an old key,
                // or lies about it. Operators must hear of it: a metric
                // by peer, and `hashfed status` warns.
                fed.metrics.key_history_refused(peer.name());
                tracing::warn!(peer = %peer.name(), error = %e, "key history refused");
            }
        }
    }
}

/// Brings one set up to the head the peer announced, if we take it,
/// counting the records applied in `applied`.
async fn sync_set(
    fed: &Federation,
    peer: &Peer,
    client: &mut FederationClient<Channel>,
    head: proto::SetHead,
    applied: &mut u64,
) -> Result<(), SyncError> {
    let Ok(set) = head.set.parse::<SetId>() else {
        tracing::warn!(peer = %peer.name(), "manifest names a malformed set id; ignored");
        return Ok(());
    };
    if !peer.accepts(&set) || set.origin() == fed.config.name {
        return Ok(());
    }
    let refused = |reason: String| {
        fed.metrics.records_refused();
        SyncError::Refused {
            set: set.to_string(),
            reason,
        }
    };
    let Some(keys) = fed.peers.origin_keys(set.origin()) else {
        tracing::debug!(peer = %peer.name(), set = %set, "origin unknown here (no active card); set ignored");
        return Ok(());
    };
    let wire = head
        .info
        .ok_or_else(|| refused("no signed configuration".into()))?;
    let signed = SignedInfo {
        json: wire.json,
        version: wire.version,
        signature: wire.signature,
    };
    let info = signed.verify_in(&keys, &set).map_err(|e| {
        tracing::warn!(peer = %peer.name(), set = %set, error = %e, "set configuration refused");
        refused(format!("configuration: {e}"))
    })?;
    if info.id != set {
        return Err(refused("configuration is for another set".into()));
    }
    // The origin's policy binds relays; we check it too, so a relay that
    // ignores it gains nothing.
    match info
        .policy
        .allows(peer.card.name == set.origin(), &fed.config.node_id)
    {
        Ok(()) => {}
        Err(ShareRefusal::NoReshare) => {
            tracing::warn!(peer = %peer.name(), set = %set, "relay offered a set its origin does not allow re-sharing");
            return Err(refused(format!(
                "{} does not allow re-sharing, yet {} offered it",
                set.origin(),
                peer.name()
            )));
        }
        Err(ShareRefusal::NotListed) => {
            return Err(refused(
                "the origin's policy does not list this node".into(),
            ));
        }
    }
    let store = fed.db.store();
    let local = match store.set(&set) {
        Some(local) if local.upstream.is_none() => {
            tracing::warn!(peer = %peer.name(), set = %set, "a set of the same id was written here; not syncing it");
            return Ok(());
        }
        Some(local)
            if local
                .signed_info
                .as_ref()
                .is_some_and(|s| s.version >= signed.version) =>
        {
            local
        }
        _ => {
            let (db, name) = (fed.db.clone(), peer.name().to_owned());
            fed.tasks
                .spawn_blocking(move || db.receive_set(info, signed, &name))
                .await??
        }
    };
    if head.head_seq > local.head_seq {
        pull(fed, peer, client, &set, &keys, local.head_seq, applied).await?;
    } else if head.head_seq == local.head_seq && head.head_digest != local.digest() {
        tracing::warn!(peer = %peer.name(), set = %set, seq = local.head_seq, "peer's log differs from ours at the same head");
    }
    Ok(())
}

/// Pulls `set` after `after_seq` and applies it checkpoint by checkpoint,
/// counting the records applied in `applied_records`.
async fn pull(
    fed: &Federation,
    peer: &Peer,
    client: &mut FederationClient<Channel>,
    set: &SetId,
    keys: &KeyChain,
    after_seq: u64,
    applied_records: &mut u64,
) -> Result<(), SyncError> {
    let mut stream = client
        .pull(proto::PullRequest {
            set: set.to_string(),
            after_seq,
        })
        .await?
        .into_inner();
    let refused = |reason: String| {
        fed.metrics.records_refused();
        tracing::warn!(peer = %peer.name(), set = %set, reason = %reason, "records refused");
        SyncError::Refused {
            set: set.to_string(),
            reason,
        }
    };
    let mut expected = after_seq + 1;
    let mut applied_through = after_seq;
    let mut buffer: Vec<Vec<u8>> = Vec::new();
    let mut buffered_bytes = 0usize;
    while let Some(chunk) = stream.message().await? {
        if chunk.first_seq != expected {
            return Err(refused(format!(
                "chunk starts at seq {} where {expected} was next",
                chunk.first_seq
            )));
        }
        expected += chunk.records.len() as u64;
        buffered_bytes += chunk.records.iter().map(Vec::len).sum::<usize>();
        buffer.extend(chunk.records);
        if buffered_bytes > MAX_UNVERIFIED_BYTES {
            return Err(refused(format!(
                "more than {MAX_UNVERIFIED_BYTES} bytes of records without a checkpoint"
            )));
        }
        if buffer.len() > MAX_UNVERIFIED {
            return Err(refused(format!(
                "more than {MAX_UNVERIFIED} records without a checkpoint"
            )));
        }
        let Some(cp) = chunk.checkpoint else { continue };
        let cp = checkpoint_from(&cp).map_err(refused)?;
        verify_checkpoint_in(keys, set, &cp)
            .map_err(|e| refused(format!("checkpoint at seq {}: {e}", cp.seq)))?;
        let records = std::mem::take(&mut buffer);
        buffered_bytes = 0;
        // Another peer offering the same set may have moved us on
        // meanwhile (records are the origin's, whoever relays them): then
        // this pull is stale, not wrong.
        if fed.db.store().set(set).map(|s| s.head_seq) != Some(applied_through) {
            tracing::debug!(peer = %peer.name(), set = %set, "set advanced by another peer; pull dropped");
            return Ok(());
        }
        let through = cp.seq;
        let (db, set_id, name) = (fed.db.clone(), set.clone(), peer.name().to_owned());
        // The peer's current setting: an operator may switch review on
        // while a sync runs.
        let hold = fed.peers.get(&name).is_some_and(|p| p.review);
        let applied = fed
            .tasks
            .spawn_blocking(move || db.apply_remote(&set_id, &records, &[cp], &name, hold))
            .await?
            .map_err(|e| match e {
                crate::store::StoreError::Rejected(reason) => refused(reason),
                other => SyncError::Store(other),
            })?;
        fed.metrics.records_received(applied.appended);
        *applied_records += applied.appended;
        applied_through = through;
    }
    Ok(())
}
