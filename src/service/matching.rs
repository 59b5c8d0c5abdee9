//! The match service: what local services call for every upload.
//!
//! Malformed queries fail the whole call with `INVALID_ARGUMENT` naming the
//! query, so a client bug is loud; a well-formed PDQ hash under the quality
//! floor is answered with `skipped`, because that is a property of the
//! image, not a bug.
//!
//! Matching is CPU work (a PDQ radius search is ~0.1 ms at 1M entries), so
//! it runs on the blocking pool, never on the async workers that carry the
//! connections; a large batch is spread over all cores. A hit is recorded
//! (entry, time, caller; never the query) so that feedback can refer to
//! it; a query that matches nothing leaves no trace, not even in the logs.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::database::{Answer, Database, Match as Hit, MatchError, PdqQuery};
use crate::metrics::{ErrorReason, Kind, Metrics};
use crate::model::Signal;
use crate::signal::content::{hash_image, HashOptions};
use crate::signal::decode::{DecodeLimits, DecodeOptions};
use crate::signal::pdq::{PdqHash, PdqHasher, DEFAULT_QUALITY_FLOOR};
use crate::store::matches::{Feedback, MatchId, MatchRecord};
use crate::tasks::Tasks;
use crate::wire;
use crate::wire::proto::{self, match_server::Match};

/// Most queries in one call or one stream message.
pub const MAX_BATCH: usize = 1024;

/// Largest image `MatchImage` accepts, in bytes.
pub const MAX_IMAGE_BYTES: usize = 16 << 20;

/// Batches at least this large are split across cores.
const PARALLEL_BATCH: usize = 8;

/// Requests of one stream answered at once (so one stream can keep every
/// core busy, while a flood of requests waits for answers to drain).
const STREAM_IN_FLIGHT: usize = 4;

/// The match service over one database.
pub struct MatchService {
    db: Arc<Database>,
    metrics: Arc<Metrics>,
    quality_floor: u32,
    /// Image decodes at once: each can take hundreds of MB at the limits.
    images: Arc<Semaphore>,
    /// Whether hits leave match records (see [`MatchService::without_match_records`]).
    records: bool,
    /// Where streams' pumps and blocking lookups run (see
    /// [`MatchService::with_tasks`]).
    tasks: Tasks,
}

impl MatchService {
    /// Serves `db`, counting into `metrics`.
    pub fn new(db: Arc<Database>, metrics: Arc<Metrics>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        MatchService {
            db,
            metrics,
            quality_floor: u32::from(DEFAULT_QUALITY_FLOOR),
            images: Arc::new(Semaphore::new(cores)),
            records: true,
            tasks: Tasks::new(),
        }
    }

    /// The same service, its work (streams' pumps, lookups on the
    /// blocking pool) run as `tasks`: a node's, so that stopping the node
    /// waits for it, and the database is free once the node has stopped.
    pub fn with_tasks(mut self, tasks: Tasks) -> Self {
        self.tasks = tasks;
        self
    }

    /// The same service, except that hits leave no match record (and so
    /// carry no `match_id`): for an operator looking hashes up from the
    /// `hashfed` CLI (on the admin socket, or in-process on a stopped
    /// node). A lookup is not a service's match: recording it would count
    /// in the transparency report and the match statistics as one, and it
    /// never gets feedback.
    pub fn without_match_records(mut self) -> Self {
        self.records = false;
        self
    }

    /// Who hits are recorded for: the caller, or nobody.
    fn recorded_as<T>(&self, request: &Request<T>) -> Option<String> {
        self.records.then(|| wire::caller(request))
    }
}

/// A query checked and ready to run.
enum Parsed {
    Exact(Signal),
    Pdq {
        hashes: Vec<PdqHash>,
        quality: Option<u32>,
        radius: Option<u32>,
    },
}

