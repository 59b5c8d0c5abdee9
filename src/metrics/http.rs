//! The metrics endpoint over HTTP/1.1: `GET /metrics` and `GET /healthz`,
//! one request per connection, served by hyper.
//!
//! hyper parses the request and answers malformed (400) and oversized (431)
//! heads itself; this module only routes, caps the connections, and
//! bounds how long a connection may take. There is no keep-alive and no
//! request body is read, which is all a Prometheus scraper or a health
//! probe needs. hyper and its HTTP/1 server are in the build already
//! through tonic, so using them costs no build time and replaces a
//! hand-written parser.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Metrics;

/// Largest request head accepted (request line and headers): hyper's read
/// buffer limit, whose smallest allowed value this is.
const MAX_HEAD: usize = 8 * 1024;

/// Time a client has to send its whole request head (from the accept on).
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a client has, after that, to take the response. hyper has no write
/// timeout, so the whole connection is bounded by the sum.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// After answering, how long unread input is drained before closing (so
/// that the close does not reset the connection before the client has read
/// the response).
const LINGER: Duration = Duration::from_secs(1);

/// Most input drained after answering.
const LINGER_BYTES: usize = 64 * 1024;

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;

/// Pause after a failed `accept` (e.g. out of file descriptors), so that the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The exposition format's content type.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every other response's content type.
const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// Serves `metrics` over HTTP on `listener` until `shutdown` completes.
///
/// * `GET /metrics` (or `HEAD`): 200, `text/plain; version=0.0.4;
///   charset=utf-8`, [`Metrics::render`];
/// * `GET /healthz`: 200, `ok`;
/// * any other path: 404; any other method: 405; a malformed request
///   (including a target that is not a path): 400; a request head over
///   8 KiB: 431; no complete head within 5 s: the connection is closed.
///
/// Every response carries `Connection: close` (an HTTP/1.0 request is
/// answered in HTTP/1.0, as hyper does). Each connection runs in its own
/// task (at most 64 at once; more are closed unanswered) and is closed
/// after 10 s whatever it does; a failing connection is logged at debug
/// level and never ends the server, and a failing `accept` is logged and
/// retried after a short pause. Returns `Ok(())` once `shutdown`
/// completes and the connections still open then have been closed (each
/// connection is a task of this server's own, not left running after it).
///
/// The endpoint is not authenticated: bind `listener` to loopback (or a
/// private interface).
pub async fn serve_http(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    let closing = CancellationToken::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                closing.cancel();
                connections.close();
                connections.wait().await;
                return Ok(());
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, "metrics: too many connections, closing");
                        continue;
                    };
                    let (metrics, closing) = (Arc::clone(&metrics), closing.clone());
                    connections.spawn(async move {
                        let _permit = permit;
                        tokio::select! {
                            () = closing.cancelled() => {}
                            () = handle(stream, peer, metrics) => {}
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
}

/// Serves the one request of `stream`, then closes it.
async fn handle(mut stream: TcpStream, peer: SocketAddr, metrics: Arc<Metrics>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = route(&request, &metrics);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .keep_alive(false)
        // A client may end its side once the request is sent.
        .half_close(true)
        .title_case_headers(true)
        .serve_connection(TokioIo::new(&mut stream), service);
    let served = timeout(READ_TIMEOUT + WRITE_TIMEOUT, connection).await;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%peer, %error, "metrics connection failed"),
        Err(_) => tracing::debug!(%peer, "metrics connection took too long, closing"),
    }
    linger_close(&mut stream).await;
}

/// The response to a parsed request. `HEAD` gets the same response, whose
/// body hyper leaves out (keeping its `Content-Length`).
fn route(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let target = request.uri();
    // The origin form (`/path?query`) only: hyper also accepts the absolute
    // and authority forms, which a scraper never sends.
    if target.scheme().is_some() || target.authority().is_some() || !target.path().starts_with('/')
    {
        return response(StatusCode::BAD_REQUEST, PLAIN_TEXT, "bad request line\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut refused = response(
            StatusCode::METHOD_NOT_ALLOWED,
            PLAIN_TEXT,
            "method not allowed\n",
        );
        refused
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return refused;
    }
    match target.path() {
        "/metrics" => response(StatusCode::OK, PROMETHEUS_TEXT, metrics.render()),
        "/healthz" => response(StatusCode::OK, PLAIN_TEXT, "ok"),
        _ => response(StatusCode::NOT_FOUND, PLAIN_TEXT, "not found\n"),
    }
}

