//! The admin service: operators' view of a running node (sets, entries,
//! imports, retractions, vetting, peers, counts). `hashfed` subcommands
//! call it over the node's Unix socket while the node runs, because the
//! running node holds the database and its indexes: writing through it
//! keeps the index in step, so a retraction stops matching the moment the
//! call returns.
//!
//! Each call only translates: the request becomes one [`Ops`] call (the
//! typed operations, where the behaviour and the audit records are), its
//! answer becomes the response, its error a status ([`ops_status`]).

use std::io::Read;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::status::ops_status;
use crate::database::Database;
use crate::federation::Federation;
use crate::import::Format;
use crate::model::{EntryId, SetId};
use crate::ops::{self, Actor, ConfirmOutcome, ImportRequest, Ops, OpsError, Release};
use crate::tasks::Tasks;
use crate::wire;
use crate::wire::proto::{self, admin_server::Admin};

/// The admin service over one node's operations.
pub struct AdminService {
    ops: Arc<Ops>,
    /// The node's live exchanges (none configured: an empty list).
    exchanges: Option<Arc<crate::exchange::Exchanges>>,
    /// Where its work on the blocking pool runs (see
    /// [`AdminService::with_tasks`]).
    tasks: Tasks,
}

impl AdminService {
    /// Serves `db` for the node `node_id` (`node_name`).
    pub fn new(db: Arc<Database>, node_id: String, node_name: String) -> Self {
        AdminService {
            ops: Arc::new(Ops::new(db, node_id, node_name)),
            exchanges: None,
            tasks: Tasks::new(),
        }
    }

    /// Also serves the peer, policy and key calls, through `fed`.
    pub fn with_federation(self, fed: Arc<Federation>) -> Self {
        let ops = &self.ops;
        let ops = Ops::new(
            ops.db().clone(),
            ops.node_id().to_owned(),
            ops.node_name().to_owned(),
        );
        AdminService {
            ops: Arc::new(ops.with_federation(fed)),
            exchanges: self.exchanges,
            tasks: self.tasks,
        }
    }

    /// Serves these operations.
    pub fn from_ops(ops: Arc<Ops>) -> Self {
        AdminService {
            ops,
            exchanges: None,
            tasks: Tasks::new(),
        }
    }

    /// Also serves the exchange calls, over `exchanges`.
    pub fn with_exchanges(mut self, exchanges: Arc<crate::exchange::Exchanges>) -> Self {
        self.exchanges = Some(exchanges);
        self
    }

    fn exchanges(&self) -> Result<&Arc<crate::exchange::Exchanges>, Status> {
        self.exchanges
            .as_ref()
            .ok_or_else(|| Status::failed_precondition("this node has no exchanges configured"))
    }

    /// The same service, its work on the blocking pool (every operation,
    /// imports, exports, backups) run as `tasks`: a node's, so that
    /// stopping the node waits for it (it cannot be interrupted) and the
    /// database is free once the node has stopped.
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// The operations this service translates to.
    pub fn ops(&self) -> &Arc<Ops> {
        &self.ops
    }

    /// Runs one operation on the blocking pool (they read and write the
    /// store) and turns its error into a status.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Ops) -> Result<T, OpsError> + Send + 'static,
    ) -> Result<T, Status> {
        let ops = self.ops.clone();
        self.tasks
            .spawn_blocking(move || work(&ops))
            .await
            .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
            .map_err(ops_status)
    }
}

/// A set named in a list request, or `None` for every set (empty text).
fn optional_set(text: &str) -> Result<Option<SetId>, Status> {
    match text {
        "" => Ok(None),
        text => set_id(text).map(Some),
    }
}

fn set_id(text: &str) -> Result<SetId, Status> {
    text.parse()
        .map_err(|e: crate::model::NameError| Status::invalid_argument(e.to_string()))
}

fn entry_id(text: &str) -> Result<EntryId, Status> {
    text.parse()
        .map_err(|e: crate::model::NameError| Status::invalid_argument(e.to_string()))
}

