//! Which peers may connect to the federation listener, changed while the
//! node runs, and the connections they hold.
//!
//! Each peer is trusted through its own node CA (pinned from its peer
//! card), and only that CA: a certificate is accepted if exactly one active
//! peer's CA issued it, and the connection is then known to be that peer's
//! ([`PeerIdentity`]). [`PeerTrust::replace`] swaps the whole set at once;
//! a peer that is suspended, revoked or re-keyed loses its open connections
//! at the same moment, not when they next reconnect: every [`PeerStream`]
//! holds a cancellation token registered under its peer, and a cancelled
//! stream fails its reads and writes, so hyper closes the connection and
//! every call on it.
//!
//! The federation services read who is calling from the request
//! extensions: see [`PeerConnectInfo`].

// The peers' rustls verifiers are this module's concern.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::task::{Context, Poll};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore,
    SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::server::fingerprint;
use super::IdentityError;

/// A peer as TLS sees it: the CA that issues its client certificates, and
/// whether it may connect now. The federation code keeps the full peer
/// records; this is only what the listener needs to admit or refuse.
#[derive(Clone, Debug)]
pub struct TrustedPeer {
    /// The peer's local name: connections are registered, counted and
    /// revoked under it, so it must be unique in a set.
    pub name: String,
    /// The peer's node id, as its peer card gives it.
    pub node_id: String,
    /// The peer's node CA (one PEM certificate), from its peer card.
    pub ca_pem: String,
    /// Whether the peer may connect; a suspended or revoked peer is
    /// `false` (or simply left out of the set).
    pub active: bool,
}

/// Which peer a connection belongs to, as established by its client
/// certificate: the federation services authorise by it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The peer's local name (see [`TrustedPeer::name`]).
    pub name: String,
    /// The peer's node id.
    pub node_id: String,
}

/// What a federation service knows about its caller, put into every
/// request's extensions by tonic (through
/// [`tonic::transport::server::Connected`] on [`PeerStream`]).
///
/// Read it with
///
/// ```ignore
/// let caller = request
///     .extensions()
///     .get::<PeerConnectInfo>()
///     .ok_or_else(|| tonic::Status::unauthenticated("not a peer connection"))?;
/// ```
///
/// tonic 0.14 inserts the `ConnectInfo` of a custom connection type as is
/// (it only wraps it in `TlsConnectInfo` when tonic itself terminates TLS,
/// which the federation listener does not), so `request.remote_addr()` and
/// `request.peer_certs()` return `None` there: use [`PeerConnectInfo::remote`]
/// and [`PeerConnectInfo::fingerprint`] instead.
#[derive(Clone, Debug)]
pub struct PeerConnectInfo {
    /// The peer whose CA issued the caller's certificate.
    pub peer: PeerIdentity,
    /// The caller's address.
    pub remote: Option<SocketAddr>,
    /// [`fingerprint`] of the caller's certificate, to name it in logs and
    /// records.
    pub fingerprint: String,
}

/// An active peer, ready to verify certificates.
struct ActivePeer {
    identity: PeerIdentity,
    /// The CA certificate (DER): a connection survives a [`PeerTrust::replace`]
    /// only while its peer keeps the same CA and node id.
    ca: Vec<u8>,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// An open connection of a peer.
struct Connection {
    /// The peer entry the connection was admitted under.
    peer: Arc<ActivePeer>,
    token: CancellationToken,
}

/// Open connections by peer name, then by connection number.
type Connections = HashMap<String, HashMap<u64, Connection>>;

struct Inner {
    provider: Arc<CryptoProvider>,
    /// The active peers; replaced whole, so a handshake sees one set.
    peers: RwLock<Arc<[Arc<ActivePeer>]>>,
    /// Lock order: `connections` may be held while `peers` is read, never
    /// the other way round.
    connections: Mutex<Connections>,
    next_id: AtomicU64,
}

/// The federation listener's trust: the peers that may connect now, and
/// their open connections. Cloning shares it; the node keeps one and
/// updates it as peers are added, suspended and revoked.
#[derive(Clone)]
pub struct PeerTrust {
    inner: Arc<Inner>,
}

impl Default for PeerTrust {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PeerTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peers = self.snapshot();
        f.debug_struct("PeerTrust")
            .field(
                "active",
                &peers
                    .iter()
                    .map(|p| p.identity.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves the maps consistent
    // (every update is a single insert or removal), so carry on.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The single certificate in `pem` (a peer has exactly one node CA);
/// `what` names it in errors.
pub(super) fn one_certificate(
    pem: &str,
    what: &str,
) -> Result<CertificateDer<'static>, IdentityError> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Certificate(format!("{what}: PEM: {e}")))?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(IdentityError::Certificate(format!(
            "{what}: no certificate in the PEM"
        ))),
        n => Err(IdentityError::Certificate(format!(
            "{what}: the PEM holds {n} certificates, not one"
        ))),
    }
}

