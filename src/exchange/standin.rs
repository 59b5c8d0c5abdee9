//! A local stand-in for NCMEC's Hash Sharing v2 API, for `hashfed demo`
//! and `hashfed-bench exchange`: a "hotline API" on 127.0.0.1 that a node
//! pulls from exactly as from NCMEC's (real HTTPS, real HTTP/1.1, the same
//! paths, XML and paging as [`super::ncmec`] reads), so that the demo can
//! show a live exchange and the benchmark can time one, with nothing
//! outside the machine.
//!
//! It serves what the public description shows (see [`super::ncmec`]):
//! HTTP Basic auth on every request (401 otherwise); `GET v2/status`;
//! `GET v2/members`; `GET v2/entries?from=&to=`, answered in row order in
//! pages of `page_size` with `<paging><next>` links carrying `start`,
//! `size` and `max` (the range's last row as of its first page, so rows
//! changed while a range is paged come in a later range, none is
//! skipped); deletions as `<deletedImage>` tombstones; `GET
//! v2/feedback/{type}/reasons`; and `PUT v2/entries/{esp}/{id}/{type}/
//! feedback`, whose votes it keeps for the caller to read
//! ([`NcmecStandIn::votes`]). Images only, MD5 and PDQ fingerprints.
//!
//! It is not a test double of hashfed's parts and not for production: its
//! TLS is a throwaway CA made at start ([`LoopbackAcceptor`]), its
//! credentials are whatever it is started with, and it keeps everything in
//! memory. The integration tests use stand-ins of their own, which can
//! also misbehave on demand.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ncmec::{base64, format_time, parse_time, xml_escape, NAMESPACE};
use super::ExchangeError;
use crate::config::{ExchangeConfig, ExchangeFilters, ExchangeKind};
use crate::identity::https::LoopbackAcceptor;

/// The stand-in's member id and name (`GET v2/status`): who the node is
/// to it, and the member every entry is published by.
pub const MEMBER: (u32, &str) = (1, "Local Hotline");

/// The reasons offered for negative feedback (guid, name), for every
/// fingerprint type.
pub const REASONS: [(&str, &str); 2] = [
    ("7d3c5e9a-0000-4000-8000-000000000001", "Benign Collision"),
    ("7d3c5e9a-0000-4000-8000-000000000002", "Not CSAM"),
];

/// Largest request body read (a feedback vote is a few hundred bytes).
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Time a client has to send a request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One entry to list: its fingerprints (element name as NCMEC's XML has
/// it, `md5` or `pdq`, and the value in hex) and its classification
/// (`A1`, `B2`, ...; the node keeps it as a label).
#[derive(Clone, Debug)]
pub struct Listing {
    /// `(element, hex value)` pairs.
    pub fingerprints: Vec<(String, String)>,
    /// NCMEC's classification, if any.
    pub classification: Option<String>,
}

/// A vote the stand-in received (`PUT v2/entries/{esp}/{id}/{type}/
/// feedback`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vote {
    /// The ESP id in the path.
    pub esp: String,
    /// The entry id in the path.
    pub entry: String,
    /// The fingerprint type in the path (`PDQ`, `MD5`).
    pub fingerprint: String,
    /// `<affirmative/>` (else `<negative>`).
    pub affirmative: bool,
    /// The negative vote's reason guids.
    pub reasons: Vec<String>,
}

/// What an entry's fingerprints come from.
enum Source {
    /// Made from the entry's number: see [`synthetic_pdq`].
    Synthetic,
    /// Given by the caller.
    Listed(Box<Listing>),
}

struct Row {
    ts: i64,
    seq: u64,
    deleted: bool,
    source: Source,
}

struct Catalogue {
    /// `Basic ...` as the client must send it.
    authorization: String,
    page_size: usize,
    /// Entry number (its id) → row.
    rows: Vec<Row>,
    /// Sequence → entry number: the order pages come in.
    by_seq: BTreeMap<u64, usize>,
    seq: u64,
    votes: Vec<Vote>,
    entries_requests: u64,
}

