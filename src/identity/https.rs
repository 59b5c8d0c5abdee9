//! TLS toward the outside services a node pulls hash lists from (NCMEC,
//! StopNCII, ThreatExchange, TCAP: see `crate::exchange`).
//!
//! Unlike peers, these are public HTTPS services: their certificates chain
//! to the public web's roots (Mozilla's list, built in through
//! `webpki-roots`, so the node does not depend on what the host happens to
//! have installed), checked against the endpoint's host name. An exchange
//! may name one more CA (`ca_file`: a private deployment, or a test's
//! stand-in server), added to those roots, never replacing them. TLS 1.2 and
//! 1.3 (services outside our control may not speak 1.3 yet); no client
//! certificate.
//!
//! The other side, [`LoopbackAcceptor`], serves HTTPS on loopback with a
//! throwaway CA of its own: for the local stand-in of a service that
//! `hashfed demo` and the benchmark pull from (`crate::exchange::standin`).
//! A node never serves HTTPS to the outside with it.

// Outbound TLS configuration lives in this module.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::IdentityError;

/// An HTTPS client's TLS side: roots, and the handshake over a TCP stream.
#[derive(Clone)]
pub struct HttpsConnector {
    connector: TlsConnector,
}

impl std::fmt::Debug for HttpsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpsConnector")
    }
}

impl HttpsConnector {
    /// Trusts the public web's roots and, if given, the CA certificates in
    /// the PEM file `extra_ca`.
    pub fn new(extra_ca: Option<&Path>) -> Result<Self, IdentityError> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let pem = std::fs::read(path).map_err(|source| IdentityError::Io {
                path: path.to_owned(),
                source,
            })?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| IdentityError::Certificate(format!("{}: PEM: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(IdentityError::Certificate(format!(
                    "{}: no certificate in the PEM",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(super::tls_error(format!(
                    "{}: CA certificate",
                    path.display()
                )))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(super::tls_error("TLS versions".to_owned()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(HttpsConnector {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake with `host` (a DNS name or an IP address) over
    /// `tcp`, its certificate checked for that name.
    pub async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, IdentityError> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| IdentityError::Certificate(format!("{host:?} is not a host name")))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| IdentityError::Certificate(format!("TLS with {host}: {e}")))
    }
}

/// TLS for an HTTPS server on loopback: a CA made for it alone (kept in
/// memory, valid a day), whose certificate the client is given as its
/// `ca_file`, and a server certificate for `127.0.0.1` and `localhost`.
#[derive(Clone)]
pub struct LoopbackAcceptor {
    acceptor: TlsAcceptor,
    ca_pem: String,
}

impl std::fmt::Debug for LoopbackAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoopbackAcceptor")
    }
}

impl LoopbackAcceptor {
    /// A fresh CA and server certificate.
    pub fn new() -> Result<Self, IdentityError> {
        const CA_NAME: &str = "hashfed local stand-in CA";
        let ca = super::tls::new_ca(CA_NAME, 1)?;
        let names = ["127.0.0.1".to_owned(), "localhost".to_owned()];
        let leaf = super::tls::issue(CA_NAME, &ca, &names, super::tls::Usage::Server, 1)?;
        let certs = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Certificate(format!("stand-in certificate: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes())
            .map_err(|e| IdentityError::Certificate(format!("stand-in key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(super::tls_error("TLS versions".to_owned()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(super::tls_error("stand-in certificate".to_owned()))?;
        Ok(LoopbackAcceptor {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            ca_pem: ca.cert,
        })
    }

    /// The CA certificate (PEM) a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The TLS handshake with a client over `tcp`.
    pub async fn accept(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, IdentityError> {
        self.acceptor
            .accept(tcp)
            .await
            .map_err(|e| IdentityError::Certificate(format!("TLS handshake: {e}")))
    }
}
