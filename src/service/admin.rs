//! The admin service: operators' view of a running node (sets, entries,
//! imports, retractions, counts). `hashfed` subcommands call it over the
//! node's Unix socket while the node runs, because the running node holds
//! the database and its indexes: writing through it keeps the index in
//! step, so a retraction stops matching the moment the call returns.

use std::io::Read;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::proto::{self, admin_server::Admin};
use super::wire;
use crate::database::Database;
use crate::federation::Federation;
use crate::import::load::{load, LoadError};
use crate::import::{detect, parse, Format};
use crate::model::audit::Action;
use crate::model::{EntryId, SetId, SetInfo};
use crate::store::{Change, Confirmed, Outcome, StoreError, VettingRefusal};

/// Problems an import reports back in full; the rest are only counted.
const MAX_PROBLEMS: usize = 100;

/// Longest retraction reason kept.
const MAX_REASON: usize = 200;

/// The admin service over one database.
pub struct AdminService {
    db: Arc<Database>,
    node_id: String,
    node_name: String,
    started: Instant,
    /// Peers and set policies; without it (a bare database) those calls
    /// are FAILED_PRECONDITION.
    fed: Option<Arc<Federation>>,
}

impl AdminService {
    /// Serves `db` for the node `node_id` (`node_name`).
    pub fn new(db: Arc<Database>, node_id: String, node_name: String) -> Self {
        AdminService {
            db,
            node_id,
            node_name,
            started: Instant::now(),
            fed: None,
        }
    }

    /// Also serves the peer and policy calls, through `fed`.
    pub fn with_federation(mut self, fed: Arc<Federation>) -> Self {
        self.fed = Some(fed);
        self
    }

    fn fed(&self) -> Result<Arc<Federation>, Status> {
        self.fed.clone().ok_or_else(|| {
            Status::failed_precondition("this node directory has no identity (hashfed.toml)")
        })
    }
}

/// Appends an audit event, or fails the call: an action that cannot be
/// audited is reported, not passed over.
fn audit(
    db: &Database,
    actor: &str,
    action: Action,
    subject: &str,
    detail: &str,
) -> Result<(), Status> {
    db.audit(actor, action, subject, detail)
        .map_err(store_error)
}

fn store_error(e: StoreError) -> Status {
    match e {
        StoreError::UnknownEntry(id) => Status::not_found(format!("no entry {id}")),
        StoreError::UnknownSet(id) => Status::not_found(format!("no set {id}")),
        StoreError::Name(e) => Status::invalid_argument(e.to_string()),
        StoreError::Vetting(refusal) => {
            let message = refusal.to_string();
            match refusal {
                VettingRefusal::OwnEntry(_) => Status::permission_denied(message),
                VettingRefusal::AlreadyConfirmed { .. }
                | VettingRefusal::AlreadyPending(_)
                | VettingRefusal::Exists(_) => Status::already_exists(message),
                VettingRefusal::NotPending(_) => Status::not_found(message),
                VettingRefusal::NotRequired(_) | VettingRefusal::Unvetted { .. } => {
                    Status::failed_precondition(message)
                }
                VettingRefusal::TooFew(_) => Status::invalid_argument(message),
            }
        }
        e @ StoreError::Received { .. } => Status::failed_precondition(e.to_string()),
        other => {
            tracing::error!(error = %other, "admin call failed");
            Status::internal(format!("the node's database failed: {other}"))
        }
    }
}

/// Refuses a reason (free text kept in logs and the audit log) over
/// [`MAX_REASON`] bytes.
fn check_reason(reason: &str) -> Result<(), Status> {
    if reason.len() > MAX_REASON {
        return Err(Status::invalid_argument(format!(
            "reason is over {MAX_REASON} bytes"
        )));
    }
    Ok(())
}

/// A set named in a list request, or `None` for every set (empty text).
fn optional_set(text: &str) -> Result<Option<SetId>, Status> {
    match text {
        "" => Ok(None),
        text => set_id(text).map(Some),
    }
}