/// A running stand-in; stops when dropped or with [`NcmecStandIn::stop`].
pub struct NcmecStandIn {
    addr: SocketAddr,
    ca_pem: String,
    /// What it takes, for [`NcmecStandIn::configure`].
    user: String,
    password: String,
    catalogue: Arc<Mutex<Catalogue>>,
    closing: CancellationToken,
    served: TaskTracker,
}

impl std::fmt::Debug for NcmecStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcmecStandIn")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for NcmecStandIn {
    fn drop(&mut self) {
        self.closing.cancel();
    }
}

impl NcmecStandIn {
    /// Starts a stand-in on 127.0.0.1 (an ephemeral port) that takes
    /// `user`/`password` and answers entries in pages of `page_size`.
    pub async fn start(
        user: &str,
        password: &str,
        page_size: usize,
    ) -> Result<NcmecStandIn, ExchangeError> {
        let tls = LoopbackAcceptor::new().map_err(ExchangeError::Tls)?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| ExchangeError::Transport(format!("binding the stand-in: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ExchangeError::Transport(format!("the stand-in's address: {e}")))?;
        let catalogue = Arc::new(Mutex::new(Catalogue {
            authorization: format!("Basic {}", base64(format!("{user}:{password}").as_bytes())),
            page_size: page_size.max(1),
            rows: Vec::new(),
            by_seq: BTreeMap::new(),
            seq: 0,
            votes: Vec::new(),
            entries_requests: 0,
        }));
        let (closing, served) = (CancellationToken::new(), TaskTracker::new());
        let ca_pem = tls.ca_pem().to_owned();
        served.spawn(accept(
            listener,
            tls,
            catalogue.clone(),
            closing.clone(),
            served.clone(),
        ));
        Ok(NcmecStandIn {
            addr,
            ca_pem,
            user: user.to_owned(),
            password: password.to_owned(),
            catalogue,
            closing,
            served,
        })
    }

    /// The API's root, for the exchange's `endpoint`.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}/hashsharing", self.addr.port())
    }

    /// Its CA certificate (PEM), for the exchange's `ca_file`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// An exchange of the node in `dir` that pulls from this stand-in
    /// into `set`, named `name`: its CA certificate and credentials file
    /// (owner-only, as the node demands) written into `dir` as
    /// `<name>-ca.pem` and `<name>-credentials.toml`.
    pub fn configure(
        &self,
        dir: &Path,
        name: &str,
        set: &str,
    ) -> Result<ExchangeConfig, ExchangeError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |e: std::io::Error| ExchangeError::Config(format!("{}: {e}", path.display()))
        };
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, &self.ca_pem).map_err(io(&ca))?;
        let credentials = dir.join(format!("{name}-credentials.toml"));
        let text = toml::to_string(&BTreeMap::from([
            ("user", self.user.as_str()),
            ("password", self.password.as_str()),
        ]))
        .map_err(|e| ExchangeError::Config(format!("credentials: {e}")))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&credentials)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(io(&credentials))?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        Ok(ExchangeConfig {
            kind: ExchangeKind::Ncmec,
            name: name.to_owned(),
            set: set.to_owned(),
            endpoint: self.endpoint(),
            credentials: path(&credentials),
            interval_secs: 300,
            ca_file: Some(path(&ca)),
            timeout_secs: 30,
            page_size: u32::try_from(self.lock().page_size).unwrap_or(u32::MAX),
            filters: ExchangeFilters::default(),
        })
    }

    /// Lists `listing` as published at `at` (Unix seconds); its entry id.
    pub fn list(&self, listing: Listing, at: i64) -> u64 {
        let mut c = self.lock();
        let id = c.rows.len();
        c.push(at, Source::Listed(Box::new(listing)));
        id as u64
    }

    /// Lists `n` entries with fingerprints made from their ids
    /// ([`synthetic_pdq`], [`synthetic_md5`]), published at `at`; the
    /// first one's id.
    pub fn list_synthetic(&self, n: u64, at: i64) -> u64 {
        let mut c = self.lock();
        let first = c.rows.len() as u64;
        for _ in 0..n {
            c.push(at, Source::Synthetic);
        }
        first
    }

    /// Deletes entry `id` at `at` (it comes again, as a tombstone);
    /// whether it was listed and live.
    pub fn delete(&self, id: u64, at: i64) -> bool {
        let mut c = self.lock();
        let Some(row) = usize::try_from(id).ok().filter(|i| *i < c.rows.len()) else {
            return false;
        };
        if c.rows[row].deleted {
            return false;
        }
        let old = c.rows[row].seq;
        c.by_seq.remove(&old);
        c.seq += 1;
        let seq = c.seq;
        c.by_seq.insert(seq, row);
        let r = &mut c.rows[row];
        (r.ts, r.seq, r.deleted) = (at, seq, true);
        true
    }

    /// The live entries as one NCMEC XML document, written to `out` as
    /// they are rendered: what a hotline would import as a file (the
    /// benchmark's yardstick for the same list fetched page by page).
    pub fn write_document(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let c = self.lock();
        let live = c.rows.iter().filter(|r| !r.deleted).count();
        write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<queryResult xmlns=\"{NAMESPACE}\"><images count=\"{live}\">"
        )?;
        let mut chunk = String::new();
        for (n, row) in c.rows.iter().enumerate().filter(|(_, r)| !r.deleted) {
            write_row(&mut chunk, n, row);
            if chunk.len() > 1 << 20 {
                out.write_all(chunk.as_bytes())?;
                chunk.clear();
            }
        }
        out.write_all(chunk.as_bytes())?;
        out.write_all(b"</images><videos count=\"0\"/></queryResult>\n")
    }

    /// How many entries are listed and not deleted.
    pub fn live(&self) -> usize {
        self.lock().rows.iter().filter(|r| !r.deleted).count()
    }

    /// The votes received so far, in order.
    pub fn votes(&self) -> Vec<Vote> {
        self.lock().votes.clone()
    }

    /// How many `v2/entries` requests it answered (pages).
    pub fn entries_requests(&self) -> u64 {
        self.lock().entries_requests
    }

    /// Stops accepting, closes the connections, and waits for them.
    pub async fn stop(self) {
        self.closing.cancel();
        self.served.close();
        self.served.wait().await;
    }

    fn lock(&self) -> MutexGuard<'_, Catalogue> {
        lock(&self.catalogue)
    }
}

