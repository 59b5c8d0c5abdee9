//! The federation service: what peers call. Every call starts by naming
//! the caller (the active peer whose CA verified its certificate during the
//! TLS handshake) and checks the set policy for every set it touches.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Federation;
use crate::identity::peers::{PeerConnectInfo, PeerIdentity};

use crate::model::{EntryId, SetId};
use crate::peers::Peer;
use crate::store::{ReceivedFeedback, SetState};
use crate::wire::federation::{checkpoint, feedback_note, head, key_history};
use crate::wire::proto;
use crate::wire::proto::federation_server::Federation as FederationRpc;

/// Records per pull chunk (a chunk of PDQ records is about 100 KiB).
const CHUNK_RECORDS: usize = 1024;

/// How often an idle subscription re-checks that its peer is still active
/// (revocation also closes the connection at once; this is the backstop).
const SUBSCRIBE_RECHECK: Duration = Duration::from_secs(5);

/// Most feedback items in one call.
const MAX_FEEDBACK_ITEMS: usize = 1024;

/// The federation service.
pub struct FederationService {
    fed: Arc<Federation>,
}

impl FederationService {
    /// The service over `fed`.
    pub fn new(fed: Arc<Federation>) -> Self {
        FederationService { fed }
    }

    /// The calling peer, if it is known and active.
    fn caller<T>(&self, request: &Request<T>) -> Result<Peer, Status> {
        let info = request
            .extensions()
            .get::<PeerConnectInfo>()
            .ok_or_else(|| Status::unauthenticated("no peer certificate on this connection"))?;
        match self.fed.active_peer(&info.peer) {
            Some(peer) => Ok(peer),
            None => {
                tracing::info!(peer = %info.peer.name, "call from a peer that is not active refused");
                Err(Status::permission_denied(format!(
                    "peer {} is not an active peer of this node",
                    info.peer.name
                )))
            }
        }
    }

    /// A set the caller may see, or NOT_FOUND (never saying whether it
    /// exists: a set it was not granted is none of its business).
    fn visible_set(&self, peer: &Peer, set: &str) -> Result<SetState, Status> {
        let id: SetId = set
            .parse()
            .map_err(|e: crate::model::NameError| Status::invalid_argument(e.to_string()))?;
        match self.fed.db.store().set(&id) {
            Some(state) if self.fed.may_see(peer, &state) => Ok(state),
            _ => {
                tracing::info!(peer = %peer.name(), set = %id, "set not granted to peer");
                Err(Status::not_found(format!("no set {id} for this peer")))
            }
        }
    }