/// A client-certificate verifier that trusts `ca` only (chain, validity,
/// client-auth key usage), and the key that identifies `ca` as a trust
/// anchor (subject and public key).
pub(super) fn ca_verifier(
    ca: CertificateDer<'static>,
    provider: &Arc<CryptoProvider>,
    what: &str,
) -> Result<(Vec<u8>, Arc<dyn ClientCertVerifier>), IdentityError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca)
        .map_err(super::tls_error(format!("{what}: CA certificate")))?;
    let anchor = roots
        .roots
        .first()
        .map(|a| [&a.subject[..], &a.subject_public_key_info[..]].concat())
        .ok_or_else(|| IdentityError::Certificate(format!("{what}: CA certificate not usable")))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(super::tls_error(what))?;
    Ok((anchor, verifier))
}

/// The peer among `peers` whose CA verifies the chain, or the most useful
/// reason none does: an error other than "unknown issuer" comes from the
/// CA that did issue the certificate (expired, wrong key usage, ...).
fn find<'p>(
    peers: &'p [Arc<ActivePeer>],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<&'p Arc<ActivePeer>, Error> {
    let mut reason = Error::InvalidCertificate(CertificateError::UnknownIssuer);
    for peer in peers {
        match peer
            .verifier
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(_) => return Ok(peer),
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {}
            Err(e) => reason = e,
        }
    }
    Err(reason)
}