/// The catalogue, even after a panic elsewhere held its lock (its rows
/// are only ever changed whole).
fn lock(c: &Mutex<Catalogue>) -> MutexGuard<'_, Catalogue> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The PDQ hash of synthetic entry `id` (seeded random bits).
pub fn synthetic_pdq(id: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix(id.wrapping_mul(4).wrapping_add(i as u64)).to_le_bytes());
    }
    out
}

/// The MD5 of synthetic entry `id` (seeded random bits, another stream).
pub fn synthetic_md5(id: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (a, b) = (splitmix(!id), splitmix(!id ^ 0x5555_5555));
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

impl Catalogue {
    fn push(&mut self, ts: i64, source: Source) {
        self.seq += 1;
        let row = self.rows.len();
        self.by_seq.insert(self.seq, row);
        self.rows.push(Row {
            ts,
            seq: self.seq,
            deleted: false,
            source,
        });
    }

    fn answer(&mut self, method: &Method, path_and_query: &str, body: &[u8]) -> Reply {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let Some(route) = path.strip_prefix("/hashsharing/") else {
            return Reply::text(StatusCode::NOT_FOUND, "no such environment");
        };
        let parts: Vec<&str> = route.split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, ["v2", "status"]) => Reply::xml(format!(
                "<status xmlns=\"{NAMESPACE}\"><ipAddress>127.0.0.1</ipAddress>\
                 <username>stand-in</username><member id=\"{}\">{}</member></status>",
                MEMBER.0, MEMBER.1
            )),
            (&Method::GET, ["v2", "members"]) => Reply::xml(format!(
                "<members xmlns=\"{NAMESPACE}\"><member id=\"{}\">{}</member></members>",
                MEMBER.0, MEMBER.1
            )),
            (&Method::GET, ["v2", "feedback", kind, "reasons"]) => {
                let mut out = format!("<availableFeedbackReasons xmlns=\"{NAMESPACE}\">");
                for (guid, name) in REASONS {
                    let _ = write!(
                        out,
                        "<reason guid=\"{guid}\" name=\"{name}\" type=\"{}\"/>",
                        xml_escape(kind)
                    );
                }
                out.push_str("</availableFeedbackReasons>");
                Reply::xml(out)
            }
            (&Method::PUT, ["v2", "entries", esp, entry, kind, "feedback"]) => {
                match vote(esp, entry, kind, body) {
                    Some(v) => {
                        self.votes.push(v);
                        Reply::xml(format!("<submissionResult xmlns=\"{NAMESPACE}\"/>"))
                    }
                    None => Reply::text(StatusCode::BAD_REQUEST, "not a feedback submission"),
                }
            }
            (&Method::GET, ["v2", "entries"]) => self.entries(query),
            _ => Reply::text(StatusCode::NOT_FOUND, "no such page"),
        }
    }

    /// One page of `v2/entries`: see the module documentation.
    fn entries(&mut self, query: &str) -> Reply {
        self.entries_requests += 1;
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| super::text::percent_decode(v))
        };
        let (Some(from), Some(to)) = (
            param("from").as_deref().and_then(parse_time),
            param("to").as_deref().and_then(parse_time),
        ) else {
            return Reply::text(StatusCode::BAD_REQUEST, "from and to are required");
        };
        let size = param("size")
            .and_then(|s| s.parse().ok())
            .unwrap_or(self.page_size)
            .clamp(1, 10_000);
        let in_range = |r: &Row| r.ts >= from && r.ts <= to;
        let (start, max) = match (param("start"), param("max")) {
            (Some(s), Some(m)) => match (s.parse::<u64>(), m.parse::<u64>()) {
                (Ok(s), Ok(m)) => (s, m),
                _ => return Reply::text(StatusCode::BAD_REQUEST, "bad paging"),
            },
            _ => {
                let max = self
                    .by_seq
                    .iter()
                    .rev()
                    .find(|(_, row)| in_range(&self.rows[**row]))
                    .map_or(0, |(seq, _)| *seq);
                (1, max)
            }
        };
        let mut page: Vec<(usize, &Row)> = Vec::with_capacity(size);
        let mut more = false;
        if start <= max {
            for (_, &n) in self.by_seq.range(start..=max) {
                let row = &self.rows[n];
                if !in_range(row) {
                    continue;
                }
                if page.len() == size {
                    more = true;
                    break;
                }
                page.push((n, row));
            }
        }
        let next = more.then(|| {
            let after = page.last().map_or(start, |(_, r)| r.seq + 1);
            let t = |unix: i64| format_time(unix).replace(':', "%3A");
            format!(
                "/v2/entries?from={}&amp;to={}&amp;start={after}&amp;size={size}&amp;max={max}",
                t(from),
                t(to)
            )
        });
        Reply::xml(entries_xml(&page, next.as_deref()))
    }
}