    /// The sets `peer` may see, with the key histories that check them:
    /// ours, and those of the rotated origins we relay.
    fn manifest(&self, peer: &Peer) -> proto::ManifestResponse {
        let sets = self.fed.visible(peer);
        let origins: std::collections::BTreeSet<&str> = sets
            .iter()
            .map(|s| s.id().origin())
            .filter(|o| *o != self.fed.config.name)
            .collect();
        let mut keys = vec![key_history(&self.fed.key_history())];
        keys.extend(
            origins
                .into_iter()
                .filter_map(|o| self.fed.peers.get(o))
                .filter(|p| !p.card.rotations.is_empty())
                .map(|p| key_history(&p.card.history())),
        );
        proto::ManifestResponse {
            sets: sets.iter().map(head).collect(),
            node_id: self.fed.config.node_id.clone(),
            keys,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl FederationRpc for FederationService {
    async fn manifest(
        &self,
        request: Request<proto::ManifestRequest>,
    ) -> Result<Response<proto::ManifestResponse>, Status> {
        let peer = self.caller(&request)?;
        Ok(Response::new(self.manifest(&peer)))
    }

    type PullStream = BoxStream<proto::PullChunk>;

    async fn pull(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let peer = self.caller(&request)?;
        let req = request.into_inner();
        let state = self.visible_set(&peer, &req.set)?;
        if req.after_seq > state.head_seq {
            return Err(Status::failed_precondition(format!(
                "you are at seq {} of {}; this node has only {}",
                req.after_seq,
                state.id(),
                state.head_seq
            )));
        }
        tracing::info!(peer = %peer.name(), set = %state.id(), after_seq = req.after_seq, head = state.head_seq, "pull");
        let (tx, rx) = mpsc::channel(4);
        let fed = self.fed.clone();
        let name = peer.name().to_owned();
        // Blocking work of the node's: ends when the log is sent or the
        // caller goes away (its connection closes at the latest when the
        // node cuts it).
        self.fed.tasks.spawn_blocking(move || {
            if let Err(status) = send_log(&fed, &state, req.after_seq, &tx) {
                tracing::info!(peer = %name, set = %state.id(), error = %status.message(), "pull ended early");
                let _ = tx.blocking_send(Err(status));
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type SubscribeStream = BoxStream<proto::ManifestResponse>;

    async fn subscribe(
        &self,
        request: Request<proto::ManifestRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let peer = self.caller(&request)?;
        let identity = PeerIdentity {
            name: peer.card.name.clone(),
            node_id: peer.card.node_id.clone(),
        };
        let (tx, rx) = mpsc::channel(4);
        let fed = self.fed.clone();
        let service = FederationService { fed: fed.clone() };
        // Background work of the node's: the subscription ends when the
        // node stops.
        self.fed.tasks.spawn(async move {
            let mut sets = fed.db.changes();
            let mut peers = fed.peers.changes();
            let mut keys = fed.keys.subscribe();
            let mut last = None;
            loop {
                let Some(current) = fed.active_peer(&identity) else {
                    let _ = tx
                        .send(Err(Status::permission_denied(format!(
                            "peer {} is no longer an active peer of this node",
                            identity.name
                        ))))
                        .await;
                    return;
                };
                let manifest = service.manifest(&current);
                if last.as_ref() != Some(&manifest) {
                    if tx.send(Ok(manifest.clone())).await.is_err() {
                        return;
                    }
                    last = Some(manifest);
                }
                tokio::select! {
                    () = tx.closed() => return,
                    changed = sets.changed() => if changed.is_err() { return },
                    changed = peers.changed() => if changed.is_err() { return },
                    changed = keys.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep(SUBSCRIBE_RECHECK) => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_checkpoint(
        &self,
        request: Request<proto::CheckpointRequest>,
    ) -> Result<Response<proto::Checkpoint>, Status> {
        let peer = self.caller(&request)?;
        let req = request.into_inner();
        let state = self.visible_set(&peer, &req.set)?;
        match self.fed.db.store().checkpoint_at(state.id(), req.seq) {
            Ok(Some(cp)) => Ok(Response::new(checkpoint(&cp))),
            Ok(None) => Err(Status::not_found(format!(
                "no checkpoint of {} at seq {}",
                state.id(),
                req.seq
            ))),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    async fn send_feedback(
        &self,
        request: Request<proto::FeedbackBatch>,
    ) -> Result<Response<proto::FeedbackAck>, Status> {
        let peer = self.caller(&request)?;
        let proto::FeedbackBatch { items, keys } = request.into_inner();
        if items.len() > MAX_FEEDBACK_ITEMS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_FEEDBACK_ITEMS} feedback items per call, got {}",
                items.len()
            )));
        }
        let fed = self.fed.clone();
        let ack = self
            .fed
            .tasks
            .spawn_blocking(move || {
                super::sync::learn_keys(&fed, &peer, &keys);
                take_feedback(&fed, &peer, &items)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(ack))
    }
}

/// Streams `state`'s log after `after_seq` up to its head, in chunks that
/// end at the checkpoints.
fn send_log(
    fed: &Federation,
    state: &SetState,
    after_seq: u64,
    tx: &mpsc::Sender<Result<proto::PullChunk, Status>>,
) -> Result<(), Status> {
    let store = fed.db.store();
    let internal = |e: crate::store::StoreError| Status::internal(e.to_string());
    let mut log = store.log(state.id(), after_seq).map_err(internal)?;
    let mut next = after_seq + 1;
    for cp in store.checkpoints(state.id(), after_seq).map_err(internal)? {
        let cp = cp.map_err(internal)?;
        if cp.seq > state.head_seq {
            break;
        }
        while next <= cp.seq {
            let first_seq = next;
            let mut records = Vec::with_capacity(CHUNK_RECORDS);
            while next <= cp.seq && records.len() < CHUNK_RECORDS {
                let (seq, bytes) = log
                    .next()
                    .ok_or_else(|| {
                        Status::internal(format!("log of {} ends before seq {next}", state.id()))
                    })?
                    .map_err(internal)?;
                if seq != next {
                    return Err(Status::internal(format!(
                        "log of {} has a gap before seq {seq}",
                        state.id()
                    )));
                }
                records.push(bytes);
                next += 1;
            }
            let chunk = proto::PullChunk {
                first_seq,
                records,
                checkpoint: (next > cp.seq).then(|| checkpoint(&cp)),
            };
            if tx.blocking_send(Ok(chunk)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Keeps or passes on feedback from `peer`.
fn take_feedback(
    fed: &Federation,
    peer: &Peer,
    items: &[proto::FeedbackItem],
) -> Result<proto::FeedbackAck, Status> {
    let store = fed.db.store();
    let mut ack = proto::FeedbackAck::default();
    for item in items {
        let note = match feedback_note(item) {
            Ok(n) => n,
            Err(why) => {
                ack.refused.push(why);
                continue;
            }
        };
        // Only about sets we sent this peer.
        let Some(state) = store.set(&note.set).filter(|s| fed.may_see(peer, s)) else {
            ack.refused
                .push(format!("set {} was not sent to you", note.set));
            continue;
        };
        let reporter_keys = fed
            .peers
            .by_node_id(&note.reporter)
            .and_then(|p| p.card.chain().ok());
        let verified = match reporter_keys {
            Some(chain) => match note.verify_in(&chain) {
                Ok(()) => true,
                Err(_) => {
                    tracing::warn!(peer = %peer.name(), "feedback with a bad reporter signature refused");
                    ack.refused.push(format!(
                        "feedback on {} does not carry a valid signature of its reporter",
                        note.entry
                    ));
                    continue;
                }
            },
            None => false,
        };
        let result = if state.upstream.is_none() {
            if !entry_in(store, &note.entry, &note.set) {
                ack.refused
                    .push(format!("no entry {} in {}", note.entry, note.set));
                continue;
            }
            let detail = format!(
                "{} from node {} (reporter's signature checked: {verified})",
                note.verdict, note.reporter
            );
            let entry_id = note.entry;
            let entry = entry_id.to_string();
            let audit_note = crate::model::audit::Note::new(
                format!("peer:{}", peer.name()),
                crate::model::audit::Action::FeedbackReceived,
                entry,
                detail,
            );
            fed.db
                .receive_feedback(
                    &ReceivedFeedback {
                        note,
                        via: peer.name().to_owned(),
                        verified,
                        received_ms: crate::database::now_ms(),
                    },
                    audit_note,
                )
                .and_then(|()| fed.db.weigh_dispute(&entry_id).map(|_| ()))
        } else {
            fed.db.queue_feedback(&note)
        };
        result.map_err(|e| Status::internal(e.to_string()))?;
        ack.accepted += 1;
    }
    tracing::info!(peer = %peer.name(), accepted = ack.accepted, refused = ack.refused.len(), "feedback received");
    Ok(ack)
}

fn entry_in(store: &crate::store::Store, entry: &EntryId, set: &SetId) -> bool {
    matches!(store.entry(entry), Ok(Some(e)) if &e.set == set)
}
