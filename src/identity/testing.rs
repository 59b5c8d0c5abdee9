//! Test nodes and a raw TLS client for the peer tests: real node
//! directories (`init` in temporary directories) and loopback TCP.

// A raw rustls client, to test this module's own TLS.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::peers::{PeerIdentity, PeerStream, PeerTrust, TrustedPeer};
use super::server::Acceptor;
use super::tls::CertKey;
use super::{init, Config};

/// A node directory made with [`init`].
pub struct Node {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub config: Config,
    /// The node CA (PEM): what its peer card would carry.
    pub ca_pem: String,
}

pub fn node(name: &str) -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    let made = init(&dir, name).unwrap();
    Node {
        _tmp: tmp,
        dir,
        config: made.config,
        ca_pem: made.node_ca,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

impl Node {
    /// This node as another node's peer, named `name`.
    pub fn as_peer(&self, name: &str, active: bool) -> TrustedPeer {
        TrustedPeer {
            name: name.into(),
            node_id: self.config.node_id.clone(),
            ca_pem: self.ca_pem.clone(),
            active,
        }
    }

    /// The identity [`Node::as_peer`] gives this node.
    pub fn identity(&self, name: &str) -> PeerIdentity {
        PeerIdentity {
            name: name.into(),
            node_id: self.config.node_id.clone(),
        }
    }

    /// The node's client certificate towards peers.
    pub fn peer_client(&self) -> CertKey {
        CertKey {
            cert: read(&self.dir.join("tls/peer-client.pem")),
            key: read(&self.dir.join("tls/peer-client.key")),
        }
    }
}

/// The (first) certificate of a PEM, DER-encoded.
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// `node`'s federation listener on a loopback port, admitting by `trust`.
pub async fn listen(
    node: &Node,
    trust: PeerTrust,
) -> (
    SocketAddr,
    ReceiverStream<Result<PeerStream, std::io::Error>>,
) {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let incoming =
        Acceptor::federation(&super::server::ServerCerts::load(&node.dir).unwrap(), trust)
            .unwrap()
            .incoming(tcp, &crate::tasks::Tasks::new());
    (addr, incoming)
}

/// A TLS 1.3 connection to `server`'s listener at `addr`, presenting
/// `cert` if given.
pub async fn dial(
    server: &Node,
    addr: SocketAddr,
    cert: Option<&CertKey>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.add(der(&server.ca_pem).into()).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
    let config = match cert {
        Some(ck) => builder
            .with_client_auth_cert(
                vec![der(&ck.cert).into()],
                PrivateKeyDer::from_pem_slice(ck.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(format!("{}.hashfed", server.config.node_id)).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// How the server answered a client that completed its side of the
/// handshake: TLS 1.3 clients finish before the server has checked their
/// certificate, so a refusal arrives as an alert on the first read.
pub async fn refusal(client: std::io::Result<TlsStream<TcpStream>>) -> String {
    use tokio::io::AsyncReadExt;
    let mut client = match client {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let mut buf = [0u8; 16];
    match tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut buf)).await {
        Ok(Ok(0)) => "closed".into(),
        Ok(Ok(_)) => "data".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer".into(),
    }
}
