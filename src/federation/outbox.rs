//! Feedback on its way back to a set's origin, one hop at a time.
//!
//! Feedback given on this node about a received set (or passed to us by a
//! downstream peer) waits in the store's outbox until the peer we pull that
//! set from has acknowledged it; it survives restarts, and a peer that is
//! down gets it when it comes back. The next hop either keeps it (it is the
//! origin) or queues it the same way.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::sync::{connect, SyncError};
use super::Federation;
use crate::error::Chain;
use crate::wire::federation::{feedback_item, key_history};
use crate::wire::proto;

/// How often the outbox is looked at when nothing wakes it.
const PERIOD: Duration = Duration::from_secs(2);

/// Notes sent per call.
const BATCH: usize = 256;

/// Forwards the outbox until `stop` is cancelled (as one of the
/// federation's tasks, it is also dropped when the node stops).
pub async fn run(fed: Arc<Federation>, stop: CancellationToken) {
    let mut changes = fed.db.changes();
    loop {
        if let Err(e) = drain(&fed).await {
            tracing::info!(error = %Chain(&e), "feedback not forwarded yet; will retry");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            _ = changes.changed() => {}
            () = tokio::time::sleep(PERIOD) => {}
        }
    }
}

/// The key histories of the reporters of `items` that rotated: ours, and
/// those of the downstream nodes whose notes we pass on (as far as we
/// know them), so the origin can check notes signed by a newer key.
fn reporter_keys(fed: &Federation, items: &[proto::FeedbackItem]) -> Vec<proto::KeyHistory> {
    let reporters: BTreeSet<&str> = items.iter().map(|i| i.reporter_node_id.as_str()).collect();
    reporters
        .into_iter()
        .filter_map(|r| {
            if r == fed.config.node_id {
                Some(fed.key_history())
            } else {
                fed.peers.by_node_id(r).map(|p| p.card.history())
            }
        })
        .filter(|h| !h.rotations.is_empty())
        .map(|h| key_history(&h))
        .collect()
}

/// Sends what the outbox holds to each set's upstream peer.
async fn drain(fed: &Federation) -> Result<(), SyncError> {
    let store = fed.db.store();
    let items = store.outbox(BATCH)?;
    if items.is_empty() {
        return Ok(());
    }
    let mut by_peer: HashMap<String, Vec<(Vec<u8>, proto::FeedbackItem)>> = HashMap::new();
    let mut dropped = Vec::new();
    for (key, note) in items {
        match store.set(&note.set).and_then(|s| s.upstream) {
            Some(peer) => by_peer
                .entry(peer)
                .or_default()
                .push((key, feedback_item(&note))),
            // The set is gone or became local: nobody to tell.
            None => dropped.push(key),
        }
    }
    store.remove_from_outbox(&dropped)?;
    for (name, items) in by_peer {
        let Some(peer) = fed.peers.get(&name).filter(|p| p.active()) else {
            continue;
        };
        let mut client = connect(fed, &peer).await?;
        let (keys, items): (Vec<_>, Vec<_>) = items.into_iter().unzip();
        let histories = reporter_keys(fed, &items);
        let ack = client
            .send_feedback(proto::FeedbackBatch {
                items,
                keys: histories,
            })
            .await?
            .into_inner();
        for why in &ack.refused {
            tracing::warn!(peer = %name, reason = %why, "peer refused forwarded feedback");
        }
        // Accepted or refused for good: either way it has been answered.
        store.remove_from_outbox(&keys)?;
        fed.metrics.feedback_forwarded(u64::from(ack.accepted));
        tracing::info!(peer = %name, accepted = ack.accepted, "feedback forwarded toward origin");
    }
    Ok(())
}