impl Parsed {
    fn kind(&self) -> Kind {
        match self {
            Parsed::Exact(s) => Kind::from(s.kind()),
            Parsed::Pdq { .. } => Kind::Pdq,
        }
    }
}

fn parse(q: &proto::Query) -> Result<Parsed, String> {
    let signal = wire::signal_from(q.signal.as_ref().ok_or("no signal")?)?;
    let Some(hash) = signal.as_pdq() else {
        if !q.pdq_variants.is_empty() || q.quality.is_some() || q.radius.is_some() {
            return Err("variants, quality and radius apply to PDQ only".into());
        }
        return Ok(Parsed::Exact(signal));
    };
    let mut hashes = Vec::with_capacity(1 + q.pdq_variants.len());
    hashes.push(hash);
    for v in &q.pdq_variants {
        let bytes: [u8; 32] = v
            .as_slice()
            .try_into()
            .map_err(|_| format!("PDQ variant must be 32 bytes, got {}", v.len()))?;
        hashes.push(PdqHash::from_bytes(bytes));
    }
    Ok(Parsed::Pdq {
        hashes,
        quality: q.quality,
        radius: q.radius,
    })
}

/// Largest PDQ radius answered on the connection's own thread: up to
/// here the multi-index search costs well under a millisecond even at
/// 10M entries; beyond it a search may scan, and must not hold up the
/// async worker that other connections share.
const INLINE_RADIUS: u32 = 32;

