//! TLS for the node's listeners, on rustls directly: TLS 1.3 only, a
//! client certificate required on every connection, verified against the
//! one CA that issues that listener's role.
//!
//! Why not tonic's own TLS settings: they cannot restrict the protocol
//! version, and they hide the handshake, so a slow or silent client would
//! hold an accept slot for ever. Here every handshake runs in its own task
//! under a deadline, a bounded number at once, and a failed one is logged
//! with its reason (never with anything the client sent).

// The listeners' rustls configuration is this module's concern.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::peers::{PeerStream, PeerTrust};
use super::{io, IdentityError};
use crate::tasks::Tasks;

/// How long a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once per listener; further connections wait
/// in the kernel's accept queue.
const MAX_HANDSHAKES: usize = 256;

/// Handshakes in progress at once from one address: a host that opens
/// connections and says nothing holds at most this many of the listener's
/// `MAX_HANDSHAKES` (until [`HANDSHAKE_TIMEOUT`]); its further
/// connections are closed at once, so other callers still get in.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 32;

/// Handshakes in progress, by the caller's address.
#[derive(Default)]
struct InFlight(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One handshake's place in [`InFlight`], given back when dropped.
struct Slot {
    in_flight: Arc<InFlight>,
    ip: std::net::IpAddr,
}

impl InFlight {
    /// A place for a handshake from `ip`, unless it has all its share.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Slot> {
        let mut by_ip = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = by_ip.entry(ip).or_insert(0);
        if *n >= MAX_HANDSHAKES_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(Slot {
            in_flight: self.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_ip = self.in_flight.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

/// A listener whose callers authenticate with client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Peers: client certificates from the peers' own CAs (pinned from
    /// their peer cards; none until peers are added).
    Federation,
    /// Local services: client certificates from the clients CA.
    Match,
    /// Operators: client certificates from the operators CA.
    Admin,
}

impl Listener {
    /// The listener's name, as in `hashfed.toml` and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Federation => "federation",
            Listener::Match => "match",
            Listener::Admin => "admin",
        }
    }

    fn index(self) -> usize {
        match self {
            Listener::Federation => 0,
            Listener::Match => 1,
            Listener::Admin => 2,
        }
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let pem = fs::read(path).map_err(io(path))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(super::tls_error(path.display().to_string()))?;
    if certs.is_empty() {
        return Err(IdentityError::Certificate(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let pem = fs::read(path).map_err(io(path))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(super::tls_error(path.display().to_string()))
}

/// The CA files whose certificates a listener accepts. Peers' CAs come
/// from the peer registry instead (see [`Acceptor::federation`]), so here
/// the federation listener trusts nobody.
fn trusted_cas(dir: &Path, listener: Listener) -> Vec<std::path::PathBuf> {
    let tls = dir.join("tls");
    match listener {
        Listener::Match => vec![tls.join("clients-ca.pem")],
        Listener::Admin => vec![tls.join("operators-ca.pem")],
        Listener::Federation => Vec::new(),
    }
}

/// The server certificates of a node's listeners as its TLS serves them.
///
/// Every handshake asks for the current certificate, so
/// [`ServerCerts::reload`] (after `hashfed keys rotate` re-issued them)
/// takes effect at the next handshake, without a restart and without
/// touching open connections.
#[derive(Clone)]
pub struct ServerCerts {
    dir: std::path::PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Indexed by [`Listener::index`].
    live: Arc<[Arc<LiveCert>; 3]>,
}

/// One listener's certificate and key, swapped whole.
#[derive(Debug)]
struct LiveCert(std::sync::RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl ServerCerts {
    /// Reads the node's three server certificates and keys from `DIR/tls`.
    pub fn load(dir: &Path) -> Result<Self, IdentityError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let [f, m, a] = Self::read_all(dir, &provider)?;
        let slot = |c| Arc::new(LiveCert(std::sync::RwLock::new(Arc::new(c))));
        Ok(ServerCerts {
            dir: dir.to_owned(),
            provider,
            live: Arc::new([slot(f), slot(m), slot(a)]),
        })
    }

    /// Reads the files again and serves them from the next handshake on.
    /// All three are read and checked before any is swapped, so a bad file
    /// leaves every listener as it was.
    pub fn reload(&self) -> Result<(), IdentityError> {
        let fresh = Self::read_all(&self.dir, &self.provider)?;
        for (slot, cert) in self.live.iter().zip(fresh) {
            *slot.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(cert);
        }
        Ok(())
    }

    /// The DER of the certificate `listener` serves now.
    pub fn current(&self, listener: Listener) -> Vec<u8> {
        let cert = self.live[listener.index()]
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        cert.cert.first().map(|c| c.to_vec()).unwrap_or_default()
    }

    fn read_all(
        dir: &Path,
        provider: &rustls::crypto::CryptoProvider,
    ) -> Result<[CertifiedKey; 3], IdentityError> {
        let tls = dir.join("tls");
        let one = |listener: Listener| -> Result<CertifiedKey, IdentityError> {
            let path = tls.join(format!("{}.pem", listener.name()));
            let chain = certificates(&path)?;
            let key = private_key(&tls.join(format!("{}.key", listener.name())))?;
            CertifiedKey::from_der(chain, key, provider)
                .map_err(super::tls_error(path.display().to_string()))
        };
        Ok([
            one(Listener::Federation)?,
            one(Listener::Match)?,
            one(Listener::Admin)?,
        ])
    }
}

/// The listener's TLS settings: TLS 1.3 only, the node's current server
/// certificate for `listener`, client certificates checked by `verifier`,
/// HTTP/2.
fn server_config(
    certs: &ServerCerts,
    listener: Listener,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<tokio_rustls::TlsAcceptor, IdentityError> {
    let mut config = ServerConfig::builder_with_provider(certs.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(super::tls_error("TLS 1.3 settings"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certs.live[listener.index()].clone());
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TLS connections for one listener of a node.
#[derive(Clone)]
pub struct Acceptor {
    inner: tokio_rustls::TlsAcceptor,
    listener: Listener,
}

impl Acceptor {
    /// TLS 1.3 with the node's server certificate for `listener`, client
    /// certificates required and verified against that role's CA only
    /// (validity period, chain, and the client-auth key usage).
    ///
    /// For [`Listener::Federation`] this refuses every client: peers are
    /// admitted by [`Acceptor::federation`], from the peer registry.
    pub fn new(certs: &ServerCerts, listener: Listener) -> Result<Self, IdentityError> {
        let dir = certs.dir.as_path();
        let provider = certs.provider.clone();
        let mut roots = RootCertStore::empty();
        for ca in trusted_cas(dir, listener) {
            for cert in certificates(&ca)? {
                roots
                    .add(cert)
                    .map_err(super::tls_error(ca.display().to_string()))?;
            }
        }
        let verifier = if roots.is_empty() {
            // Nobody to trust: an empty peer set refuses everyone.
            PeerTrust::new().verifier()
        } else {
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(super::tls_error("client certificate verifier"))?
        };
        Ok(Acceptor {
            inner: server_config(certs, listener, verifier)?,
            listener,
        })
    }

    /// The federation listener of the node in `dir`, admitting the peers
    /// `trust` holds at each handshake (it follows
    /// [`PeerTrust::replace`]), and yielding each connection as a
    /// [`PeerStream`] that knows its peer and is closed when the peer is
    /// revoked.
    pub fn federation(
        certs: &ServerCerts,
        trust: PeerTrust,
    ) -> Result<FederationAcceptor, IdentityError> {
        let inner = server_config(certs, Listener::Federation, trust.verifier())?;
        Ok(FederationAcceptor { inner, trust })
    }

    /// Accepts connections on `tcp` until the returned stream is dropped
    /// or `tasks` stop, handshaking each in its own task under
    /// [`HANDSHAKE_TIMEOUT`]; only completed handshakes come out of the
    /// stream. The accept loop and the handshakes are background work of
    /// `tasks`, so a stopped node is not left accepting.
    pub fn incoming(
        self,
        tcp: TcpListener,
        tasks: &Tasks,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>> {
        let (tx, rx) = mpsc::channel(64);
        tasks.spawn(accept_loop(
            self.inner,
            self.listener.name(),
            tcp,
            tx,
            tasks.clone(),
            |tls, _| Some(tls),
        ));
        ReceiverStream::new(rx)
    }
}

/// The federation listener's acceptor (see [`Acceptor::federation`]).
#[derive(Clone)]
pub struct FederationAcceptor {
    inner: tokio_rustls::TlsAcceptor,
    trust: PeerTrust,
}

impl FederationAcceptor {
    /// The trust this listener admits by; updating it (or any clone of
    /// it) takes effect at the next handshake and closes revoked peers'
    /// connections.
    pub fn trust(&self) -> &PeerTrust {
        &self.trust
    }

    /// As [`Acceptor::incoming`], yielding [`PeerStream`]s: each completed
    /// handshake is identified as one active peer's and registered under
    /// it; one whose peer was revoked during the handshake is dropped.
    /// Serve it with `Server::builder().serve_with_incoming(...)`; services
    /// then find [`PeerConnectInfo`](super::peers::PeerConnectInfo) in
    /// their requests' extensions.
    pub fn incoming(
        self,
        tcp: TcpListener,
        tasks: &Tasks,
    ) -> ReceiverStream<Result<PeerStream, std::io::Error>> {
        let (tx, rx) = mpsc::channel(64);
        let trust = self.trust;
        let listener = Listener::Federation.name();
        tasks.spawn(accept_loop(
            self.inner,
            listener,
            tcp,
            tx,
            tasks.clone(),
            move |tls, remote| match trust.admit(tls, remote) {
                Ok(stream) => {
                    let peer = stream.peer();
                    tracing::info!(
                        listener,
                        %remote,
                        peer = %peer.name,
                        node = %peer.node_id,
                        certificate = %stream.info().fingerprint,
                        "peer connected"
                    );
                    Some(stream)
                }
                Err(reason) => {
                    tracing::info!(listener, %remote, reason, "peer connection dropped after the handshake");
                    None
                }
            },
        ));
        ReceiverStream::new(rx)
    }
}

/// Accepts on `tcp` until `tx` closes, handshaking each connection in its
/// own task (at most [`MAX_HANDSHAKES`] at once, at most
/// [`MAX_HANDSHAKES_PER_ADDRESS`] of them from one address, each under
/// [`HANDSHAKE_TIMEOUT`], as background work of `tasks`) and sending
/// what `admit` makes of it.
async fn accept_loop<T, F>(
    acceptor: tokio_rustls::TlsAcceptor,
    listener: &'static str,
    tcp: TcpListener,
    tx: mpsc::Sender<Result<T, std::io::Error>>,
    tasks: Tasks,
    admit: F,
) where
    T: Send + 'static,
    F: Fn(TlsStream<TcpStream>, SocketAddr) -> Option<T> + Clone + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let in_flight = Arc::new(InFlight::default());
    loop {
        let permit = tokio::select! {
            () = tx.closed() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, remote) = tokio::select! {
            () = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back
                    // off instead of spinning.
                    tracing::warn!(listener, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Some(slot) = in_flight.take(remote.ip()) else {
            // Debug only: a flood would otherwise flood the log too.
            tracing::debug!(listener, %remote, "too many handshakes from one address: closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let admit = admit.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let handshake = slot;
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(handshake);
            match outcome {
                Ok(Ok(tls)) => {
                    if let Some(connection) = admit(tls, remote) {
                        let _ = tx.send(Ok(connection)).await;
                    }
                }
                Ok(Err(e)) => {
                    tracing::info!(listener, %remote, reason = %e, "TLS handshake refused");
                }
                Err(_) => {
                    tracing::info!(listener, %remote, "TLS handshake timed out");
                }
            }
        });
    }
}

/// A short, stable name for a client certificate: the first 16 bytes of
/// its BLAKE3 digest, in hex. Match records and logs name callers by it.
pub fn fingerprint(cert_der: &[u8]) -> String {
    crate::signal::exact::to_hex(&blake3::hash(cert_der).as_bytes()[..16])
}