fn peer_status(text: &str) -> Result<crate::peers::PeerStatus, Status> {
    crate::peers::PeerStatus::parse(text).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Hands the bytes of an import stream to the (blocking) parser.
struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, Status>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(status)) => {
                    return Err(std::io::Error::other(format!(
                        "the import stream failed: {}",
                        status.message()
                    )))
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The first message of an import, as an operation's request.
fn import_request(first: &proto::ImportChunk) -> Result<ImportRequest, Status> {
    let set: SetId = first
        .set
        .parse()
        .map_err(|e: crate::model::NameError| Status::invalid_argument(format!("set: {e}")))?;
    let format = match first.format.as_str() {
        "" => None,
        name => Some(
            name.parse::<Format>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        ),
    };
    ops::check_reason(&first.reason).map_err(ops_status)?;
    Ok(ImportRequest {
        set,
        format,
        file_name: first.file_name.chars().take(200).collect(),
        reason: first.reason.clone(),
    })
}

/// Sends what is written through it to a stream, a chunk at a time.
struct ChunkWriter {
    tx: mpsc::Sender<Result<proto::BackupChunk, Status>>,
    buf: Vec<u8>,
}

/// Bytes per backup message.
const BACKUP_CHUNK: usize = 1 << 20;

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= BACKUP_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.buf);
        self.tx
            .blocking_send(Ok(proto::BackupChunk { data }))
            .map_err(|_| std::io::Error::other("the backup's reader went away"))
    }
}

type BackupStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Admin for AdminService {
    type BackupStream = BackupStream;

    async fn list_sets(
        &self,
        _request: Request<proto::ListSetsRequest>,
    ) -> Result<Response<proto::ListSetsResponse>, Status> {
        let sets = self.ops.sets().into_iter().map(wire::set_summary).collect();
        Ok(Response::new(proto::ListSetsResponse { sets }))
    }

    async fn get_entry(
        &self,
        request: Request<proto::EntryRef>,
    ) -> Result<Response<proto::Entry>, Status> {
        let id = entry_id(&request.into_inner().id)?;
        let e = self.run(move |ops| ops.entry(&id)).await?;
        Ok(Response::new(wire::entry(&e, false)))
    }

    async fn retract(
        &self,
        request: Request<proto::RetractRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        let (e, changed) = self
            .run(move |ops| ops.retract(&actor, &id, &request.reason))
            .await?;
        Ok(Response::new(wire::entry(&e, changed)))
    }

    async fn set_entry_disabled(
        &self,
        request: Request<proto::SetEntryDisabledRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        let (e, changed) = self
            .run(move |ops| ops.set_disabled(&actor, &id, request.disabled))
            .await?;
        Ok(Response::new(wire::entry(&e, changed)))
    }

    async fn import(
        &self,
        request: Request<Streaming<proto::ImportChunk>>,
    ) -> Result<Response<proto::ImportSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let mut stream = request.into_inner();
        let first = match stream.next().await {
            Some(Ok(first)) => first,
            Some(Err(status)) => return Err(wire::oversized_to_invalid(status)),
            None => {
                return Err(Status::invalid_argument(
                    "an import needs at least one message",
                ))
            }
        };
        let import = import_request(&first)?;
        let (tx, rx) = mpsc::channel(8);
        let reader = ChunkReader {
            rx,
            chunk: first.data,
            pos: 0,
        };
        let ops = self.ops.clone();
        let work = self.tasks.spawn_blocking(move || {
            let input = std::io::BufReader::with_capacity(256 << 10, reader);
            ops.import(&actor, &import, input, |_| {})
        });
        // Feed the parser until the client closes its side; a parser that
        // stops early drops the receiver, which ends this loop too.
        while let Some(next) = stream.next().await {
            let item = next
                .map(|chunk| chunk.data)
                .map_err(wire::oversized_to_invalid);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
        drop(tx);
        let summary = work
            .await
            .map_err(|e| Status::internal(format!("import task failed: {e}")))?
            .map_err(ops_status)?;
        Ok(Response::new(wire::import_summary(summary)))
    }

    async fn stats(
        &self,
        _request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        let (node_id, node_name) = (
            self.ops.node_id().to_owned(),
            self.ops.node_name().to_owned(),
        );
        let s = self.run(|ops| ops.stats()).await?;
        Ok(Response::new(proto::StatsResponse {
            sets: s.store.sets,
            entries: s.store.entries,
            matchable: s.store.matchable,
            log_records: s.store.records,
            disk_bytes: s.store.disk_bytes,
            matches: s.matches,
            feedback_confirmed: s.confirmed,
            feedback_false_positive: s.false_positive,
            node_id,
            node_name,
            uptime_seconds: s.uptime_seconds,
            key_history_refusals: s.key_history_refusals,
        }))
    }

    async fn rotate_keys(
        &self,
        request: Request<proto::RotateKeysRequest>,
    ) -> Result<Response<proto::RotateKeysResponse>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let out = self
            .run(move |ops| ops.rotate_keys(&actor, req.signing, req.tls))
            .await?;
        Ok(Response::new(proto::RotateKeysResponse {
            node_id: out.node_id,
            key_number: out.key_number,
            signing_key: out.signing_key,
            certificates: out.certificates,
        }))
    }

    async fn list_peers(
        &self,
        _request: Request<proto::ListPeersRequest>,
    ) -> Result<Response<proto::ListPeersResponse>, Status> {
        let peers = self.ops.peers().map_err(ops_status)?;
        Ok(Response::new(proto::ListPeersResponse {
            peers: peers.iter().map(wire::peer).collect(),
        }))
    }

    async fn add_peer(
        &self,
        request: Request<proto::AddPeerRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let view = self
            .run(move |ops| ops.add_peer(&actor, &req.card, req.send, req.accept))
            .await?;
        Ok(Response::new(wire::peer(&view)))
    }

    async fn set_peer_grants(
        &self,
        request: Request<proto::SetPeerGrantsRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let view = self
            .run(move |ops| ops.set_peer_grants(&actor, &req.name, req.send, req.accept))
            .await?;
        Ok(Response::new(wire::peer(&view)))
    }

    async fn set_peer_status(
        &self,
        request: Request<proto::SetPeerStatusRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let status = peer_status(&req.status)?;
        let view = self
            .run(move |ops| ops.set_peer_status(&actor, &req.name, status))
            .await?;
        Ok(Response::new(wire::peer(&view)))
    }

    async fn set_policy(
        &self,
        request: Request<proto::SetPolicyRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let set = set_id(&req.set)?;
        let policy = crate::model::SetPolicy {
            share_with: req.share_with,
            reshare: req.reshare,
        };
        let s = self
            .run(move |ops| ops.set_policy(&actor, &set, policy))
            .await?;
        Ok(Response::new(wire::set_summary(s)))
    }

    async fn create_set(
        &self,
        request: Request<proto::CreateSetRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let req = request.into_inner();
        let set = set_id(&req.set)?;
        let kind = if req.allow {
            crate::model::SetKind::Allow
        } else {
            crate::model::SetKind::Block
        };
        let s = self
            .run(move |ops| ops.create_set(&actor, &set, kind, &req.description))
            .await?;
        Ok(Response::new(wire::set_summary(s)))
    }

    async fn verify_sets(
        &self,
        _request: Request<proto::VerifySetsRequest>,
    ) -> Result<Response<proto::VerifySetsResponse>, Status> {
        let comparisons = self.ops.verify_sets().await.map_err(ops_status)?;
        Ok(Response::new(proto::VerifySetsResponse {
            comparisons: comparisons.into_iter().map(wire::comparison).collect(),
        }))
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        let request = request.into_inner();
        let events = self
            .run(move |ops| ops.audit_events(request.after_seq, request.limit as usize))
            .await?;
        Ok(Response::new(proto::ListAuditResponse {
            records: events.into_iter().map(wire::audit_record).collect(),
        }))
    }

    async fn verify_audit(
        &self,
        _request: Request<proto::VerifyAuditRequest>,
    ) -> Result<Response<proto::VerifyAuditResponse>, Status> {
        let check = self.run(|ops| ops.verify_audit()).await?;
        let (first_bad_seq, problem) = check.first_bad.clone().unwrap_or_default();
        Ok(Response::new(proto::VerifyAuditResponse {
            records: check.records,
            ok: check.is_ok(),
            first_bad_seq,
            problem,
            head_signature: match check.head_signed {
                Some(true) => "valid",
                Some(false) => "invalid",
                None => "not checked",
            }
            .to_owned(),
        }))
    }

    async fn set_vetting(
        &self,
        request: Request<proto::SetVettingRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let state = self
            .run(move |ops| ops.set_vetting(&actor, &set, request.reviewers))
            .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn submit_entry(
        &self,
        request: Request<proto::SubmitEntryRequest>,
    ) -> Result<Response<proto::PendingEntry>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let signal = crate::model::Signal::parse(&request.signal_type, &request.value)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let labels = crate::model::normalize_labels(request.labels)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let data = crate::model::EntryData {
            signal,
            labels,
            external_id: (!request.external_id.is_empty()).then_some(request.external_id),
            vetting: Vec::new(),
        };
        let pending = self.run(move |ops| ops.submit(&actor, &set, data)).await?;
        Ok(Response::new(wire::pending(&pending)))
    }

    async fn confirm_entry(
        &self,
        request: Request<proto::EntryRef>,
    ) -> Result<Response<proto::ConfirmEntryResponse>, Status> {
        let actor = wire::ops_actor(&request);
        let id = entry_id(&request.into_inner().id)?;
        let outcome = self.run(move |ops| ops.confirm(&actor, &id)).await?;
        Ok(Response::new(match outcome {
            ConfirmOutcome::Waiting(p) => proto::ConfirmEntryResponse {
                pending: Some(wire::pending(&p)),
                vetted: false,
                entry: None,
            },
            ConfirmOutcome::Vetted(p, e) => proto::ConfirmEntryResponse {
                pending: Some(wire::pending(&p)),
                vetted: true,
                entry: Some(wire::entry(&e, true)),
            },
        }))
    }

    async fn reject_entry(
        &self,
        request: Request<proto::RejectEntryRequest>,
    ) -> Result<Response<proto::PendingEntry>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        let pending = self
            .run(move |ops| ops.reject(&actor, &id, &request.reason))
            .await?;
        Ok(Response::new(wire::pending(&pending)))
    }

    async fn list_pending(
        &self,
        request: Request<proto::ListPendingRequest>,
    ) -> Result<Response<proto::ListPendingResponse>, Status> {
        let set = optional_set(&request.into_inner().set)?;
        let pending = self.run(move |ops| ops.pending(set.as_ref())).await?;
        Ok(Response::new(proto::ListPendingResponse {
            entries: pending.iter().map(wire::pending).collect(),
        }))
    }

    async fn set_suppressed(
        &self,
        request: Request<proto::SetSuppressedRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let state = self
            .run(move |ops| ops.suppress(&actor, &set, request.suppressed, &request.reason))
            .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn set_dispute_policy(
        &self,
        request: Request<proto::SetDisputePolicyRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let policy = crate::model::DisputePolicy {
            threshold: request.threshold,
            suspend: request.suspend,
        };
        let state = self
            .run(move |ops| ops.set_dispute_policy(&actor, &set, policy))
            .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn list_disputes(
        &self,
        request: Request<proto::ListDisputesRequest>,
    ) -> Result<Response<proto::ListDisputesResponse>, Status> {
        let set = optional_set(&request.into_inner().set)?;
        let disputes = self.run(move |ops| ops.disputes(set.as_ref())).await?;
        Ok(Response::new(proto::ListDisputesResponse {
            disputes: disputes.into_iter().map(wire::dispute).collect(),
        }))
    }

    async fn review_dispute(
        &self,
        request: Request<proto::ReviewDisputeRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        let restore = request.restore;
        let e = self
            .run(move |ops| ops.review_dispute(&actor, &id, restore, &request.reason))
            .await?;
        Ok(Response::new(wire::entry(&e, restore)))
    }

    async fn report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::ReportResponse>, Status> {
        let request = request.into_inner();
        let report = self
            .run(move |ops| ops.report(request.from_day, request.to_day))
            .await?;
        let json =
            serde_json::to_string(&report).map_err(|e| Status::internal(format!("report: {e}")))?;
        Ok(Response::new(proto::ReportResponse { json }))
    }

    async fn backup(
        &self,
        request: Request<proto::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let actor = wire::ops_actor(&request);
        let (tx, rx) = mpsc::channel(4);
        let ops = self.ops.clone();
        self.tasks.spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(BACKUP_CHUNK),
            };
            if let Err(e) = ops.backup(&actor, &mut out) {
                tracing::error!(error = %e, "backup failed");
                let _ = tx.blocking_send(Err(Status::internal(format!("backup failed: {e}"))));
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn set_peer_review(
        &self,
        request: Request<proto::SetPeerReviewRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let view = self
            .run(move |ops| ops.set_peer_review(&actor, &request.name, request.review))
            .await?;
        Ok(Response::new(wire::peer(&view)))
    }

    async fn list_held(
        &self,
        request: Request<proto::ListHeldRequest>,
    ) -> Result<Response<proto::ListHeldResponse>, Status> {
        let request = request.into_inner();
        let set = optional_set(&request.set)?;
        let held = self
            .run(move |ops| ops.held(set.as_ref(), request.limit as usize))
            .await?;
        Ok(Response::new(proto::ListHeldResponse {
            entries: held.iter().map(|e| wire::entry(e, false)).collect(),
        }))
    }

    async fn release_held(
        &self,
        request: Request<proto::ReleaseHeldRequest>,
    ) -> Result<Response<proto::ReleaseHeldResponse>, Status> {
        let actor = wire::ops_actor(&request);
        let request = request.into_inner();
        let which = match (request.set.as_str(), request.id.as_str()) {
            ("", "") => return Err(Status::invalid_argument("name an entry or a set")),
            (set, "") => Release::Set(set_id(set)?),
            ("", id) => Release::Entry(entry_id(id)?),
            _ => return Err(Status::invalid_argument("name an entry or a set, not both")),
        };
        let released = self.run(move |ops| ops.release(&actor, &which)).await?;
        Ok(Response::new(proto::ReleaseHeldResponse { released }))
    }

    async fn list_received_feedback(
        &self,
        _request: Request<proto::ListReceivedFeedbackRequest>,
    ) -> Result<Response<proto::ListReceivedFeedbackResponse>, Status> {
        let items = self.run(|ops| ops.received_feedback()).await?;
        Ok(Response::new(proto::ListReceivedFeedbackResponse {
            items: items.into_iter().map(wire::received_feedback).collect(),
        }))
    }

    type ExportStream = super::admin_read::ExportStream;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        super::admin_read::export(self.ops.clone(), &self.tasks, request).await
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        super::admin_read::verify(self.ops.clone(), &self.tasks, request).await
    }

    async fn list_exchanges(
        &self,
        _request: Request<proto::ListExchangesRequest>,
    ) -> Result<Response<proto::ListExchangesResponse>, Status> {
        let Some(exchanges) = self.exchanges.clone() else {
            return Ok(Response::new(proto::ListExchangesResponse::default()));
        };
        let list = self
            .tasks
            .spawn_blocking(move || exchanges.list())
            .await
            .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
            .map_err(ops_status)?;
        Ok(Response::new(proto::ListExchangesResponse {
            exchanges: list
                .iter()
                .map(|(config, state)| wire::exchange_status(config, state))
                .collect(),
        }))
    }

    async fn fetch_exchange(
        &self,
        request: Request<proto::ExchangeRef>,
    ) -> Result<Response<proto::ExchangeStatus>, Status> {
        let name = request.into_inner().name;
        let exchanges = self.exchanges()?;
        let pass = exchanges.fetch(&name).await.map_err(fetch_status)?;
        let config = exchanges
            .config(&name)
            .ok_or_else(|| Status::not_found(format!("no exchange named {name:?}")))?;
        let mut status = wire::exchange_status(config, &pass.state);
        status.pages_fetched = pass.pages;
        Ok(Response::new(status))
    }

    async fn reset_exchange(
        &self,
        request: Request<proto::ExchangeRef>,
    ) -> Result<Response<proto::ExchangeStatus>, Status> {
        let actor = wire::ops_actor(&request);
        let name = request.into_inner().name;
        let exchanges = self.exchanges()?;
        let state = exchanges.reset(&actor, &name).await.map_err(fetch_status)?;
        let config = exchanges
            .config(&name)
            .ok_or_else(|| Status::not_found(format!("no exchange named {name:?}")))?;
        Ok(Response::new(wire::exchange_status(config, &state)))
    }
}

/// For tests and tools that hold the operations: the actor of a command
/// run on a stopped node.
pub fn local_cli() -> Actor {
    Actor::new("local-cli")
}

/// A failed exchange pass as a status: an unknown name is NOT_FOUND, the
/// service's or the way to it UNAVAILABLE (the message says what), the
/// rest as the operations map them.
fn fetch_status(e: crate::exchange::FetchError) -> Status {
    use crate::exchange::FetchError;
    let message = crate::error::Chain(&e).to_string();
    match e {
        FetchError::Unknown(_) => Status::not_found(message),
        FetchError::Ops(e) => ops_status(e),
        FetchError::Exchange(crate::exchange::ExchangeError::Config(_))
        | FetchError::Exchange(crate::exchange::ExchangeError::Credentials { .. }) => {
            Status::failed_precondition(message)
        }
        _ => Status::unavailable(message),
    }
}