impl PeerTrust {
    /// No peers: every client is refused (`unknown_ca`), as on a node that
    /// has not added any peer yet.
    pub fn new() -> Self {
        PeerTrust {
            inner: Arc::new(Inner {
                provider: Arc::new(rustls::crypto::ring::default_provider()),
                peers: RwLock::new(Arc::from(Vec::new())),
                connections: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    fn snapshot(&self) -> Arc<[Arc<ActivePeer>]> {
        self.inner
            .peers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `peers` the trusted set, at once, and closes every open
    /// connection of a peer that is no longer in it and active (or whose
    /// node id or CA changed): revocation must not wait for the peer to
    /// hang up.
    ///
    /// Checked before anything changes (on error the previous set stays):
    /// names are unique, each active peer's `ca_pem` holds exactly one
    /// valid certificate, and no two active peers share a CA (a
    /// certificate from either would pass for both). Inactive peers' CAs
    /// are not parsed: they are never used, and a damaged one must not
    /// stop a revocation.
    pub fn replace(&self, peers: Vec<TrustedPeer>) -> Result<(), IdentityError> {
        let mut names = HashSet::new();
        let mut anchors: HashMap<Vec<u8>, String> = HashMap::new();
        let mut active = Vec::new();
        for peer in peers {
            if !names.insert(peer.name.clone()) {
                return Err(IdentityError::Certificate(format!(
                    "peer {:?} is listed twice",
                    peer.name
                )));
            }
            if !peer.active {
                continue;
            }
            let what = format!("peer {:?}", peer.name);
            let ca = one_certificate(&peer.ca_pem, &what)?;
            let (anchor, verifier) = ca_verifier(ca.clone(), &self.inner.provider, &what)?;
            if let Some(other) = anchors.insert(anchor, peer.name.clone()) {
                return Err(IdentityError::Certificate(format!(
                    "peers {other:?} and {:?} have the same CA: neither could be told apart",
                    peer.name
                )));
            }
            active.push(Arc::new(ActivePeer {
                identity: PeerIdentity {
                    name: peer.name,
                    node_id: peer.node_id,
                },
                ca: ca.to_vec(),
                verifier,
            }));
        }
        let active: Arc<[Arc<ActivePeer>]> = Arc::from(active);
        // First the new set (handshakes and admissions from now on see
        // it), then the connections admitted under the old one: an
        // admission holds `connections` while it identifies, so it either
        // sees the new set or is registered in time to be cancelled here.
        *self
            .inner
            .peers
            .write()
            .unwrap_or_else(PoisonError::into_inner) = active.clone();
        let mut connections = lock(&self.inner.connections);
        connections.retain(|name, open| {
            let before = open.len();
            open.retain(|_, connection| {
                let kept = active.iter().any(|p| {
                    p.identity == connection.peer.identity && p.ca == connection.peer.ca
                });
                if !kept {
                    connection.token.cancel();
                }
                kept
            });
            let closed = before - open.len();
            if closed > 0 {
                tracing::info!(peer = %name, closed, "peer no longer trusted; its connections are closed");
            }
            !open.is_empty()
        });
        Ok(())
    }

    /// Which active peer's CA issued this end-entity certificate (DER),
    /// verified for client authentication now; `None` if none did.
    pub fn identify(&self, leaf: &[u8]) -> Option<PeerIdentity> {
        let peers = self.snapshot();
        find(&peers, &CertificateDer::from(leaf), &[], UnixTime::now())
            .ok()
            .map(|p| p.identity.clone())
    }

    /// How many connections the peer `name` has open now (for metrics and
    /// tests): revoked connections no longer count, even before they have
    /// finished closing.
    pub fn open_connections(&self, name: &str) -> usize {
        lock(&self.inner.connections)
            .get(name)
            .map_or(0, HashMap::len)
    }

    /// The TLS client verifier backed by this trust: it always follows the
    /// current set.
    pub(super) fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(PeerVerifier {
            trust: self.clone(),
        })
    }

    /// Identifies the peer of a completed handshake and registers the
    /// connection under it; the reason if it cannot be admitted.
    pub(super) fn admit(
        &self,
        tls: TlsStream<TcpStream>,
        remote: SocketAddr,
    ) -> Result<PeerStream, &'static str> {
        let (peer, id, token, fingerprint) = {
            let (_, session) = tls.get_ref();
            let Some((leaf, intermediates)) =
                session.peer_certificates().and_then(|c| c.split_first())
            else {
                return Err("no client certificate");
            };
            let mut connections = lock(&self.inner.connections);
            let peers = self.snapshot();
            let peer = find(&peers, leaf, intermediates, UnixTime::now())
                .map_err(|_| "the peer is no longer trusted")?
                .clone();
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let token = CancellationToken::new();
            connections
                .entry(peer.identity.name.clone())
                .or_default()
                .insert(
                    id,
                    Connection {
                        peer: peer.clone(),
                        token: token.clone(),
                    },
                );
            (peer, id, token, fingerprint(leaf))
        };
        Ok(PeerStream {
            tls,
            info: PeerConnectInfo {
                peer: peer.identity.clone(),
                remote: Some(remote),
                fingerprint,
            },
            trust: self.inner.clone(),
            id,
            read_cancelled: Box::pin(token.clone().cancelled_owned()),
            write_cancelled: Box::pin(token.cancelled_owned()),
            revoked: false,
        })
    }
}

/// The federation listener's client verifier: a certificate passes if one
/// active peer's CA verifies it. A client certificate is required.
#[derive(Debug)]
struct PeerVerifier {
    trust: PeerTrust,
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The set changes under a shared reference; peers know which
        // certificate to send anyway.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let peers = self.trust.snapshot();
        find(&peers, end_entity, intermediates, now).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.trust.inner.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.trust.inner.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.trust
            .inner
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A peer's connection to the federation listener: TLS, the peer it
/// belongs to, and a cancellation that [`PeerTrust::replace`] triggers
/// when the peer stops being trusted. From then on every read, write and
/// flush fails with `ConnectionAborted` ("peer revoked"), waking a read or
/// write that is waiting, so the HTTP/2 connection and every call on it
/// end at once.
pub struct PeerStream {
    tls: TlsStream<TcpStream>,
    info: PeerConnectInfo,
    trust: Arc<Inner>,
    id: u64,
    /// Two waits, so that a reader and a writer polled from different
    /// tasks are both woken.
    read_cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    write_cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set once either wait completed (they are not polled again).
    revoked: bool,
}

impl fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerStream")
            .field("info", &self.info)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

fn revoked_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "peer revoked")
}

impl PeerStream {
    /// The peer this connection belongs to.
    pub fn peer(&self) -> &PeerIdentity {
        &self.info.peer
    }

    /// What services see of this connection.
    pub fn info(&self) -> &PeerConnectInfo {
        &self.info
    }

    /// Whether the peer was revoked (polling registers `cx` for the
    /// revocation).
    fn poll_revoked(&mut self, cx: &mut Context<'_>, write: bool) -> bool {
        if !self.revoked {
            let wait = if write {
                &mut self.write_cancelled
            } else {
                &mut self.read_cancelled
            };
            if wait.as_mut().poll(cx).is_ready() {
                self.revoked = true;
            }
        }
        self.revoked
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        let mut connections = lock(&self.trust.connections);
        if let Some(open) = connections.get_mut(&self.info.peer.name) {
            open.remove(&self.id);
            if open.is_empty() {
                connections.remove(&self.info.peer.name);
            }
        }
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_revoked(cx, false) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut this.tls).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_revoked(cx, true) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut this.tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_revoked(cx, true) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut this.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_revoked(cx, true) {
            return Poll::Ready(Err(revoked_error()));
        }
        Pin::new(&mut this.tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_revoked(cx, true) {
            // Nothing more is sent to a revoked peer; dropping the stream
            // closes the socket.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tls).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for PeerStream {
    type ConnectInfo = PeerConnectInfo;

    fn connect_info(&self) -> PeerConnectInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;

    use super::super::roles::{issue_client, ClientRole};
    use super::super::testing::{der, dial, listen, node, refusal};
    use super::*;

    const SOON: Duration = Duration::from_secs(5);

    /// The next admitted connection.
    async fn next(
        incoming: &mut (impl tokio_stream::Stream<Item = io::Result<PeerStream>> + Unpin),
    ) -> PeerStream {
        tokio::time::timeout(SOON, incoming.next())
            .await
            .expect("a connection in time")
            .expect("the listener runs")
            .unwrap()
    }

    /// Nothing admitted for a while.
    async fn nothing(
        incoming: &mut (impl tokio_stream::Stream<Item = io::Result<PeerStream>> + Unpin),
    ) {
        let got = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(got.is_err(), "a connection was admitted: {got:?}");
    }

    #[tokio::test]
    async fn a_trusted_peer_is_admitted_and_named_others_are_refused() {
        let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
        let trust = PeerTrust::new();
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        let (addr, mut incoming) = listen(&a, trust.clone()).await;

        let b_cert = b.peer_client();
        let mut client = dial(&a, addr, Some(&b_cert)).await.unwrap();
        let mut server = next(&mut incoming).await;
        assert_eq!(server.peer(), &b.identity("b"));
        let info = tonic::transport::server::Connected::connect_info(&server);
        assert_eq!(info.peer, b.identity("b"));
        assert_eq!(info.fingerprint, fingerprint(&der(&b_cert.cert)));
        assert_eq!(info.remote, Some(client.get_ref().0.local_addr().unwrap()));
        assert_eq!(trust.open_connections("b"), 1);
        // Data flows both ways.
        client.write_all(b"ping").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.write_all(b"pong").await.unwrap();
        server.flush().await.unwrap();
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        // A node nobody added, and a client with no certificate.
        let refused = refusal(dial(&a, addr, Some(&c.peer_client())).await).await;
        assert!(refused.contains("UnknownCA"), "{refused}");
        let refused = refusal(dial(&a, addr, None).await).await;
        assert!(refused.contains("CertificateRequired"), "{refused}");
        // The node's own local-service certificate is no peer's.
        let local = issue_client(&a.dir, "svc", ClientRole::Local, 1).unwrap();
        let refused = refusal(dial(&a, addr, Some(&local)).await).await;
        assert!(refused.contains("UnknownCA"), "{refused}");
        nothing(&mut incoming).await;
        assert_eq!(trust.open_connections("c"), 0);

        drop(server);
        assert_eq!(trust.open_connections("b"), 0);
    }

    #[tokio::test]
    async fn an_empty_trust_refuses_everyone() {
        let (a, b) = (node("node-a"), node("node-b"));
        let (addr, mut incoming) = listen(&a, PeerTrust::new()).await;
        let refused = refusal(dial(&a, addr, Some(&b.peer_client())).await).await;
        assert!(refused.contains("UnknownCA"), "{refused}");
        nothing(&mut incoming).await;
    }

    #[tokio::test]
    async fn revoking_a_peer_closes_its_open_connections_at_once() {
        let (a, b, d) = (node("node-a"), node("node-b"), node("node-d"));
        let trust = PeerTrust::new();
        trust
            .replace(vec![b.as_peer("b", true), d.as_peer("d", true)])
            .unwrap();
        let (addr, mut incoming) = listen(&a, trust.clone()).await;
        let b_cert = b.peer_client();
        let _b_client = dial(&a, addr, Some(&b_cert)).await.unwrap();
        let mut b_server = next(&mut incoming).await;
        let mut d_client = dial(&a, addr, Some(&d.peer_client())).await.unwrap();
        let mut d_server = next(&mut incoming).await;
        assert_eq!(d_server.peer(), &d.identity("d"));
        assert_eq!(trust.open_connections("b"), 1);

        // b's connection is idle in a read when b is suspended.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 8];
            let result = b_server.read(&mut buf).await;
            (b_server, result)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!reader.is_finished(), "the read should be waiting");
        trust
            .replace(vec![b.as_peer("b", false), d.as_peer("d", true)])
            .unwrap();
        assert_eq!(trust.open_connections("b"), 0);
        let (mut b_server, result) = tokio::time::timeout(Duration::from_secs(1), reader)
            .await
            .expect("the pending read wakes up at once")
            .unwrap();
        let error = result.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        assert_eq!(error.to_string(), "peer revoked");
        let error = b_server.write_all(b"x").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        b_server.shutdown().await.unwrap();
        drop(b_server);
        assert_eq!(trust.open_connections("b"), 0);

        // d is untouched.
        assert_eq!(trust.open_connections("d"), 1);
        d_client.write_all(b"still").await.unwrap();
        d_client.flush().await.unwrap();
        let mut buf = [0u8; 5];
        d_server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still");

        // b cannot come back while suspended...
        let refused = refusal(dial(&a, addr, Some(&b_cert)).await).await;
        assert!(refused.contains("UnknownCA"), "{refused}");
        nothing(&mut incoming).await;
        // ...and can once reinstated; connections are counted as they
        // open and close.
        trust
            .replace(vec![b.as_peer("b", true), d.as_peer("d", true)])
            .unwrap();
        let _b_again = dial(&a, addr, Some(&b_cert)).await.unwrap();
        let b_server = next(&mut incoming).await;
        assert_eq!(trust.open_connections("b"), 1);
        drop(b_server);
        assert_eq!(trust.open_connections("b"), 0);

        // Leaving a peer out of the set revokes it as well.
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        assert_eq!(trust.open_connections("d"), 0);
        let error = d_server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[tokio::test]
    async fn a_peer_whose_ca_changes_loses_its_connections() {
        let (a, b, b2) = (node("node-a"), node("node-b"), node("node-b2"));
        let trust = PeerTrust::new();
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        let (addr, mut incoming) = listen(&a, trust.clone()).await;
        let _client = dial(&a, addr, Some(&b.peer_client())).await.unwrap();
        let mut server = next(&mut incoming).await;
        // Same name, same node id, another CA.
        let mut rekeyed = b.as_peer("b", true);
        rekeyed.ca_pem = b2.ca_pem.clone();
        trust.replace(vec![rekeyed]).unwrap();
        assert_eq!(trust.open_connections("b"), 0);
        let mut buf = [0u8; 1];
        let error = server.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionAborted);
        // Replacing with an unchanged set keeps connections.
        let _client = dial(&a, addr, Some(&b2.peer_client())).await.unwrap();
        let _server = next(&mut incoming).await;
        let mut rekeyed = b.as_peer("b", true);
        rekeyed.ca_pem = b2.ca_pem.clone();
        trust.replace(vec![rekeyed]).unwrap();
        assert_eq!(trust.open_connections("b"), 1);
    }

    #[test]
    fn identify_names_active_peers_only() {
        let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
        let trust = PeerTrust::new();
        let b_leaf = der(&b.peer_client().cert);
        assert_eq!(trust.identify(&b_leaf), None);
        trust
            .replace(vec![b.as_peer("b", true), c.as_peer("c", false)])
            .unwrap();
        assert_eq!(trust.identify(&b_leaf), Some(b.identity("b")));
        // An inactive peer, a CA nobody added, the node's own certificates,
        // b's server certificate (not for client authentication), junk.
        assert_eq!(trust.identify(&der(&c.peer_client().cert)), None);
        let stranger = node("stranger");
        assert_eq!(trust.identify(&der(&stranger.peer_client().cert)), None);
        let local = issue_client(&a.dir, "svc", ClientRole::Local, 1).unwrap();
        assert_eq!(trust.identify(&der(&local.cert)), None);
        assert_eq!(trust.identify(&der(&a.peer_client().cert)), None);
        let b_server = std::fs::read_to_string(b.dir.join("tls/federation.pem")).unwrap();
        assert_eq!(trust.identify(&der(&b_server)), None);
        assert_eq!(trust.identify(b"not a certificate"), None);
        assert_eq!(trust.identify(&[]), None);

        trust.replace(vec![b.as_peer("b", false)]).unwrap();
        assert_eq!(trust.identify(&b_leaf), None);
        assert!(format!("{trust:?}").contains("PeerTrust"));
    }

    #[test]
    fn a_bad_set_is_refused_whole() {
        let (b, c) = (node("node-b"), node("node-c"));
        let trust = PeerTrust::new();
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        let b_leaf = der(&b.peer_client().cert);

        let mut broken = c.as_peer("c", true);
        broken.ca_pem =
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into();
        let error = trust
            .replace(vec![b.as_peer("b", false), broken.clone()])
            .unwrap_err();
        assert!(
            matches!(&error, IdentityError::Certificate(m) if m.contains("\"c\"")),
            "{error}"
        );
        broken.ca_pem = "no PEM at all".into();
        let error = trust.replace(vec![broken.clone()]).unwrap_err();
        assert!(error.to_string().contains("peer \"c\""), "{error}");
        broken.ca_pem = format!("{}{}", c.ca_pem, b.ca_pem);
        let error = trust.replace(vec![broken.clone()]).unwrap_err();
        assert!(error.to_string().contains("2 certificates"), "{error}");
        // The same name twice, the same CA for two peers.
        let error = trust
            .replace(vec![b.as_peer("b", true), c.as_peer("b", false)])
            .unwrap_err();
        assert!(error.to_string().contains("listed twice"), "{error}");
        let error = trust
            .replace(vec![b.as_peer("b", true), b.as_peer("b-again", true)])
            .unwrap_err();
        assert!(error.to_string().contains("same CA"), "{error}");
        // Nothing changed.
        assert_eq!(trust.identify(&b_leaf), Some(b.identity("b")));

        // An inactive peer's CA is not read: a damaged one cannot block
        // its revocation.
        broken.active = false;
        trust.replace(vec![b.as_peer("b", false), broken]).unwrap();
        assert_eq!(trust.identify(&b_leaf), None);
    }
}
