//! Dialling a peer: the node's own client certificate towards peers, and a
//! tonic endpoint that trusts that one peer's CA and presents it.
//!
//! A peer trusts this node through its node CA (pinned from the node's
//! peer card), so the client certificate is issued by the node CA itself:
//! `DIR/tls/peer-client.{pem,key}`, client-auth only, named
//! `{node_id}.hashfed`. Nodes built on the development certificates share
//! one node CA and cannot federate.

// Dialling is TLS client configuration, which lives in this module.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tonic::codegen::http::uri::Authority;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::peers::{ca_verifier, one_certificate};
use super::server::HANDSHAKE_TIMEOUT;
use super::tls::{self, CertKey, Usage};
use super::{load_config, write_file, IdentityError, SERVER_DAYS};

/// The stem of the peer client certificate's files in `DIR/tls`.
pub const PEER_CLIENT: &str = "peer-client";

/// How long a TCP connection to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often an HTTP/2 ping checks a peer connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Issues the peer client certificate from the node CA (`ca_name`, `ca`)
/// into `tls_dir` (see [`peer_client_cert`]). The key is written first
/// and the certificate last, so a certificate file means both are
/// complete.
pub(super) fn issue_peer_client(
    tls_dir: &Path,
    ca_name: &str,
    ca: &CertKey,
    node_id: &str,
) -> Result<(), IdentityError> {
    let leaf = peer_client_cert(ca_name, ca, node_id)?;
    write_file(&tls_dir.join(format!("{PEER_CLIENT}.key")), &leaf.key, true)?;
    write_file(
        &tls_dir.join(format!("{PEER_CLIENT}.pem")),
        &leaf.cert,
        false,
    )
}

/// A peer client certificate from the node CA (`ca_name`, `ca`), checked
/// to chain to that CA for client authentication (a CA name that does not
/// match the CA certificate would otherwise give a certificate no peer
/// accepts).
pub(super) fn peer_client_cert(
    ca_name: &str,
    ca: &CertKey,
    node_id: &str,
) -> Result<CertKey, IdentityError> {
    let leaf = tls::issue(
        ca_name,
        ca,
        &[format!("{node_id}.hashfed")],
        Usage::Client,
        SERVER_DAYS,
    )?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let (_, verifier) = ca_verifier(one_certificate(&ca.cert, "node CA")?, &provider, "node CA")?;
    let leaf_der = one_certificate(&leaf.cert, "peer client certificate")?;
    verifier
        .verify_client_cert(&leaf_der, &[], rustls::pki_types::UnixTime::now())
        .map_err(super::tls_error(
            "the peer client certificate does not verify against tls/node-ca.pem \
             (was the node renamed in hashfed.toml?)",
        ))?;
    Ok(leaf)
}

/// Makes sure the node in `dir` has its client certificate towards peers
/// (`DIR/tls/peer-client.{pem,key}`, issued by the node CA, key readable by
/// the owner only), issuing it if it is missing: nodes made before peers
/// existed have none. Does nothing if both files exist; a half-written
/// pair (a crash between the two files) is issued again.
///
/// A node on the development certificates gets
/// [`IdentityError::DevCertsCannotFederate`].
pub fn ensure_peer_client_cert(dir: &Path) -> Result<(), IdentityError> {
    let config = load_config(dir)?;
    if config.dev_certs {
        return Err(IdentityError::DevCertsCannotFederate);
    }
    let tls_dir = dir.join("tls");
    let cert = tls_dir.join(format!("{PEER_CLIENT}.pem"));
    let key = tls_dir.join(format!("{PEER_CLIENT}.key"));
    if cert.is_file() && key.is_file() {
        return Ok(());
    }
    for stale in [&cert, &key] {
        if stale.exists() {
            tracing::warn!(file = %stale.display(), "half of the peer client certificate pair; issuing a new pair");
            fs::remove_file(stale).map_err(|source| IdentityError::Io {
                path: stale.clone(),
                source,
            })?;
        }
    }
    let ca = CertKey {
        cert: read(&tls_dir.join("node-ca.pem"))?,
        key: read(&tls_dir.join("node-ca.key"))?,
    };
    let ca_name = super::node_ca_name(&config.name, &config.node_id);
    issue_peer_client(&tls_dir, &ca_name, &ca, &config.node_id)?;
    tracing::info!(node = %config.node_id, "peer client certificate issued");
    Ok(())
}

