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

// Outbound TLS configuration lives in this module.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

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
