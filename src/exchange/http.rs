//! The exchanges' HTTPS client: one request at a time over HTTP/1.1, TLS
//! through `identity::https`.
//!
//! Small on purpose. The services answer a page per request, seconds
//! apart, so there is nothing to gain from pooling; what matters is that a
//! slow, stalled or hostile server cannot hold the node: every request
//! (connect, handshake, sending, the whole answer) runs under one deadline,
//! and an answer's body is read only up to a limit.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::ExchangeError;
use crate::identity::https::HttpsConnector;

/// Most bytes of an answer's body read by default (a page of 10,000
/// records of NCMEC's XML is about 10 MiB).
pub const MAX_BODY: usize = 64 << 20;

/// One request, relative to the endpoint.
#[derive(Clone, Debug)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and query on the endpoint's host: either relative to the
    /// endpoint's base path (`entries?from=...`), or absolute (`/v2/...`,
    /// as some APIs hand out for their next page).
    pub path: String,
    /// Headers besides `host`, `user-agent` and `content-length`.
    pub headers: Vec<(&'static str, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
}

impl Request {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Request {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A request with `method` and `body` at `path`.
    pub fn with_body(method: Method, path: impl Into<String>, body: Vec<u8>) -> Self {
        Request {
            method,
            path: path.into(),
            headers: Vec::new(),
            body,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// An answer, whatever its status.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, at most the client's limit.
    pub body: Bytes,
}

impl Response {
    /// The answer if its status is 2xx; otherwise the error it means: 429
    /// (with its `Retry-After`, in seconds), 5xx, or another refusal with
    /// the start of its body (printable characters only).
    pub fn ok(self) -> Result<Self, ExchangeError> {
        match self.status {
            200..=299 => Ok(self),
            429 => Err(ExchangeError::RateLimited {
                retry_after: self
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            }),
            500..=599 => Err(ExchangeError::Server {
                status: self.status,
            }),
            status => Err(ExchangeError::Refused {
                status,
                message: printable(&self.body, 200),
            }),
        }
    }
}

/// The first `max` characters of `bytes` as text, control characters
/// dropped (what a server said goes into logs and `exchange status`).
pub fn printable(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(max)
        .collect()
}

/// A client for one endpoint.
#[derive(Clone, Debug)]
pub struct Http {
    host: String,
    port: u16,
    /// The endpoint's path, without a trailing slash ("" for the root).
    base: String,
    tls: HttpsConnector,
    timeout: Duration,
    max_body: usize,
}

impl Http {
    /// A client for `endpoint` (`https://host[:port][/path]`), trusting the
    /// public web's roots and `ca_file`'s CA; each request takes at most
    /// `timeout` and reads at most `max_body` bytes of an answer.
    pub fn new(
        endpoint: &str,
        ca_file: Option<&Path>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Self, ExchangeError> {
        let bad = |why: &str| ExchangeError::Config(format!("endpoint {endpoint:?}: {why}"));
        let uri: Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("must start with https://"));
        }
        if uri.query().is_some() {
            return Err(bad("must not have a query"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("credentials go in the credentials file, not the URL"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Http {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            base: uri.path().trim_end_matches('/').to_owned(),
            tls: HttpsConnector::new(ca_file).map_err(ExchangeError::Tls)?,
            timeout,
            max_body,
        })
    }

    /// The endpoint's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The endpoint's base path ("" for the root, else `/...`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The path a request for `path` asks for: absolute paths as they are,
    /// others under the base.
    pub fn path_of(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("{}/{path}", self.base)
        }
    }

    /// Sends `request` and reads its answer, all within the deadline.
    pub async fn send(&self, request: Request) -> Result<Response, ExchangeError> {
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| ExchangeError::Timeout(self.timeout))?
    }

    async fn exchange(&self, request: Request) -> Result<Response, ExchangeError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ExchangeError::Transport(format!("connecting to {}: {e}", self.host)))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(&self.host, tcp)
            .await
            .map_err(ExchangeError::Tls)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| ExchangeError::Transport(format!("HTTP with {}: {e}", self.host)))?;
        let host = match self.port {
            443 => self.host.clone(),
            port => format!("{}:{port}", self.host),
        };
        let mut builder = hyper::Request::builder()
            .method(request.method)
            .uri(self.path_of(&request.path))
            .header("host", host)
            .header("user-agent", concat!("hashfed/", env!("CARGO_PKG_VERSION")));
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        let outgoing = builder
            .body(Full::new(Bytes::from(request.body)))
            .map_err(|e| ExchangeError::Config(format!("request: {e}")))?;
        let max_body = self.max_body;
        let answer = async move {
            let answer = sender.send_request(outgoing).await?;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, max_body).collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((parts, body))
        };
        // The connection is driven in this future, beside the request (no
        // task outlives the call); once it ends, the request's own future
        // finishes with what arrived, or with the error.
        tokio::pin!(answer);
        tokio::pin!(connection);
        let mut driving = true;
        let outcome = loop {
            tokio::select! {
                outcome = &mut answer => break outcome,
                _ = &mut connection, if driving => driving = false,
            }
        };
        let (parts, body) = outcome.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                ExchangeError::TooLarge {
                    limit: self.max_body,
                }
            } else {
                ExchangeError::Transport(format!("HTTP with {}: {e}", self.host))
            }
        })?;
        let status = parts.status.as_u16();
        Ok(Response {
            status,
            headers: parts.headers,
            body,
        })
    }
}