/// Records per page of a list call: `limit`, at most (and by default) 1000.
fn page_limit(limit: u32) -> usize {
    match limit {
        0 => 1000,
        n => n.min(1000) as usize,
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

/// Runs store work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
}

impl AdminService {
    fn entry(db: &Database, id: &EntryId, changed: bool) -> Result<proto::Entry, Status> {
        let entry = db
            .store()
            .entry(id)
            .map_err(store_error)?
            .ok_or_else(|| Status::not_found(format!("no entry {id}")))?;
        Ok(wire::entry(&entry, changed))
    }
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

/// The first message of an import.
struct ImportHeader {
    set: SetId,
    format: Option<Format>,
    file_name: String,
    reason: String,
}

fn header(first: &proto::ImportChunk) -> Result<ImportHeader, Status> {
    let set: SetId = first
        .set
        .parse()
        .map_err(|e: crate::model::NameError| Status::invalid_argument(format!("set: {e}")))?;
    let format = if first.format.is_empty() {
        None
    } else {
        Some(
            first
                .format
                .parse::<Format>()
                .map_err(|e| Status::invalid_argument(e.to_string()))?,
        )
    };
    check_reason(&first.reason)?;
    let reason = if first.reason.is_empty() {
        "withdrawn at source".to_owned()
    } else {
        first.reason.clone()
    };
    Ok(ImportHeader {
        set,
        format,
        file_name: first.file_name.chars().take(200).collect(),
        reason,
    })
}

fn import_blocking(
    db: &Database,
    header: ImportHeader,
    reader: ChunkReader,
    actor: &str,
) -> Result<proto::ImportSummary, Status> {
    let mut input = std::io::BufReader::with_capacity(256 << 10, reader);
    let format = match header.format {
        Some(f) => f,
        None => {
            let head = std::io::BufRead::fill_buf(&mut input)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let name = (!header.file_name.is_empty()).then_some(header.file_name.as_str());
            detect(head, name).ok_or_else(|| {
                Status::invalid_argument("cannot tell the format; name it in `format`")
            })?
        }
    };
    let set = match db.store().set(&header.set) {
        Some(state) => state.info,
        None => {
            let info = db
                .create_set(SetInfo::new(header.set.clone()))
                .map_err(store_error)?
                .info;
            audit(
                db,
                actor,
                Action::SetCreated,
                info.id.as_str(),
                "by an import",
            )?;
            info
        }
    };
    let mut problems = Vec::new();
    let mut summary = proto::ImportSummary {
        format: format.name().to_owned(),
        ..Default::default()
    };
    let result = load(
        &set,
        parse(format, input),
        &header.reason,
        |changes| db.apply(&set.id, changes),
        |bad| {
            if problems.len() < MAX_PROBLEMS {
                problems.push(bad.to_string());
            }
        },
    );
    match result {
        Ok(s) => {
            summary.records = s.records;
            summary.added = s.added;
            summary.updated = s.updated;
            summary.unchanged = s.unchanged;
            summary.retracted = s.retracted;
            summary.not_found = s.not_found;
            summary.refused = s.malformed;
        }
        Err(LoadError::Input(e)) => summary.stopped = e.to_string(),
        Err(LoadError::Store(e)) => return Err(store_error(e)),
    }
    db.store().flush().map_err(store_error)?;
    summary.problems = problems;
    summary.head_seq = db.store().set(&set.id).map_or(0, |s| s.head_seq);
    tracing::info!(set = %set.id, records = summary.records, "import through the admin service");
    let detail = format!(
        "{} format, {} records: {} added, {} updated, {} unchanged, {} retracted, {} refused{}",
        summary.format,
        summary.records,
        summary.added,
        summary.updated,
        summary.unchanged,
        summary.retracted,
        summary.refused,
        if summary.stopped.is_empty() {
            String::new()
        } else {
            format!("; stopped: {}", summary.stopped)
        }
    );
    audit(db, actor, Action::Imported, set.id.as_str(), &detail)?;
    Ok(summary)
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
        let sets = self
            .db
            .store()
            .sets()
            .into_iter()
            .map(wire::set_summary)
            .collect();
        Ok(Response::new(proto::ListSetsResponse { sets }))
    }

    async fn get_entry(
        &self,
        request: Request<proto::EntryRef>,
    ) -> Result<Response<proto::Entry>, Status> {
        let id = entry_id(&request.into_inner().id)?;
        let db = self.db.clone();
        blocking(move || Self::entry(&db, &id, false))
            .await
            .map(Response::new)
    }

    async fn retract(
        &self,
        request: Request<proto::RetractRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        check_reason(&request.reason)?;
        let reason = if request.reason.is_empty() {
            "retracted by operator".to_owned()
        } else {
            request.reason
        };
        let db = self.db.clone();
        blocking(move || {
            let entry = Self::entry(&db, &id, false)?;
            let set: SetId = entry
                .set
                .parse()
                .map_err(|e: crate::model::NameError| Status::internal(e.to_string()))?;
            let applied = db
                .apply(
                    &set,
                    &[Change::RetractEntry {
                        entry: id,
                        reason: reason.clone(),
                    }],
                )
                .map_err(store_error)?;
            let changed = matches!(applied.outcomes.first(), Some(Outcome::Retracted(_)));
            if changed {
                tracing::info!(entry = %id, set = %set, "entry retracted by operator");
                audit(
                    &db,
                    &actor,
                    Action::EntryRetracted,
                    &id.to_string(),
                    &reason,
                )?;
            }
            Self::entry(&db, &id, changed)
        })
        .await
        .map(Response::new)
    }

    async fn set_entry_disabled(
        &self,
        request: Request<proto::SetEntryDisabledRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        let db = self.db.clone();
        blocking(move || {
            let before = Self::entry(&db, &id, false)?;
            db.set_disabled(&id, request.disabled)
                .map_err(store_error)?;
            tracing::info!(entry = %id, disabled = request.disabled, "entry switched by operator");
            let changed = before.disabled != request.disabled;
            if changed {
                let action = if request.disabled {
                    Action::EntryDisabled
                } else {
                    Action::EntryEnabled
                };
                audit(&db, &actor, action, &id.to_string(), "")?;
            }
            Self::entry(&db, &id, changed)
        })
        .await
        .map(Response::new)
    }

    async fn import(
        &self,
        request: Request<Streaming<proto::ImportChunk>>,
    ) -> Result<Response<proto::ImportSummary>, Status> {
        let actor = wire::actor(&request);
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
        let header = header(&first)?;
        let (tx, rx) = mpsc::channel(8);
        let db = self.db.clone();
        let reader = ChunkReader {
            rx,
            chunk: first.data,
            pos: 0,
        };
        let work =
            tokio::task::spawn_blocking(move || import_blocking(&db, header, reader, &actor));
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
        work.await
            .map_err(|e| Status::internal(format!("import task failed: {e}")))?
            .map(Response::new)
    }

    async fn stats(
        &self,
        _request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        let db = self.db.clone();
        let (node_id, node_name) = (self.node_id.clone(), self.node_name.clone());
        let uptime_seconds = self.started.elapsed().as_secs();
        blocking(move || {
            let store = db.store().stats().map_err(store_error)?;
            let matches = db.match_counts().map_err(store_error)?;
            Ok(proto::StatsResponse {
                sets: store.sets,
                entries: store.entries,
                matchable: store.matchable,
                log_records: store.records,
                disk_bytes: store.disk_bytes,
                matches: matches.matches,
                feedback_confirmed: matches.confirmed,
                feedback_false_positive: matches.false_positive,
                node_id,
                node_name,
                uptime_seconds,
            })
        })
        .await
        .map(Response::new)
    }

    async fn rotate_keys(
        &self,
        request: Request<proto::RotateKeysRequest>,
    ) -> Result<Response<proto::RotateKeysResponse>, Status> {
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        let req = request.into_inner();
        if !req.signing && !req.tls {
            return Err(Status::invalid_argument(
                "nothing to rotate: ask for the signing key, the certificates or both",
            ));
        }
        blocking(move || {
            let out = fed.rotate_keys(req.signing, req.tls)?;
            let mut detail = Vec::new();
            if req.signing {
                detail.push(format!(
                    "signing key {} ({})",
                    out.key_number, out.signing_key
                ));
            }
            if req.tls {
                detail.push(format!("certificates {}", out.certificates.join(", ")));
            }
            audit(
                &db,
                &actor,
                Action::KeysRotated,
                &out.node_id,
                &detail.join("; "),
            )?;
            Ok(out)
        })
        .await
        .map(Response::new)
    }

    async fn list_peers(
        &self,
        _request: Request<proto::ListPeersRequest>,
    ) -> Result<Response<proto::ListPeersResponse>, Status> {
        Ok(Response::new(self.fed()?.list_peers()))
    }

    async fn add_peer(
        &self,
        request: Request<proto::AddPeerRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        blocking(move || {
            let req = request.into_inner();
            let detail = format!("send {:?}, accept {:?}", req.send, req.accept);
            let peer = fed.add_peer(req)?;
            let subject = format!("{} ({})", peer.name, peer.node_id);
            audit(&db, &actor, Action::PeerAdded, &subject, &detail)?;
            Ok(peer)
        })
        .await
        .map(Response::new)
    }

    async fn set_peer_grants(
        &self,
        request: Request<proto::SetPeerGrantsRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        blocking(move || {
            let req = request.into_inner();
            let detail = format!("send {:?}, accept {:?}", req.send, req.accept);
            let peer = fed.set_peer_grants(req)?;
            audit(&db, &actor, Action::PeerGranted, &peer.name, &detail)?;
            Ok(peer)
        })
        .await
        .map(Response::new)
    }

    async fn set_peer_status(
        &self,
        request: Request<proto::SetPeerStatusRequest>,
    ) -> Result<Response<proto::Peer>, Status> {
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        blocking(move || {
            let peer = fed.set_peer_status(request.into_inner())?;
            let action = match peer.status.as_str() {
                "revoked" => Action::PeerRevoked,
                "suspended" => Action::PeerSuspended,
                _ => Action::PeerResumed,
            };
            audit(&db, &actor, action, &peer.name, "")?;
            Ok(peer)
        })
        .await
        .map(Response::new)
    }

    async fn set_policy(
        &self,
        request: Request<proto::SetPolicyRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        let s = blocking(move || {
            let s = fed.set_policy(request.into_inner())?;
            let policy = &s.info.policy;
            let detail = format!(
                "version {}, share with {:?}, reshare {}",
                s.signed_info.as_ref().map_or(0, |i| i.version),
                policy.share_with,
                policy.reshare
            );
            audit(&db, &actor, Action::PolicySigned, s.id().as_str(), &detail)?;
            Ok(s)
        })
        .await?;
        Ok(Response::new(wire::set_summary(s)))
    }

    async fn verify_sets(
        &self,
        _request: Request<proto::VerifySetsRequest>,
    ) -> Result<Response<proto::VerifySetsResponse>, Status> {
        Ok(Response::new(self.fed()?.verify_sets().await))
    }

    async fn list_audit(
        &self,
        request: Request<proto::ListAuditRequest>,
    ) -> Result<Response<proto::ListAuditResponse>, Status> {
        let request = request.into_inner();
        let limit = page_limit(request.limit);
        let db = self.db.clone();
        blocking(move || {
            let events = db
                .store()
                .audit_events(request.after_seq, limit)
                .map_err(store_error)?;
            Ok(proto::ListAuditResponse {
                records: events.into_iter().map(wire::audit_record).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn verify_audit(
        &self,
        _request: Request<proto::VerifyAuditRequest>,
    ) -> Result<Response<proto::VerifyAuditResponse>, Status> {
        let db = self.db.clone();
        blocking(move || {
            let check = db.store().check_audit().map_err(store_error)?;
            let (first_bad_seq, problem) = check.first_bad.clone().unwrap_or_default();
            Ok(proto::VerifyAuditResponse {
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
            })
        })
        .await
        .map(Response::new)
    }

    async fn set_vetting(
        &self,
        request: Request<proto::SetVettingRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let db = self.db.clone();
        let state = blocking(move || {
            let state = db
                .store()
                .set_vetting(&set, request.reviewers)
                .map_err(store_error)?;
            let detail = format!("{} reviewers per entry", request.reviewers);
            audit(&db, &actor, Action::VettingSet, set.as_str(), &detail)?;
            Ok(state)
        })
        .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn submit_entry(
        &self,
        request: Request<proto::SubmitEntryRequest>,
    ) -> Result<Response<proto::PendingEntry>, Status> {
        let actor = wire::actor(&request);
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
        let db = self.db.clone();
        blocking(move || {
            let pending = db
                .store()
                .submit(&set, data, &actor, crate::database::now_ms())
                .map_err(store_error)?;
            let subject = pending.id.to_string();
            audit(&db, &actor, Action::EntrySubmitted, &subject, set.as_str())?;
            Ok(wire::pending(&pending))
        })
        .await
        .map(Response::new)
    }

    async fn confirm_entry(
        &self,
        request: Request<proto::EntryRef>,
    ) -> Result<Response<proto::ConfirmEntryResponse>, Status> {
        let actor = wire::actor(&request);
        let id = entry_id(&request.into_inner().id)?;
        let db = self.db.clone();
        blocking(move || {
            let confirmed = db.confirm(&id, &actor).map_err(store_error)?;
            let subject = id.to_string();
            Ok(match confirmed {
                Confirmed::Waiting(p) => {
                    let detail = format!("{} of {}", p.data.vetting.len(), p.needed);
                    audit(&db, &actor, Action::EntryConfirmed, &subject, &detail)?;
                    proto::ConfirmEntryResponse {
                        pending: Some(wire::pending(&p)),
                        vetted: false,
                        entry: None,
                    }
                }
                Confirmed::Vetted(p, applied) => {
                    let detail = format!("{} of {}", p.data.vetting.len(), p.needed);
                    audit(&db, &actor, Action::EntryConfirmed, &subject, &detail)?;
                    let reviewers: Vec<&str> =
                        p.data.vetting.iter().map(|a| a.reviewer.as_str()).collect();
                    let detail = format!(
                        "{} at seq {}; submitted by {}, confirmed by {}",
                        p.set,
                        db.store().set(&p.set).map_or(0, |s| s.head_seq),
                        p.submitter,
                        reviewers.join(", ")
                    );
                    audit(&db, "node", Action::EntryVetted, &subject, &detail)?;
                    tracing::info!(entry = %id, set = %p.set, appended = applied.appended, "entry vetted");
                    proto::ConfirmEntryResponse {
                        pending: Some(wire::pending(&p)),
                        vetted: true,
                        entry: Some(Self::entry(&db, &id, true)?),
                    }
                }
            })
        })
        .await
        .map(Response::new)
    }

    async fn reject_entry(
        &self,
        request: Request<proto::RejectEntryRequest>,
    ) -> Result<Response<proto::PendingEntry>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        check_reason(&request.reason)?;
        let db = self.db.clone();
        blocking(move || {
            let pending = db.store().reject(&id).map_err(store_error)?;
            audit(
                &db,
                &actor,
                Action::EntryRejected,
                &id.to_string(),
                &request.reason,
            )?;
            Ok(wire::pending(&pending))
        })
        .await
        .map(Response::new)
    }

    async fn list_pending(
        &self,
        request: Request<proto::ListPendingRequest>,
    ) -> Result<Response<proto::ListPendingResponse>, Status> {
        let request = request.into_inner();
        let set = optional_set(&request.set)?;
        let db = self.db.clone();
        blocking(move || {
            let pending = db.store().pending(set.as_ref()).map_err(store_error)?;
            Ok(proto::ListPendingResponse {
                entries: pending.iter().map(wire::pending).collect(),
            })
        })
        .await
        .map(Response::new)
    }

    async fn set_suppressed(
        &self,
        request: Request<proto::SetSuppressedRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        check_reason(&request.reason)?;
        let db = self.db.clone();
        let state = blocking(move || {
            let state = db
                .store()
                .set_suppressed(&set, request.suppressed)
                .map_err(store_error)?;
            let action = if request.suppressed {
                Action::SetSuppressed
            } else {
                Action::SetUnsuppressed
            };
            tracing::info!(set = %set, suppressed = request.suppressed, "set switched by operator");
            audit(&db, &actor, action, set.as_str(), &request.reason)?;
            Ok(state)
        })
        .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn set_dispute_policy(
        &self,
        request: Request<proto::SetDisputePolicyRequest>,
    ) -> Result<Response<proto::SetSummary>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let set = set_id(&request.set)?;
        let policy = crate::model::DisputePolicy {
            threshold: request.threshold,
            suspend: request.suspend,
        };
        let db = self.db.clone();
        let state = blocking(move || {
            let state = db
                .store()
                .set_disputes(&set, policy.clone())
                .map_err(store_error)?;
            let detail = format!("threshold {}, suspend {}", policy.threshold, policy.suspend);
            audit(&db, &actor, Action::DisputePolicySet, set.as_str(), &detail)?;
            Ok(state)
        })
        .await?;
        Ok(Response::new(wire::set_summary(state)))
    }

    async fn list_disputes(
        &self,
        request: Request<proto::ListDisputesRequest>,
    ) -> Result<Response<proto::ListDisputesResponse>, Status> {
        let request = request.into_inner();
        let set = optional_set(&request.set)?;
        let db = self.db.clone();
        blocking(move || {
            let store = db.store();
            let mut disputes = Vec::new();
            for d in store.disputes(set.as_ref()).map_err(store_error)? {
                let threshold = store.set(&d.set).map_or(0, |s| s.info.disputes.threshold);
                let retracted = store
                    .entry(&d.entry)
                    .map_err(store_error)?
                    .is_some_and(|e| e.retracted);
                disputes.push(proto::Dispute {
                    entry_id: d.entry.to_string(),
                    set: d.set.to_string(),
                    false_positives: d.false_positives,
                    confirmed: d.confirmed,
                    reporters: d.reporters,
                    last_ms: d.last_ms,
                    reviewed_ms: d.reviewed_ms,
                    threshold,
                    raised: threshold > 0 && d.false_positives >= threshold,
                    retracted,
                });
            }
            Ok(proto::ListDisputesResponse { disputes })
        })
        .await
        .map(Response::new)
    }

    async fn review_dispute(
        &self,
        request: Request<proto::ReviewDisputeRequest>,
    ) -> Result<Response<proto::Entry>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let id = entry_id(&request.id)?;
        check_reason(&request.reason)?;
        let db = self.db.clone();
        blocking(move || {
            let e = db
                .review_dispute(&id, request.restore, &actor, &request.reason)
                .map_err(store_error)?;
            Ok(wire::entry(&e, request.restore))
        })
        .await
        .map(Response::new)
    }

    async fn report(
        &self,
        request: Request<proto::ReportRequest>,
    ) -> Result<Response<proto::ReportResponse>, Status> {
        let request = request.into_inner();
        if request.from_day > request.to_day {
            return Err(Status::invalid_argument("the period ends before it starts"));
        }
        let db = self.db.clone();
        let node = self.node_name.clone();
        blocking(move || {
            let report = db
                .report(&node, request.from_day, request.to_day)
                .map_err(store_error)?;
            let json = serde_json::to_string(&report)
                .map_err(|e| Status::internal(format!("report: {e}")))?;
            Ok(proto::ReportResponse { json })
        })
        .await
        .map(Response::new)
    }

    async fn backup(
        &self,
        request: Request<proto::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        let actor = wire::actor(&request);
        let (tx, rx) = mpsc::channel(4);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(BACKUP_CHUNK),
            };
            let result = db.store().backup(&mut out).and_then(|summary| {
                std::io::Write::flush(&mut out).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                Ok(summary)
            });
            match result {
                Ok(summary) => {
                    tracing::info!(keys = summary.keys, bytes = summary.bytes, "backup taken");
                    let detail = format!("{} keys, {} bytes", summary.keys, summary.bytes);
                    if let Err(e) = db.audit(&actor, Action::BackupTaken, "database", &detail) {
                        tracing::error!(error = %e, "the backup could not be audited");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "backup failed");
                    let _ = tx.blocking_send(Err(Status::internal(format!("backup failed: {e}"))));
                }
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
        let (fed, actor, db) = (self.fed()?, wire::actor(&request), self.db.clone());
        let request = request.into_inner();
        blocking(move || {
            let peer = fed.set_peer_review(&request.name, request.review)?;
            let detail = if request.review {
                "new entries held for review"
            } else {
                "entries accepted as they come"
            };
            audit(&db, &actor, Action::PeerReview, &peer.name, detail)?;
            Ok(peer)
        })
        .await
        .map(Response::new)
    }

    async fn list_held(
        &self,
        request: Request<proto::ListHeldRequest>,
    ) -> Result<Response<proto::ListHeldResponse>, Status> {
        let request = request.into_inner();
        let set = optional_set(&request.set)?;
        let limit = page_limit(request.limit);
        let db = self.db.clone();
        blocking(move || {
            let mut entries = Vec::new();
            for e in db.store().entries(set.as_ref()).map_err(store_error)? {
                let e = e.map_err(store_error)?;
                if e.held {
                    entries.push(wire::entry(&e, false));
                    if entries.len() == limit {
                        break;
                    }
                }
            }
            Ok(proto::ListHeldResponse { entries })
        })
        .await
        .map(Response::new)
    }

    async fn release_held(
        &self,
        request: Request<proto::ReleaseHeldRequest>,
    ) -> Result<Response<proto::ReleaseHeldResponse>, Status> {
        let actor = wire::actor(&request);
        let request = request.into_inner();
        let (set, id) = match (request.set.as_str(), request.id.as_str()) {
            ("", "") => return Err(Status::invalid_argument("name an entry or a set")),
            (set, "") => (Some(set_id(set)?), None),
            ("", id) => (None, Some(entry_id(id)?)),
            _ => return Err(Status::invalid_argument("name an entry or a set, not both")),
        };
        let db = self.db.clone();
        blocking(move || {
            let released = db.release(set.as_ref(), id.as_ref()).map_err(store_error)?;
            let subject = match (&set, &id) {
                (Some(s), _) => s.to_string(),
                (_, Some(i)) => i.to_string(),
                _ => String::new(),
            };
            if released > 0 {
                let detail = format!("{released} entries released");
                audit(&db, &actor, Action::EntriesReleased, &subject, &detail)?;
            }
            Ok(proto::ReleaseHeldResponse { released })
        })
        .await
        .map(Response::new)
    }

    async fn list_received_feedback(
        &self,
        _request: Request<proto::ListReceivedFeedbackRequest>,
    ) -> Result<Response<proto::ListReceivedFeedbackResponse>, Status> {
        let fed = self.fed()?;
        blocking(move || fed.received_feedback())
            .await
            .map(Response::new)
    }

    type ExportStream = super::admin_read::ExportStream;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        super::admin_read::export(self.db.clone(), request).await
    }

    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        super::admin_read::verify(self.db.clone(), request).await
    }
}