/// A `<queryResult>` of `page`'s rows (entry number, row) and, if more,
/// the `next` link (already escaped for XML).
fn entries_xml(page: &[(usize, &Row)], next: Option<&str>) -> String {
    let mut out = String::with_capacity(96 + page.len() * 320);
    let _ = write!(out, "<queryResult xmlns=\"{NAMESPACE}\">");
    match page.iter().map(|(_, r)| r.ts).max() {
        None => out.push_str("<images count=\"0\"/>"),
        Some(latest) => {
            let _ = write!(
                out,
                "<images count=\"{}\" maxTimestamp=\"{}\">",
                page.len(),
                format_time(latest)
            );
            for (n, row) in page {
                write_row(&mut out, *n, row);
            }
            out.push_str("</images>");
        }
    }
    out.push_str("<videos count=\"0\"/>");
    if let Some(next) = next {
        let _ = write!(out, "<paging><next>{next}</next></paging>");
    }
    out.push_str("</queryResult>");
    out
}

/// One `<image>` (or `<deletedImage>`) element.
fn write_row(out: &mut String, n: usize, row: &Row) {
    let element = if row.deleted { "deletedImage" } else { "image" };
    let _ = write!(
        out,
        "<{element}><member id=\"{}\">{}</member><timestamp>{}</timestamp><id>{n}</id>",
        MEMBER.0,
        MEMBER.1,
        format_time(row.ts)
    );
    if !row.deleted {
        write_fingerprints(out, n as u64, &row.source);
    }
    let _ = write!(out, "</{element}>");
}

