//! The wire: the types generated from `proto/hashfed/v1/` and every
//! conversion between them and the library's own, for the services, the
//! federation and the CLI alike. Everything that comes off the wire is
//! checked here and refused with a message that names what is wrong.
//! Nothing below this layer (store, database, operations) sees a proto
//! type.

pub mod federation;

use tonic::{Request, Status};

/// Types generated from `proto/hashfed/v1/*.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    tonic::include_proto!("hashfed.v1");

    /// The compiled schema, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/hashfed_descriptors.bin"));
}

/// Largest message the admin and federation services accept (a batch of
/// 1024 PDQ queries with all variants is about 300 KiB; import chunks are
/// sent in pieces of 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

use crate::database::Match;
use crate::model::{Signal, SignalType, Verdict};
use crate::signal::content::ImageHashes;
use crate::store::StoredEntry;

/// The wire signal to ours.
pub fn signal_from(s: &proto::Signal) -> Result<Signal, String> {
    Signal::from_bytes(signal_type_from(s)?, s.value.clone()).map_err(|e| e.to_string())
}

/// The signal type `s` names, whatever its value: what a malformed value
/// is counted under (the caller named the type; only the value is wrong).
pub fn signal_type_from(s: &proto::Signal) -> Result<SignalType, String> {
    use proto::SignalType as W;
    Ok(match W::try_from(s.r#type) {
        Ok(W::Pdq) => SignalType::Pdq,
        Ok(W::Md5) => SignalType::Md5,
        Ok(W::Sha1) => SignalType::Sha1,
        Ok(W::Sha256) => SignalType::Sha256,
        Ok(W::Blake3) => SignalType::Blake3,
        Ok(W::Opaque) => SignalType::parse(&s.opaque_type).map_err(|e| e.to_string())?,
        _ => return Err(format!("unknown signal type {}", s.r#type)),
    })
}

/// The match service's verdict to ours; `UNSPECIFIED` and values this
/// schema does not know are refused.
pub fn verdict_from(v: i32) -> Result<Verdict, String> {
    match proto::Verdict::try_from(v) {
        Ok(proto::Verdict::Confirmed) => Ok(Verdict::Confirmed),
        Ok(proto::Verdict::FalsePositive) => Ok(Verdict::FalsePositive),
        Ok(w) => Err(format!(
            "verdict must be CONFIRMED or FALSE_POSITIVE, not {}",
            w.as_str_name()
        )),
        Err(_) => Err(format!(
            "verdict must be CONFIRMED or FALSE_POSITIVE, not {v}"
        )),
    }
}

/// Our signal type to the wire's.
pub fn signal_type(kind: &SignalType) -> i32 {
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

/// Our signal to the wire's.
pub fn signal(s: &Signal) -> proto::Signal {
    proto::Signal {
        r#type: signal_type(s.kind()),
        value: s.value().to_vec(),
        opaque_type: match s.kind() {
            SignalType::Opaque(name) => name.clone(),
            _ => String::new(),
        },
    }
}

/// A match as the match service answers it (its record id filled in later).
pub fn hit(m: &Match) -> proto::Hit {
    proto::Hit {
        entry_id: m.entry.to_string(),
        set: m.set.to_string(),
        origin: m.origin.clone(),
        r#type: signal_type(&m.signal_type),
        labels: m.labels.clone(),
        distance: m.distance,
        variant: m.variant as u32,
        match_id: String::new(),
        external_id: m.external_id.clone().unwrap_or_default(),
    }
}

/// An image's hashes as `hashfed hash` reports them.
pub fn image_hashes(h: &ImageHashes) -> proto::ImageHashes {
    proto::ImageHashes {
        pdq: Some(proto::PdqHash {
            value: h.pdq.hash.to_bytes().to_vec(),
            quality: u32::from(h.pdq.quality),
        }),
        md5: h.exact.md5.to_vec(),
        sha1: h.exact.sha1.to_vec(),
        sha256: h.exact.sha256.to_vec(),
        blake3: h.exact.blake3.to_vec(),
        width: h.width as u32,
        height: h.height as u32,
        format: h.format.to_owned(),
        dihedral: h.dihedral.map(|d| {
            let v = |i: usize| d.hashes[i].to_bytes().to_vec();
            proto::PdqDihedral {
                orig: v(0),
                rot90: v(1),
                rot180: v(2),
                rot270: v(3),
                flipx: v(4),
                flipy: v(5),
                flipplus1: v(6),
                flipminus1: v(7),
            }
        }),
    }
}

/// A set as the admin service lists it.
pub fn set_summary(s: crate::store::SetState) -> proto::SetSummary {
    proto::SetSummary {
        id: s.id().to_string(),
        head_seq: s.head_seq,
        info_json: serde_json::to_string(&s.info).unwrap_or_default(),
        head_digest: s.head_digest,
        matchable: s.matchable,
        suppressed: s.suppressed,
        kind: s.info.kind.name().to_owned(),
    }
}

/// An entry as the admin service shows it.
pub fn entry(e: &StoredEntry, changed: bool) -> proto::Entry {
    proto::Entry {
        id: e.id.to_string(),
        set: e.set.to_string(),
        signal: Some(signal(&e.data.signal)),
        labels: e.data.labels.clone(),
        external_id: e.data.external_id.clone().unwrap_or_default(),
        retracted: e.retracted,
        disabled: e.disabled,
        added_seq: e.added_seq,
        last_seq: e.last_seq,
        time_ms: e.time_ms,
        changed,
        reviewers: e.data.vetting.iter().map(|a| a.reviewer.clone()).collect(),
        held: e.held,
    }
}

/// A pending entry as the admin service returns it.
pub fn pending(p: &crate::store::PendingEntry) -> proto::PendingEntry {
    proto::PendingEntry {
        id: p.id.to_string(),
        set: p.set.to_string(),
        signal: Some(signal(&p.data.signal)),
        labels: p.data.labels.clone(),
        submitter: p.submitter.clone(),
        submitted_ms: p.submitted_ms,
        reviewers: p.data.vetting.iter().map(|a| a.reviewer.clone()).collect(),
        needed: p.needed,
    }
}

/// Who is calling: the fingerprint of the client certificate, or
/// `local-socket` for a caller on the node's Unix socket (trusted by the
/// socket's file permissions).
pub fn caller<T>(request: &Request<T>) -> String {
    match request.peer_certs() {
        Some(certs) => certs.first().map_or_else(
            || "unknown".to_owned(),
            |c| crate::identity::server::fingerprint(c),
        ),
        None => "local-socket".to_owned(),
    }
}

/// Who is acting, for the audit log: `operator:<certificate fingerprint>`
/// on the operator listener, `local-socket` on the admin socket.
pub fn actor<T>(request: &Request<T>) -> String {
    match request.peer_certs() {
        Some(_) => format!("operator:{}", caller(request)),
        None => caller(request),
    }
}

/// An audit event as the admin service returns it.
pub fn audit_record(e: crate::model::audit::AuditEvent) -> proto::AuditRecord {
    proto::AuditRecord {
        seq: e.seq,
        time_ms: e.time_ms,
        actor: e.actor,
        action: serde_json::to_value(e.action)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        subject: e.subject,
        detail: e.detail,
    }
}

/// tonic reports a message over the size limit as `OUT_OF_RANGE`; to a
/// caller it is a bad argument like any other malformed request.
pub fn oversized_to_invalid(status: Status) -> Status {
    if status.code() == tonic::Code::OutOfRange {
        Status::invalid_argument(status.message().to_owned())
    } else {
        status
    }
}

/// The operation's caller as the audit log names it (see [`actor`]).
pub fn ops_actor<T>(request: &Request<T>) -> crate::model::audit::Actor {
    crate::model::audit::Actor::new(actor(request))
}

/// A peer as the admin service shows it.
pub fn peer(v: &crate::peers::PeerView) -> proto::Peer {
    let p = &v.peer;
    proto::Peer {
        name: p.card.name.clone(),
        node_id: p.card.node_id.clone(),
        endpoint: p.card.endpoint.clone(),
        status: p.status.as_str().into(),
        send: p.send.clone(),
        accept: p.accept.clone(),
        open_connections: v.open_connections,
        sync: v.sync.to_string(),
        review: p.review,
    }
}

/// A set's comparison with a peer's copy.
pub fn comparison(c: crate::peers::SetComparison) -> proto::SetComparison {
    proto::SetComparison {
        set: c.set,
        peer: c.peer,
        local_seq: c.local_seq,
        peer_seq: c.peer_seq,
        verdict: c.verdict,
    }
}

/// Feedback an origin received, as the admin service lists it.
pub fn received_feedback(r: crate::store::ReceivedFeedback) -> proto::ReceivedFeedback {
    proto::ReceivedFeedback {
        set: r.note.set.to_string(),
        entry_id: r.note.entry.to_string(),
        verdict: r.note.verdict.as_str().to_owned(),
        reason: r.note.reason,
        time_ms: r.note.time_ms,
        reporter_node_id: r.note.reporter,
        via: r.via,
        verified: r.verified,
    }
}

/// A disputed entry as the admin service lists it.
pub fn dispute(d: crate::store::DisputeView) -> proto::Dispute {
    proto::Dispute {
        entry_id: d.dispute.entry.to_string(),
        set: d.dispute.set.to_string(),
        false_positives: d.dispute.false_positives,
        confirmed: d.dispute.confirmed,
        reporters: d.dispute.reporters,
        last_ms: d.dispute.last_ms,
        reviewed_ms: d.dispute.reviewed_ms,
        threshold: d.threshold,
        raised: d.raised,
        retracted: d.retracted,
    }
}

/// An import's summary as the admin service returns it.
pub fn import_summary(s: crate::import::ImportSummary) -> proto::ImportSummary {
    proto::ImportSummary {
        format: s.format,
        records: s.records,
        added: s.added,
        updated: s.updated,
        unchanged: s.unchanged,
        retracted: s.retracted,
        not_found: s.not_found,
        refused: s.refused,
        problems: s.problems,
        stopped: s.stopped,
        head_seq: s.head_seq,
    }
}

/// An exchange and its state to the wire's.
pub fn exchange_status(
    config: &crate::config::ExchangeConfig,
    state: &crate::model::exchange::ExchangeState,
) -> proto::ExchangeStatus {
    proto::ExchangeStatus {
        name: config.name.clone(),
        kind: config.kind.name().to_owned(),
        set: config.set.clone(),
        endpoint: config.endpoint.clone(),
        interval_secs: config.interval_secs,
        cursor: state.cursor.clone(),
        last_attempt_ms: state.last_attempt_ms,
        last_success_ms: state.last_success_ms,
        caught_up_ms: state.caught_up_ms,
        last_error: state.last_error.clone(),
        failures: state.failures,
        pages: state.pages,
        added: state.added,
        updated: state.updated,
        unchanged: state.unchanged,
        retracted: state.retracted,
        not_found: state.not_found,
        skipped: state.skipped,
        feedback_sent: state.feedback_sent,
        pages_fetched: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_service_verdicts_parse_and_unknown_ones_are_refused() {
        assert_eq!(
            verdict_from(proto::Verdict::Confirmed as i32),
            Ok(Verdict::Confirmed)
        );
        assert_eq!(
            verdict_from(proto::Verdict::FalsePositive as i32),
            Ok(Verdict::FalsePositive)
        );
        let unspecified = verdict_from(proto::Verdict::Unspecified as i32).unwrap_err();
        assert!(unspecified.contains("VERDICT_UNSPECIFIED"), "{unspecified}");
        let unknown = verdict_from(99).unwrap_err();
        assert!(unknown.contains("99"), "{unknown}");
    }
}