/// A response with `body` (hyper adds `Content-Length` from it).
fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Ends the write side (hyper has normally done so already), then reads and
/// discards what the client still sends (up to [`LINGER_BYTES`] within
/// [`LINGER`]) before the stream is dropped: closing a socket with unread
/// input resets the connection, which can make the client lose a response
/// it has not read yet (e.g. a 431 for a head hyper stopped reading).
async fn linger_close(stream: &mut TcpStream) {
    // A second shutdown, or one after the client closed, may fail; the
    // drain below then ends at once.
    let _ = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_shutdown(cx)).await;
    let drain = async {
        let mut scratch = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut scratch) {
                Ok(0) => return,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    };
    let _ = timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Kind;
    use std::io::{Read, Write};
    use std::time::Instant;

    /// Sends `request` over a blocking socket and returns what came back
    /// (possibly cut short by an error).
    async fn raw(addr: std::net::SocketAddr, request: Vec<u8>) -> Vec<u8> {
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let _ = s.write_all(&request);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            out
        })
        .await
        .unwrap()
    }

    async fn start() -> (
        std::net::SocketAddr,
        Arc<Metrics>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(&["MatchHashes"]));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_http(Arc::clone(&metrics), listener, async {
            let _ = rx.await;
        }));
        (addr, metrics, tx, server)
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_metrics_health_and_errors() {
        let (addr, metrics, stop, server) = start().await;
        metrics.query(Kind::Pdq, Duration::from_micros(40), true);

        let got = text(&raw(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(got.contains("\r\nConnection: close\r\n"));
        assert!(got.contains("\r\nCache-Control: no-store\r\n"));
        assert!(got
            .lines()
            .any(|l| l == "hashfed_match_queries_total{type=\"pdq\"} 1"));
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));

        // hyper answers an HTTP/1.0 request in HTTP/1.0.
        let got = text(&raw(addr, b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nok"), "{got}");

        let got = text(&raw(addr, b"GET /metrics?x=1 HTTP/1.1\n\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");

        let got = text(&raw(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n"), "{got}");

        let got = text(&raw(addr, b"GET /nope HTTP/1.1\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");

        let got = text(
            &raw(
                addr,
                b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
            )
            .await,
        );
        assert!(
            got.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{got}"
        );
        assert!(got.contains("\r\nAllow: GET, HEAD\r\n"));

        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET http://x/metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\nGARBAGE\r\n\r\n",
        ] {
            let got = text(&raw(addr, bad.to_vec()).await);
            assert!(
                got.starts_with("HTTP/1.1 400 Bad Request\r\n"),
                "{bad:?}: {got}"
            );
        }

        // 10 KiB of header garbage: 431 (the lingering close lets the client
        // read it although the server stopped reading at 8 KiB).
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Junk: ".to_vec();
        big.resize(10 * 1024, b'a');
        let got = text(&raw(addr, big).await);
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
        let garbage: Vec<u8> = (0..10 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
        let got = text(&raw(addr, garbage).await);
        assert!(
            got.is_empty() || got.starts_with("HTTP/1.1 431 ") || got.starts_with("HTTP/1.1 400 "),
            "{got}"
        );

        // A client that connects and leaves, one that sends half a head, and
        // one that sends only empty lines (which RFC 9112 §2.2 lets a server
        // skip before a request line): closed without an answer.
        assert!(raw(addr, Vec::new()).await.is_empty());
        assert!(raw(addr, b"GET /metr".to_vec()).await.is_empty());
        assert!(raw(addr, b"\r\n\r\n".to_vec()).await.is_empty());

        // The server is still up after all that.
        let got = text(&raw(addr, b"GET /healthz HTTP/1.1\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// Reads `s` to its end; what came and how long it took.
    fn read_all(mut s: std::net::TcpStream) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        (out, started.elapsed())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_are_closed_after_the_read_timeout() {
        let (addr, _metrics, stop, server) = start().await;
        // One sends nothing; one half a head and keeps its side open.
        let silent = tokio::task::spawn_blocking(move || {
            read_all(std::net::TcpStream::connect(addr).unwrap())
        });
        let trickle = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost:").unwrap();
            read_all(s)
        });
        for client in [silent, trickle] {
            let (got, took) = client.await.unwrap();
            assert!(got.is_empty(), "{}", text(&got));
            assert!(
                took >= READ_TIMEOUT - Duration::from_millis(500),
                "{took:?}"
            );
            assert!(took < READ_TIMEOUT + WRITE_TIMEOUT, "{took:?}");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_64_connections_are_served_at_once() {
        let (addr, _metrics, stop, server) = start().await;
        let started = Instant::now();
        let idle: Vec<std::net::TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        // The 65th is accepted after them and closed unanswered at once,
        // long before the idle ones time out.
        let (got, _) = tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\n\r\n");
            read_all(s)
        })
        .await
        .unwrap();
        assert!(got.is_empty(), "{}", text(&got));
        assert!(started.elapsed() < READ_TIMEOUT, "{:?}", started.elapsed());
        // Once they leave, requests are served again.
        drop(idle);
        let mut served = String::new();
        for _ in 0..50 {
            served = text(&raw(addr, b"GET /healthz HTTP/1.1\r\n\r\n".to_vec()).await);
            if !served.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(served.starts_with("HTTP/1.1 200 OK\r\n"), "{served}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
