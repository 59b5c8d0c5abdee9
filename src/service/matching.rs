//! The match service: batches of hashes from local services, answered from
//! the database's indexes.
//!
//! Malformed queries fail the whole call with `INVALID_ARGUMENT` naming the
//! query, so a client bug is loud; a well-formed PDQ hash under the quality
//! floor is answered with `skipped`, because that is a property of the
//! image, not a bug. Nothing about a query is stored or logged.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::proto::{self, match_server::Match};
use crate::database::{Database, Match as Hit, MatchError, PdqQuery};
use crate::model::{Signal, SignalType};
use crate::signal::pdq::PdqHash;

/// Most queries in one call.
pub const MAX_BATCH: usize = 1024;

/// The match service over one database.
pub struct MatchService {
    db: Arc<Database>,
}

impl MatchService {
    /// Serves `db`.
    pub fn new(db: Arc<Database>) -> Self {
        MatchService { db }
    }
}

/// Why one query could not be answered.
enum Failure {
    /// The caller sent something malformed.
    Invalid(String),
    /// The node failed.
    Internal(String),
}

impl From<&str> for Failure {
    fn from(m: &str) -> Self {
        Failure::Invalid(m.to_owned())
    }
}

impl From<MatchError> for Failure {
    fn from(e: MatchError) -> Self {
        match e {
            MatchError::Store(e) => Failure::Internal(e.to_string()),
            other => Failure::Invalid(other.to_string()),
        }
    }
}

/// The wire signal type to ours.
fn signal_of(s: &proto::Signal) -> Result<Signal, String> {
    use proto::SignalType as W;
    let kind = match W::try_from(s.r#type) {
        Ok(W::Pdq) => SignalType::Pdq,
        Ok(W::Md5) => SignalType::Md5,
        Ok(W::Sha1) => SignalType::Sha1,
        Ok(W::Sha256) => SignalType::Sha256,
        Ok(W::Blake3) => SignalType::Blake3,
        Ok(W::Opaque) => SignalType::parse(&s.opaque_type).map_err(|e| e.to_string())?,
        _ => return Err(format!("unknown signal type {}", s.r#type)),
    };
    Signal::from_bytes(kind, s.value.clone()).map_err(|e| e.to_string())
}

fn wire_type(kind: &SignalType) -> i32 {
    use proto::SignalType as W;
    (match kind {
        SignalType::Pdq => W::Pdq,
        SignalType::Md5 => W::Md5,
        SignalType::Sha1 => W::Sha1,
        SignalType::Sha256 => W::Sha256,
        SignalType::Blake3 => W::Blake3,
        SignalType::Opaque(_) => W::Opaque,
    }) as i32
}

fn hit(m: Hit) -> proto::Hit {
    proto::Hit {
        entry_id: m.entry.to_string(),
        set: m.set.to_string(),
        origin: m.origin,
        r#type: wire_type(&m.signal_type),
        labels: m.labels,
        distance: m.distance,
        variant: m.variant as u32,
    }
}

impl MatchService {
    fn one(&self, q: &proto::Query) -> Result<proto::QueryResult, Failure> {
        let signal = signal_of(q.signal.as_ref().ok_or("no signal")?).map_err(Failure::Invalid)?;
        let Some(hash) = signal.as_pdq() else {
            if !q.pdq_variants.is_empty() || q.quality.is_some() || q.radius.is_some() {
                return Err(Failure::Invalid(
                    "variants, quality and radius apply to PDQ only".into(),
                ));
            }
            let hits = self.db.match_exact(&signal)?;
            return Ok(proto::QueryResult {
                hits: hits.into_iter().map(hit).collect(),
                skipped: String::new(),
            });
        };
        let mut hashes = vec![hash];
        for v in &q.pdq_variants {
            let bytes: [u8; 32] = v.as_slice().try_into().map_err(|_| {
                Failure::Invalid(format!("PDQ variant must be 32 bytes, got {}", v.len()))
            })?;
            hashes.push(PdqHash::from_bytes(bytes));
        }
        let mut query = PdqQuery::new(&hashes);
        query.quality = q.quality;
        query.radius = q.radius;
        match self.db.match_pdq(&query) {
            Ok(hits) => Ok(proto::QueryResult {
                hits: hits.into_iter().map(hit).collect(),
                skipped: String::new(),
            }),
            Err(e @ MatchError::LowQuality { .. }) => Ok(proto::QueryResult {
                hits: Vec::new(),
                skipped: e.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

#[tonic::async_trait]
impl Match for MatchService {
    async fn match_hashes(
        &self,
        request: Request<proto::MatchRequest>,
    ) -> Result<Response<proto::MatchResponse>, Status> {
        let queries = request.into_inner().queries;
        if queries.is_empty() || queries.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "a call carries 1 to {MAX_BATCH} queries, got {}",
                queries.len()
            )));
        }
        let mut results = Vec::with_capacity(queries.len());
        for (i, q) in queries.iter().enumerate() {
            let result = self.one(q).map_err(|f| match f {
                Failure::Invalid(m) => Status::invalid_argument(format!("query {i}: {m}")),
                Failure::Internal(m) => {
                    tracing::error!(error = %m, "match failed");
                    Status::internal("the node could not read its database")
                }
            })?;
            results.push(result);
        }
        Ok(Response::new(proto::MatchResponse { results }))
    }
}