/// Whether a single query is cheap enough to answer inline.
fn cheap(q: &proto::Query, default_radius: u32) -> bool {
    let pdq = q
        .signal
        .as_ref()
        .is_some_and(|s| s.r#type == proto::SignalType::Pdq as i32);
    !pdq || q.radius.unwrap_or(default_radius) <= INLINE_RADIUS
}

/// Why a call failed.
fn internal(e: impl std::fmt::Display) -> Status {
    tracing::error!(error = %e, "match failed");
    Status::internal("the node could not read its database")
}

impl MatchService {
    /// Answers one batch: every query is checked first (one bad query
    /// fails the call before any work), then matched, then the hits are
    /// recorded. With `parallel`, a large batch is spread over all cores
    /// (a lone caller's batch finishes sooner); stream requests are not,
    /// because a stream keeps several requests in flight already, and
    /// splitting each of them made the answers' order unfair (measured: a
    /// p99 of 1.3-1.9 s against a p50 of 40 ms under saturation).
    fn answer(
        db: &Database,
        metrics: &Metrics,
        quality_floor: u32,
        queries: &[proto::Query],
        client: Option<&str>,
        parallel: bool,
    ) -> Result<Vec<proto::QueryResult>, Status> {
        if queries.is_empty() || queries.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "a call carries 1 to {MAX_BATCH} queries, got {}",
                queries.len()
            )));
        }
        let parsed = queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                parse(q).map_err(|m| {
                    // The type the caller named, not the value's: a PDQ
                    // value of the wrong length is a PDQ error (an
                    // unknown type name counts as opaque).
                    let k = q
                        .signal
                        .as_ref()
                        .and_then(|s| wire::signal_type_from(s).ok())
                        .map_or(Kind::Opaque, |t| Kind::from(&t));
                    metrics.error(k, ErrorReason::InvalidArgument);
                    Status::invalid_argument(format!("query {i}: {m}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let run = |(i, p): (usize, &Parsed)| -> Result<(Answer, String), Status> {
            let started = Instant::now();
            let outcome = match p {
                Parsed::Exact(signal) => db.answer_exact(signal),
                Parsed::Pdq {
                    hashes,
                    quality,
                    radius,
                } => db.answer_pdq(&PdqQuery {
                    hashes,
                    quality: *quality,
                    quality_floor,
                    radius: *radius,
                }),
            };
            let k = p.kind();
            match outcome {
                Ok(answer) => {
                    metrics.query(k, started.elapsed(), !answer.hits.is_empty());
                    if !answer.allowlisted.is_empty() {
                        metrics.allowlisted(k);
                    }
                    Ok((answer, String::new()))
                }
                Err(e @ MatchError::LowQuality { .. }) => {
                    metrics.error(k, ErrorReason::LowQuality);
                    Ok((Answer::default(), e.to_string()))
                }
                Err(MatchError::Store(e)) => {
                    metrics.error(k, ErrorReason::Internal);
                    Err(internal(e))
                }
                Err(e) => {
                    metrics.error(k, ErrorReason::InvalidArgument);
                    Err(Status::invalid_argument(format!("query {i}: {e}")))
                }
            }
        };
        let answered: Vec<(Answer, String)> = if parallel && parsed.len() >= PARALLEL_BATCH {
            parsed
                .par_iter()
                .enumerate()
                .map(run)
                .collect::<Result<_, _>>()?
        } else {
            parsed
                .iter()
                .enumerate()
                .map(run)
                .collect::<Result<_, _>>()?
        };
        let hits: Vec<&Hit> = answered.iter().flat_map(|(a, _)| &a.hits).collect();
        let ids = Self::record(db, &hits, client)?;
        let mut ids = ids.into_iter();
        Ok(answered
            .iter()
            .map(|(answer, skipped)| proto::QueryResult {
                hits: answer
                    .hits
                    .iter()
                    .map(|h| proto::Hit {
                        match_id: ids.next().map(|id| id.to_string()).unwrap_or_default(),
                        ..wire::hit(h)
                    })
                    .collect(),
                skipped: skipped.clone(),
                allowlisted: answer.allowlisted.iter().map(|s| s.to_string()).collect(),
            })
            .collect())
    }

    /// Records hits (what reporting and feedback need, never the query)
    /// for `client`; with no client, records nothing.
    fn record(db: &Database, hits: &[&Hit], client: Option<&str>) -> Result<Vec<MatchId>, Status> {
        let Some(client) = client else {
            return Ok(Vec::new());
        };
        if hits.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::database::now_ms();
        let records: Vec<MatchRecord> = hits
            .iter()
            .map(|h| MatchRecord {
                entry: h.entry,
                set: h.set.clone(),
                signal_type: h.signal_type.name().to_owned(),
                distance: h.distance,
                time_ms: now,
                client: client.to_owned(),
                feedback: None,
            })
            .collect();
        db.record_matches(records).map_err(internal)
    }

    /// Runs `answer` on the blocking pool.
    async fn answer_blocking(
        &self,
        queries: Vec<proto::Query>,
        client: Option<String>,
    ) -> Result<Vec<proto::QueryResult>, Status> {
        let (db, metrics, floor) = (self.db.clone(), self.metrics.clone(), self.quality_floor);
        // One cheap query is answered right here: handing it to another
        // thread costs about as much as the lookup (measured: p50 0.38 vs
        // 0.42 ms per call over loopback mTLS at 1M entries).
        if queries.len() == 1 && cheap(&queries[0], db.store().max_pdq_threshold()) {
            return Self::answer(&db, &metrics, floor, &queries, client.as_deref(), false);
        }
        self.tasks
            .spawn_blocking(move || {
                Self::answer(&db, &metrics, floor, &queries, client.as_deref(), true)
            })
            .await
            .map_err(internal)?
    }
}

/// Reason codes as stored in match records: the enum's name without its
/// prefix, lower case (`benign_collision`).
fn reason_code(reason: proto::FeedbackReason) -> String {
    reason
        .as_str_name()
        .trim_start_matches("FEEDBACK_REASON_")
        .to_ascii_lowercase()
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<proto::MatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Match for MatchService {
    async fn match_hashes(
        &self,
        request: Request<proto::MatchRequest>,
    ) -> Result<Response<proto::MatchResponse>, Status> {
        let started = Instant::now();
        let client = self.recorded_as(&request);
        let request = request.into_inner();
        let result = self
            .answer_blocking(request.queries, client)
            .await
            .map(|results| {
                Response::new(proto::MatchResponse {
                    results,
                    tag: request.tag,
                })
            });
        self.metrics.rpc_result("MatchHashes", started, &result);
        result
    }

    type MatchStreamStream = ResponseStream;

    async fn match_stream(
        &self,
        request: Request<Streaming<proto::MatchRequest>>,
    ) -> Result<Response<Self::MatchStreamStream>, Status> {
        let client = self.recorded_as(&request);
        let mut incoming = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<proto::MatchResponse, Status>>(STREAM_IN_FLIGHT * 2);
        let (db, metrics, floor) = (self.db.clone(), self.metrics.clone(), self.quality_floor);
        let tasks = self.tasks.clone();
        // Work of a call in flight: it may finish within the grace period
        // of a stopping node, and ends when the node cuts at the latest.
        self.tasks.clone().spawn_call(async move {
            let in_flight = Arc::new(Semaphore::new(STREAM_IN_FLIGHT));
            loop {
                let next = tokio::select! {
                    next = incoming.next() => next,
                    () = tx.closed() => return,
                };
                let message = match next {
                    None => return,
                    Some(Ok(m)) => m,
                    Some(Err(status)) => {
                        let _ = tx.send(Err(wire::oversized_to_invalid(status))).await;
                        return;
                    }
                };
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    return;
                };
                let (db, metrics, client, tx) =
                    (db.clone(), metrics.clone(), client.clone(), tx.clone());
                let stream_metrics = metrics.clone();
                let blocking = tasks.clone();
                tasks.spawn_call(async move {
                    // The permit is held until the answer is handed to the
                    // call, so a client that stops reading stalls only its
                    // own stream, and never holds a blocking thread.
                    let _permit = permit;
                    let started = Instant::now();
                    let answer = blocking
                        .spawn_blocking(move || {
                            Self::answer(
                                &db,
                                &metrics,
                                floor,
                                &message.queries,
                                client.as_deref(),
                                false,
                            )
                            .map(|results| proto::MatchResponse {
                                results,
                                tag: message.tag,
                            })
                            .map_err(|s| {
                                Status::new(
                                    s.code(),
                                    format!("request {}: {}", message.tag, s.message()),
                                )
                            })
                        })
                        .await
                        .unwrap_or_else(|e| Err(internal(e)));
                    let code = answer
                        .as_ref()
                        .map_or_else(|s| s.code(), |_| tonic::Code::Ok);
                    stream_metrics.rpc("MatchStream", code, started.elapsed());
                    // The receiver is gone only when the call is.
                    let _ = tx.send(answer).await;
                });
            }
        });
        // tonic ends the call at the first error it is handed: one failed
        // request ends the stream (gRPC has no per-message status).
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn match_image(
        &self,
        request: Request<proto::MatchImageRequest>,
    ) -> Result<Response<proto::MatchImageResponse>, Status> {
        let started = Instant::now();
        let client = self.recorded_as(&request);
        let request = request.into_inner();
        let result = self.image(request, client).await;
        self.metrics.rpc_result("MatchImage", started, &result);
        result.map(Response::new)
    }

    async fn feedback(
        &self,
        request: Request<proto::FeedbackRequest>,
    ) -> Result<Response<proto::FeedbackResponse>, Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = self.feedback_blocking(request).await;
        self.metrics.rpc_result("Feedback", started, &result);
        result.map(Response::new)
    }
}

impl MatchService {
    async fn image(
        &self,
        request: proto::MatchImageRequest,
        client: Option<String>,
    ) -> Result<proto::MatchImageResponse, Status> {
        if request.image.len() > MAX_IMAGE_BYTES {
            self.metrics
                .error(Kind::Image, ErrorReason::InvalidArgument);
            return Err(Status::invalid_argument(format!(
                "image is {} bytes, over the limit of {MAX_IMAGE_BYTES}",
                request.image.len()
            )));
        }
        let _permit = self.images.acquire().await.map_err(internal)?;
        let (db, metrics) = (self.db.clone(), self.metrics.clone());
        let floor = request.quality_floor.unwrap_or(self.quality_floor);
        self.tasks
            .spawn_blocking(move || {
                let started = Instant::now();
                let options = HashOptions {
                    decode: DecodeOptions {
                        limits: DecodeLimits {
                            max_bytes: MAX_IMAGE_BYTES,
                            ..DecodeLimits::default()
                        },
                        ..DecodeOptions::default()
                    },
                    dihedral: request.dihedral,
                    ..HashOptions::default()
                };
                let hashes =
                    hash_image(&request.image, &options, &mut PdqHasher::new()).map_err(|e| {
                        metrics.error(Kind::Image, ErrorReason::InvalidArgument);
                        Status::invalid_argument(format!("image: {e}"))
                    })?;
                let matched = match db.match_image(&hashes, request.radius, floor) {
                    Ok(m) => m,
                    Err(MatchError::Store(e)) => {
                        metrics.error(Kind::Image, ErrorReason::Internal);
                        return Err(internal(e));
                    }
                    Err(e) => {
                        metrics.error(Kind::Image, ErrorReason::InvalidArgument);
                        return Err(Status::invalid_argument(e.to_string()));
                    }
                };
                metrics.query(Kind::Image, started.elapsed(), !matched.hits.is_empty());
                if !matched.allowlisted.is_empty() {
                    metrics.allowlisted(Kind::Image);
                }
                let refs: Vec<&Hit> = matched.hits.iter().collect();
                let mut ids = Self::record(&db, &refs, client.as_deref())?.into_iter();
                Ok(proto::MatchImageResponse {
                    hits: matched
                        .hits
                        .iter()
                        .map(|h| proto::Hit {
                            match_id: ids.next().map(|id| id.to_string()).unwrap_or_default(),
                            ..wire::hit(h)
                        })
                        .collect(),
                    hashes: Some(wire::image_hashes(&hashes)),
                    pdq_skipped: matched.pdq_skipped.unwrap_or_default(),
                    allowlisted: matched.allowlisted.iter().map(|s| s.to_string()).collect(),
                })
            })
            .await
            .map_err(internal)?
    }

    async fn feedback_blocking(
        &self,
        request: proto::FeedbackRequest,
    ) -> Result<proto::FeedbackResponse, Status> {
        let id: MatchId = request
            .match_id
            .parse()
            .map_err(|e: String| Status::invalid_argument(format!("match_id: {e}")))?;
        let verdict = wire::verdict_from(request.verdict).map_err(Status::invalid_argument)?;
        let reason = match proto::FeedbackReason::try_from(request.reason) {
            Ok(proto::FeedbackReason::Unspecified) | Err(_) => {
                return Err(Status::invalid_argument(
                    "reason must be one of FeedbackReason's codes",
                ))
            }
            Ok(r) => reason_code(r),
        };
        let feedback = Feedback {
            verdict,
            reason,
            time_ms: crate::database::now_ms(),
        };
        let db = self.db.clone();
        let record = self
            .tasks
            .spawn_blocking(move || db.give_feedback(&id, feedback))
            .await
            .map_err(internal)?;
        use crate::store::matches::FeedbackError as E;
        match record {
            Ok(record) => {
                self.metrics.feedback(verdict);
                Ok(proto::FeedbackResponse {
                    entry_id: record.entry.to_string(),
                    set: record.set.to_string(),
                })
            }
            Err(e @ E::UnknownMatch(_)) => Err(Status::not_found(e.to_string())),
            Err(e @ E::AlreadyGiven(_)) => Err(Status::already_exists(e.to_string())),
            Err(E::Store(e)) => Err(internal(e)),
        }
    }
}