fn write_fingerprints(out: &mut String, id: u64, source: &Source) {
    match source {
        Source::Synthetic => {
            let _ = write!(
                out,
                "<classification>A1</classification><fingerprints><md5>{}</md5><pdq>{}</pdq></fingerprints>",
                hex(&synthetic_md5(id)),
                hex(&synthetic_pdq(id))
            );
        }
        Source::Listed(listing) => {
            if let Some(c) = &listing.classification {
                let _ = write!(out, "<classification>{}</classification>", xml_escape(c));
            }
            out.push_str("<fingerprints>");
            for (kind, value) in &listing.fingerprints {
                let kind = xml_escape(kind);
                let _ = write!(out, "<{kind}>{}</{kind}>", xml_escape(value));
            }
            out.push_str("</fingerprints>");
        }
    }
}

/// The vote in a `<feedbackSubmission>` body, if it is one.
fn vote(esp: &str, entry: &str, kind: &str, body: &[u8]) -> Option<Vote> {
    let text = std::str::from_utf8(body).ok()?;
    if !text.contains("<feedbackSubmission") {
        return None;
    }
    let affirmative = text.contains("<affirmative");
    let mut reasons = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("<guid>") {
        let after = &rest[at + "<guid>".len()..];
        let end = after.find("</guid>")?;
        reasons.push(after[..end].trim().to_owned());
        rest = &after[end..];
    }
    // An affirmative vote carries no reasons; a negative one at least one.
    let consistent = if affirmative {
        reasons.is_empty()
    } else {
        !reasons.is_empty()
    };
    if !consistent {
        return None;
    }
    let decode = |s: &str| super::text::percent_decode(s).unwrap_or_else(|| s.to_owned());
    Some(Vote {
        esp: decode(esp),
        entry: decode(entry),
        fingerprint: decode(kind),
        affirmative,
        reasons,
    })
}

/// An answer: status, content type, body.
struct Reply(StatusCode, &'static str, String);

impl Reply {
    fn xml(body: String) -> Reply {
        Reply(
            StatusCode::OK,
            "application/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n{body}"),
        )
    }

    fn text(status: StatusCode, text: &str) -> Reply {
        Reply(status, "text/plain; charset=utf-8", text.to_owned())
    }
}