/// A tonic endpoint for the federation listener of the peer at `endpoint`
/// (`host:port`), over mTLS: it trusts `peer_ca_pem` (the peer's node CA,
/// from its peer card) and nothing else, expects the server certificate to
/// name `{peer_node_id}.hashfed` (so another peer's listener, even at the
/// same address, is refused), and presents this node's peer client
/// certificate (see [`ensure_peer_client_cert`]). TCP connect timeout 5 s,
/// TLS handshake timeout as the server's, `TCP_NODELAY`, HTTP/2 keepalive
/// pings every 30 s.
///
/// Nothing is dialled here: call `connect()` or `connect_lazy()`.
pub fn peer_endpoint(
    dir: &Path,
    endpoint: &str,
    peer_node_id: &str,
    peer_ca_pem: &str,
) -> Result<Endpoint, IdentityError> {
    let bad = |message: &str, source: Option<super::BoxError>| IdentityError::Endpoint {
        endpoint: endpoint.chars().take(200).collect(),
        message: message.to_owned(),
        source,
    };
    let authority: Authority =
        endpoint
            .parse()
            .map_err(|e: tonic::codegen::http::uri::InvalidUri| {
                bad("expected host:port", Some(Box::new(e)))
            })?;
    if authority.as_str() != endpoint
        || endpoint.contains('@')
        || authority.host().is_empty()
        || authority.port_u16().is_none()
    {
        return Err(bad("expected host:port", None));
    }
    let domain = format!("{peer_node_id}.hashfed");
    let valid_id = !peer_node_id.is_empty()
        && peer_node_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !valid_id || ServerName::try_from(domain.as_str()).is_err() {
        return Err(IdentityError::Certificate(format!(
            "peer node id {:?} is not a node id",
            peer_node_id.chars().take(80).collect::<String>()
        )));
    }
    // tonic skips a CA it cannot parse and would fail only when dialling.
    one_certificate(peer_ca_pem, &format!("peer {peer_node_id}"))?;

    let config = load_config(dir)?;
    if config.dev_certs {
        return Err(IdentityError::DevCertsCannotFederate);
    }
    let tls_dir = dir.join("tls");
    let cert = read(&tls_dir.join(format!("{PEER_CLIENT}.pem")))?;
    let key = read(&tls_dir.join(format!("{PEER_CLIENT}.key")))?;
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(peer_ca_pem))
        .identity(Identity::from_pem(cert, key))
        .domain_name(domain)
        .timeout(HANDSHAKE_TIMEOUT);
    Endpoint::from_shared(format!("https://{endpoint}"))
        .map_err(|e| bad("not an address to dial", Some(Box::new(e))))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .tls_config(tls)
        .map_err(super::tls_error(format!("TLS for peer {peer_node_id}")))
}

