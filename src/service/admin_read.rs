//! The admin service's whole-database reads: `Export` (sets as a file in an
//! export format, streamed) and `Verify` (the store's consistency check).
//! Free functions over the operations, which thin methods of
//! [`super::admin::AdminService`] call, so that the running node (over its
//! admin socket) and `hashfed` on a stopped node (the same service
//! in-process) run the same code and answer the same bytes.

use std::io::Write;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::export::{ExportError, ExportFormat, ExportOptions};
use crate::model::SetId;
use crate::ops::Ops;
use crate::store::StoreError;
use crate::tasks::Tasks;
use crate::wire::proto;

/// Bytes per export message: small enough that a slow reader holds little
/// (the channel keeps at most [`EXPORT_IN_FLIGHT`] of them), large enough
/// that a message's overhead does not count.
const EXPORT_CHUNK: usize = 256 << 10;

/// Export messages waiting for the reader.
const EXPORT_IN_FLIGHT: usize = 4;

/// The stream an `Export` call answers with.
pub type ExportStream = Pin<Box<dyn Stream<Item = Result<proto::ExportChunk, Status>> + Send>>;

fn store_status(e: StoreError) -> Status {
    match e {
        e @ StoreError::UnknownSet(_) => Status::not_found(e.to_string()),
        other => {
            tracing::error!(error = %other, "admin read failed");
            Status::internal(format!("the node's database failed: {other}"))
        }
    }
}

/// The options an export request asks for, checked.
fn export_options(request: &proto::ExportRequest) -> Result<ExportOptions, Status> {
    let set = match request.set.as_str() {
        "" => None,
        text => Some(
            text.parse::<SetId>()
                .map_err(|e: crate::model::NameError| {
                    Status::invalid_argument(format!("set: {e}"))
                })?,
        ),
    };
    let format = match request.format.as_str() {
        "" => ExportFormat::default(),
        name => name
            .parse::<ExportFormat>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?,
    };
    Ok(ExportOptions {
        set,
        format,
        include_retracted: request.include_retracted,
    })
}

/// Sends what is written through it as export messages, a chunk at a time.
struct ChunkSender {
    tx: mpsc::Sender<Result<proto::ExportChunk, Status>>,
    buf: Vec<u8>,
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= EXPORT_CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(EXPORT_CHUNK));
        self.tx
            .blocking_send(Ok(proto::ExportChunk {
                data,
                ..Default::default()
            }))
            .map_err(|_| std::io::Error::other("the export's reader went away"))
    }
}

/// `Export`: the entries are read and formatted on the blocking pool and
/// handed over through a small channel, so the set is never in memory
/// whole and a reader that stops reading stops the export. A set that does
/// not exist, or a bad request, fails the call before any byte is sent; a
/// failure part-way ends the stream with the error after the bytes written
/// before it (as a file written directly would hold them).
pub async fn export(
    ops: Arc<Ops>,
    tasks: &Tasks,
    request: Request<proto::ExportRequest>,
) -> Result<Response<ExportStream>, Status> {
    let options = export_options(request.get_ref())?;
    if let Some(set) = &options.set {
        if ops.db().store().set(set).is_none() {
            return Err(store_status(StoreError::UnknownSet(set.clone())));
        }
    }
    let (tx, rx) = mpsc::channel(EXPORT_IN_FLIGHT);
    tasks.spawn_blocking(move || {
        let mut out = ChunkSender {
            tx: tx.clone(),
            buf: Vec::with_capacity(EXPORT_CHUNK),
        };
        let result = ops.export(&options, &mut out);
        let sent = out.flush();
        let last = match (result, sent) {
            (Ok(entries), Ok(())) => Ok(proto::ExportChunk {
                data: Vec::new(),
                done: true,
                entries,
            }),
            // The reader went away: nobody to tell.
            (_, Err(_)) => return,
            (Err(ExportError::Store(e)), Ok(())) => Err(store_status(e)),
            (Err(ExportError::Write(e)), Ok(())) => {
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    Err(Status::failed_precondition(format!(
                        "{}: {e}",
                        options.format
                    )))
                } else {
                    // Only the channel can fail a write, and it did not.
                    Err(Status::internal(format!("export: {e}")))
                }
            }
        };
        let _ = tx.blocking_send(last);
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

/// `Verify`: the store's full consistency check, on the blocking pool (it
/// reads every key, and holds the writer lock while it does).
pub async fn verify(
    ops: Arc<Ops>,
    tasks: &Tasks,
    _request: Request<proto::VerifyRequest>,
) -> Result<Response<proto::VerifyResponse>, Status> {
    let report = tasks
        .spawn_blocking(move || ops.verify())
        .await
        .map_err(|e| Status::internal(format!("admin task failed: {e}")))?
        .map_err(super::status::ops_status)?;
    Ok(Response::new(proto::VerifyResponse {
        sets: report.sets,
        records: report.records,
        entries: report.entries,
        matchable: report.matchable,
        problems: report.problems,
    }))
}
