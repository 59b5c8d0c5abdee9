//! A stand-in for an outside HTTPS service, on 127.0.0.1 port 0: each
//! test gives it a handler written from the service's public description
//! (paths, status codes, headers, bodies), and it can misbehave on demand:
//! answer late or never (`Reply::Stall`), close the connection without an
//! answer (`Reply::Cut`), or say anything with any status.
//!
//! Real TLS (a CA of its own, whose certificate the exchange's `ca_file`
//! names) and real HTTP/1.1 (hyper's server), so the client under test
//! runs exactly as against the service.

// A test's TLS server: rustls is set up here, as in security.rs.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// One request as the stand-in saw it.
#[derive(Clone, Debug)]
pub struct Req {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Req {
    /// The header `name` (lower-case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query parameter `name`, percent-decoded, if present.
    pub fn query(&self, name: &str) -> Option<String> {
        let query = self.path.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| hashfed::exchange::text::form_decode(v))
        })
    }

    /// The path without its query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// What the stand-in does with a request.
pub enum Reply {
    /// Answers.
    Respond {
        /// The status.
        status: u16,
        /// Headers.
        headers: Vec<(String, String)>,
        /// The body.
        body: Vec<u8>,
    },
    /// Never answers (the connection stays open until the client gives up).
    Stall,
    /// Closes the connection at once, without an answer.
    Cut,
}

impl Reply {
    /// 200 with `body` of `content_type`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Respond {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// `status` with a short text body.
    pub fn status(status: u16, text: &str) -> Reply {
        Reply::Respond {
            status,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: text.as_bytes().to_vec(),
        }
    }

    /// 429 with `Retry-After: secs`.
    pub fn too_many(secs: u64) -> Reply {
        Reply::Respond {
            status: 429,
            headers: vec![("retry-after".into(), secs.to_string())],
            body: b"slow down".to_vec(),
        }
    }
}

/// A handler: a request in, a reply out (async, so it may wait).
pub type Handler =
    Arc<dyn Fn(Req) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync + 'static>;

/// Makes a [`Handler`] of a synchronous function.
pub fn handler(f: impl Fn(Req) -> Reply + Send + Sync + 'static) -> Handler {
    let f = Arc::new(f);
    Arc::new(move |req| {
        let f = f.clone();
        Box::pin(async move { f(req) })
    })
}

/// A running stand-in. Dropping it stops accepting; open connections end
/// with the test's runtime.
pub struct StandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its CA certificate (PEM), for the exchange's `ca_file`.
    pub ca_file: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl StandIn {
    /// Starts a stand-in answering with `handler`, its CA written into
    /// `dir`.
    pub async fn start(dir: &Path, handler: Handler) -> StandIn {
        let ca = hashfed::identity::tls::new_ca("stand-in CA", 30).unwrap();
        let leaf = hashfed::identity::tls::issue(
            "stand-in CA",
            &ca,
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
            hashfed::identity::tls::Usage::Server,
            30,
        )
        .unwrap();
        let ca_file = dir.join("standin-ca.pem");
        std::fs::write(&ca_file, &ca.cert).unwrap();
        let certs = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, handler) = (acceptor.clone(), handler.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    serve(tls, handler).await;
                });
            }
        });
        StandIn {
            addr,
            ca_file,
            accept,
        }
    }

    /// The endpoint URL with `path` (e.g. `/v2`).
    pub fn endpoint(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.addr.port())
    }
}

/// One connection: requests in turn; `Cut` drops the connection.
async fn serve(tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>, handler: Handler) {
    let (cut_tx, mut cut_rx) = tokio::sync::mpsc::channel::<()>(1);
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let (handler, cut_tx) = (handler.clone(), cut_tx.clone());
            async move {
                let (parts, body) = request.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let req = Req {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_default(),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: body.to_vec(),
                };
                match handler(req).await {
                    Reply::Respond {
                        status,
                        headers,
                        body,
                    } => {
                        let mut response = hyper::Response::builder().status(status);
                        for (n, v) in headers {
                            response = response.header(n, v);
                        }
                        Ok::<_, std::convert::Infallible>(
                            response.body(Full::new(Bytes::from(body))).unwrap(),
                        )
                    }
                    Reply::Stall => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(hyper::Response::new(Full::new(Bytes::new())))
                    }
                    Reply::Cut => {
                        let _ = cut_tx.send(()).await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        Ok(hyper::Response::new(Full::new(Bytes::new())))
                    }
                }
            }
        });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
    tokio::select! {
        _ = connection => {}
        _ = cut_rx.recv() => {}
    }
}