/// A tonic endpoint to a listener of the node whose directory is `dir`, at
/// `addr` (`host:port`), over mTLS: it trusts that node's CA
/// (`DIR/tls/node-ca.pem`) and nothing else, expects the server
/// certificate to name `server_name` (`localhost`, or `{node_id}.hashfed`),
/// and presents `client` (a certificate from one of the node's client CAs,
/// see [`super::roles`]) if given.
///
/// This is how whoever holds a node's directory dials it: the CLI as an
/// operator, the demo, the benchmarks and the tests. It lives here so that
/// TLS configuration stays in this module (`clippy.toml` refuses tonic's
/// TLS types elsewhere). Nothing is dialled: set timeouts and call
/// `connect()`.
pub fn node_endpoint(
    dir: &Path,
    addr: &str,
    server_name: &str,
    client: Option<&CertKey>,
) -> Result<Endpoint, IdentityError> {
    let ca = read(&dir.join("tls/node-ca.pem"))?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(server_name);
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert, &client.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| IdentityError::Endpoint {
            endpoint: addr.chars().take(200).collect(),
            message: "not an address to dial".into(),
            source: Some(Box::new(e)),
        })?
        .tls_config(tls)
        .map_err(super::tls_error(format!("TLS for {addr}")))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tonic::service::InterceptorLayer;
    use tonic::transport::Server;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    use super::super::dev;
    use super::super::peers::{PeerConnectInfo, PeerTrust};
    use super::super::server::fingerprint;
    use super::super::testing::{der, listen, node};
    use super::*;

    #[test]
    fn the_peer_client_certificate_is_made_once_and_private() {
        let a = node("node-a");
        let cert = a.dir.join("tls/peer-client.pem");
        let key = a.dir.join("tls/peer-client.key");
        // `init` made it.
        let first = a.peer_client();
        ensure_peer_client_cert(&a.dir).unwrap();
        ensure_peer_client_cert(&a.dir).unwrap();
        let again = a.peer_client();
        assert_eq!(
            (first.cert.as_str(), first.key.as_str()),
            (again.cert.as_str(), again.key.as_str())
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&key), 0o600);
            assert_eq!(mode(&cert), 0o644);
        }
        // A node made before peers existed; a half-written pair.
        fs::remove_file(&cert).unwrap();
        fs::remove_file(&key).unwrap();
        ensure_peer_client_cert(&a.dir).unwrap();
        let made = a.peer_client();
        assert_ne!(made.cert, first.cert);
        fs::remove_file(&key).unwrap();
        ensure_peer_client_cert(&a.dir).unwrap();
        assert_ne!(a.peer_client().cert, made.cert);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // Issued by the node CA, for client authentication, as {node_id}.hashfed.
        let trust = PeerTrust::new();
        trust.replace(vec![a.as_peer("a", true)]).unwrap();
        assert_eq!(
            trust.identify(&der(&a.peer_client().cert)),
            Some(a.identity("a"))
        );
    }

    #[test]
    fn development_nodes_cannot_federate() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = tmp.path().join("certs");
        dev::write(&certs).unwrap();
        let dir = tmp.path().join("dev-node");
        super::super::init_with(&dir, "dev-node", Some(&certs)).unwrap();
        assert!(!dir.join("tls/peer-client.pem").exists());
        let error = ensure_peer_client_cert(&dir).unwrap_err();
        assert!(
            matches!(error, IdentityError::DevCertsCannotFederate),
            "{error}"
        );
        assert!(error.to_string().contains("cannot federate"));
        assert!(!dir.join("tls/peer-client.pem").exists());
        assert!(!dir.join("tls/peer-client.key").exists());
        let b = node("node-b");
        let error =
            peer_endpoint(&dir, "127.0.0.1:7701", &b.config.node_id, &b.ca_pem).unwrap_err();
        assert!(
            matches!(error, IdentityError::DevCertsCannotFederate),
            "{error}"
        );
    }

    #[test]
    fn malformed_endpoints_and_peer_cards_are_refused() {
        let (a, b) = (node("node-a"), node("node-b"));
        let id = b.config.node_id.as_str();
        for bad in [
            "",
            "no-port",
            "host:",
            ":7701",
            "host:port",
            "host:7701:1",
            "user@host:7701",
            "host:7701/path",
            "https://host:7701",
            "host:99999",
        ] {
            let error = peer_endpoint(&a.dir, bad, id, &b.ca_pem).unwrap_err();
            assert!(
                matches!(error, IdentityError::Endpoint { .. }),
                "{bad:?}: {error}"
            );
        }
        for good in ["127.0.0.1:7701", "peer.example.org:443", "[::1]:7701"] {
            peer_endpoint(&a.dir, good, id, &b.ca_pem).unwrap();
        }
        for bad_id in ["", "UPPER", "a.b", "a b"] {
            assert!(peer_endpoint(&a.dir, "127.0.0.1:7701", bad_id, &b.ca_pem).is_err());
        }
        let error = peer_endpoint(&a.dir, "127.0.0.1:7701", id, "not a CA").unwrap_err();
        assert!(matches!(error, IdentityError::Certificate(_)), "{error}");
    }

    /// A federation listener serving health checks, recording who called.
    async fn serve(
        a: &super::super::testing::Node,
        trust: PeerTrust,
    ) -> (
        String,
        Arc<Mutex<Vec<PeerConnectInfo>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let (addr, incoming) = listen(a, trust).await;
        let callers = Arc::new(Mutex::new(Vec::new()));
        let seen = callers.clone();
        let record = move |request: tonic::Request<()>| {
            let info = request
                .extensions()
                .get::<PeerConnectInfo>()
                .cloned()
                .ok_or_else(|| tonic::Status::unauthenticated("not a peer connection"))?;
            seen.lock().unwrap().push(info);
            Ok(request)
        };
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = tokio::spawn(async move {
            Server::builder()
                .layer(InterceptorLayer::new(record))
                .add_service(health)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        (addr.to_string(), callers, server)
    }

    async fn check(endpoint: Endpoint) -> Result<i32, String> {
        let channel = tokio::time::timeout(Duration::from_secs(10), endpoint.connect())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| crate::error::Chain(&e).to_string())?;
        let mut client = HealthClient::new(channel);
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|s| s.to_string())
    }

    #[tokio::test]
    async fn peers_call_each_other_over_mtls_end_to_end() {
        let (a, b, c) = (node("node-a"), node("node-b"), node("node-c"));
        let trust = PeerTrust::new();
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        let (addr, callers, server) = serve(&a, trust.clone()).await;
        let a_id = a.config.node_id.as_str();

        // b dials a: served, and the service sees b.
        let endpoint = peer_endpoint(&b.dir, &addr, a_id, &a.ca_pem).unwrap();
        let channel = endpoint.connect().await.unwrap();
        let mut client = HealthClient::new(channel);
        let serving = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(serving, 1, "SERVING");
        {
            let callers = callers.lock().unwrap();
            assert_eq!(callers.len(), 1);
            assert_eq!(callers[0].peer, b.identity("b"));
            assert_eq!(
                callers[0].fingerprint,
                fingerprint(&der(&b.peer_client().cert))
            );
            assert!(callers[0].remote.is_some());
        }
        assert_eq!(trust.open_connections("b"), 1);

        // c is nobody's peer; b expecting another node at that address,
        // or trusting another CA for it, refuses a's listener.
        assert!(
            check(peer_endpoint(&c.dir, &addr, a_id, &a.ca_pem).unwrap())
                .await
                .is_err()
        );
        let other = c.config.node_id.as_str();
        assert!(
            check(peer_endpoint(&b.dir, &addr, other, &a.ca_pem).unwrap())
                .await
                .is_err()
        );
        assert!(
            check(peer_endpoint(&b.dir, &addr, a_id, &c.ca_pem).unwrap())
                .await
                .is_err()
        );
        assert_eq!(callers.lock().unwrap().len(), 1);

        // b suspended: its open channel fails at once and cannot reconnect.
        trust.replace(vec![b.as_peer("b", false)]).unwrap();
        assert_eq!(trust.open_connections("b"), 0);
        let started = std::time::Instant::now();
        let failed = tokio::time::timeout(
            Duration::from_secs(5),
            client.check(HealthCheckRequest {
                service: String::new(),
            }),
        )
        .await
        .expect("the call ends");
        assert!(failed.is_err(), "{failed:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(callers.lock().unwrap().len(), 1);

        // Reinstated: a new channel works again.
        trust.replace(vec![b.as_peer("b", true)]).unwrap();
        assert_eq!(
            check(peer_endpoint(&b.dir, &addr, a_id, &a.ca_pem).unwrap()).await,
            Ok(1)
        );
        server.abort();
    }
}