/// Accepts connections until `closing`, each served as a task of `served`.
async fn accept(
    listener: TcpListener,
    tls: LoopbackAcceptor,
    catalogue: Arc<Mutex<Catalogue>>,
    closing: CancellationToken,
    served: TaskTracker,
) {
    loop {
        let tcp = tokio::select! {
            () = closing.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    tracing::debug!(%error, "stand-in: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (tls, catalogue, closing) = (tls.clone(), catalogue.clone(), closing.clone());
        served.spawn(async move {
            tokio::select! {
                () = closing.cancelled() => {}
                () = serve(tcp, tls, catalogue) => {}
            }
        });
    }
}

/// One connection: its requests in turn (keep-alive).
async fn serve(
    tcp: tokio::net::TcpStream,
    tls: LoopbackAcceptor,
    catalogue: Arc<Mutex<Catalogue>>,
) {
    let stream = match tls.accept(tcp).await {
        Ok(s) => s,
        Err(error) => {
            tracing::debug!(error = %error, "stand-in: handshake failed");
            return;
        }
    };
    let service = service_fn(move |request: Request<Incoming>| {
        let catalogue = catalogue.clone();
        async move { Ok::<_, Infallible>(respond(request, &catalogue).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "stand-in: connection ended");
    }
}

async fn respond(
    request: Request<Incoming>,
    catalogue: &Mutex<Catalogue>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return response(Reply::text(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let authorised = {
        let c = lock(catalogue);
        parts
            .headers
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == c.authorization.as_bytes())
    };
    if !authorised {
        let mut r = response(Reply::text(StatusCode::UNAUTHORIZED, "Unauthorized"));
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"hashsharing\""),
        );
        return r;
    }
    let reply = lock(catalogue).answer(&parts.method, &target, &body);
    response(reply)
}

fn response(Reply(status, content_type, body): Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::exchange::{Client, OutgoingFeedback};
    use crate::import::ImportOp;
    use crate::model::{Signal, Verdict};

    /// The node's own NCMEC client reads the stand-in: every entry, in
    /// pages, then a deletion in a later range, and a vote.
    #[tokio::test]
    async fn the_ncmec_client_reads_it_whole() {
        let api = NcmecStandIn::start("esp", "pass word", 1000).await.unwrap();
        let now = Arc::new(AtomicI64::new(1_700_000_000));
        let t0 = now.load(Ordering::SeqCst);
        api.list_synthetic(2_500, t0 - 3_600);
        let listed = api.list(
            Listing {
                fingerprints: vec![("md5".into(), "00".repeat(16))],
                classification: Some("B2".into()),
            },
            t0 - 3_600,
        );
        let tmp = tempfile::tempdir().unwrap();
        let config = api.configure(tmp.path(), "ncmec", "node/ncmec").unwrap();
        let Client::Ncmec(client) = Client::for_node(tmp.path(), &config).unwrap() else {
            panic!("not an NCMEC client");
        };
        let clock = now.clone();
        let mut client = client.with_clock(move || clock.load(Ordering::SeqCst));
        let (mut cursor, mut adds, mut deletes, mut pages) = (String::new(), 0, 0, 0);
        let mut drain = async |cursor: &mut String, adds: &mut usize, deletes: &mut usize| loop {
            let page = client.fetch(cursor).await.unwrap();
            assert!(page.skipped.is_empty(), "{:?}", page.skipped);
            for item in &page.items {
                match item.op {
                    ImportOp::Add { .. } => *adds += 1,
                    _ => *deletes += 1,
                }
            }
            *cursor = page.cursor;
            pages += 1;
            if !page.more {
                return;
            }
        };
        drain(&mut cursor, &mut adds, &mut deletes).await;
        // 2,500 entries of two fingerprints, one of one.
        assert_eq!((adds, deletes), (5_001, 0));
        assert!(api.entries_requests() >= 3);

        now.fetch_add(60, Ordering::SeqCst);
        assert!(api.delete(listed, now.load(Ordering::SeqCst) - 40));
        assert!(!api.delete(listed, now.load(Ordering::SeqCst) - 40));
        drain(&mut cursor, &mut adds, &mut deletes).await;
        assert_eq!((adds, deletes), (5_001, 1));
        assert_eq!(api.live(), 2_500);

        // The same list as a file reads as the same records.
        let mut file = Vec::new();
        api.write_document(&mut file).unwrap();
        let records: Vec<_> = crate::import::parse(crate::import::Format::NcmecXml, &file[..])
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 5_000);

        let mut client = Client::for_node(tmp.path(), &config).unwrap();
        let feedback = OutgoingFeedback {
            external_id: format!("ncmec:{}:7", MEMBER.0),
            signal: Signal::from_bytes(crate::model::SignalType::Pdq, synthetic_pdq(7).to_vec())
                .unwrap(),
            verdict: Verdict::FalsePositive,
            reason: "benign_collision".into(),
        };
        client.send_feedback(&feedback).await.unwrap();
        assert_eq!(
            api.votes(),
            vec![Vote {
                esp: MEMBER.0.to_string(),
                entry: "7".into(),
                fingerprint: "PDQ".into(),
                affirmative: false,
                reasons: vec![REASONS[0].0.into()],
            }]
        );
        api.stop().await;
    }

    #[test]
    fn votes_are_read_or_refused() {
        let ok = b"<feedbackSubmission xmlns=\"x\"><affirmative/></feedbackSubmission>";
        assert!(vote("1", "2", "MD5", ok).unwrap().affirmative);
        assert_eq!(vote("1", "2", "MD5", b"<other/>"), None);
        assert_eq!(vote("1", "2", "MD5", b"<feedbackSubmission><guid>x"), None);
        assert_eq!(vote("1", "2", "MD5", &[0xff, 0xfe]), None);
    }
}
