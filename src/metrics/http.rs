//! A minimal HTTP/1.1 endpoint for the metrics: `GET /metrics` and
//! `GET /healthz`, one request per connection.
//!
//! It reads the request head with a size cap and a timeout, answers, and
//! closes; there is no keep-alive, no body and no chunking, which is all a
//! Prometheus scraper or a health probe needs. It uses only tokio's `net`
//! readiness API, so no HTTP crate (and no tokio `io-util`) is required.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::Metrics;

/// Largest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 * 1024;

/// Time a client has to send its whole request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a client has to take the response.
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

/// Serves `metrics` over HTTP on `listener` until `shutdown` completes.
///
/// * `GET /metrics` (or `HEAD`): 200, `text/plain; version=0.0.4;
///   charset=utf-8`, [`Metrics::render`];
/// * `GET /healthz`: 200, `ok`;
/// * any other path: 404; any other method: 405; a malformed request: 400;
///   a request head over 8 KiB: 431; no complete head within 5 s: the
///   connection is closed.
///
/// Every response carries `Connection: close`. Each connection runs in its
/// own task (at most 64 at once; more are closed unanswered); a failing
/// connection is logged at debug level and never ends the server, and a
/// failing `accept` is logged and retried after a short pause. Returns
/// `Ok(())` once `shutdown` completes; connections still being answered then
/// finish on their own.
///
/// The endpoint is not authenticated: bind `listener` to loopback (or a
/// private interface).
pub async fn serve_http(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::debug!(%peer, "metrics: too many connections, closing");
                        continue;
                    };
                    let metrics = Arc::clone(&metrics);
                    tokio::spawn(async move {
                        let _permit = permit;
                        if let Err(error) = handle(stream, &metrics).await {
                            tracing::debug!(%peer, %error, "metrics connection failed");
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

/// What reading a request head gave.
enum Head {
    /// A complete head of this many bytes (terminator included).
    Complete(usize),
    /// The cap was reached without a complete head.
    TooLarge,
    /// The client closed the connection before sending anything.
    Empty,
}

/// Answers one request on `stream` and closes it.
async fn handle(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_HEAD];
    let response = match timeout(READ_TIMEOUT, read_head(&stream, &mut buf)).await {
        Err(_) => {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head in time",
            ))
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Head::Empty)) => return Ok(()),
        Ok(Ok(Head::TooLarge)) => simple(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
        Ok(Ok(Head::Complete(n))) => route(buf.get(..n).unwrap_or_default(), metrics),
    };
    timeout(WRITE_TIMEOUT, write_all(&stream, &response))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken in time"))??;
    linger_close(&mut stream).await;
    Ok(())
}

/// Reads into `buf` until the end of the request head (an empty line), the
/// end of `buf`, or the end of input.
async fn read_head(stream: &TcpStream, buf: &mut [u8]) -> io::Result<Head> {
    let mut len = 0;
    loop {
        stream.readable().await?;
        let Some(free) = buf.get_mut(len..) else {
            return Ok(Head::TooLarge);
        };
        match stream.try_read(free) {
            Ok(0) if len == 0 => return Ok(Head::Empty),
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside the request head",
                ))
            }
            Ok(n) => {
                // The terminator may straddle the previous read.
                let from = len.saturating_sub(3);
                len += n;
                if let Some(end) = head_end(buf.get(..len).unwrap_or_default(), from) {
                    return Ok(Head::Complete(end));
                }
                if len >= buf.len() {
                    return Ok(Head::TooLarge);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The end of the head in `data` (just past `\r\n\r\n`, or `\n\n` from
/// lenient clients), looking from `from` on.
fn head_end(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find_map(|i| {
        let rest = data.get(i..)?;
        if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else {
            None
        }
    })
}

/// The response to a complete request head.
fn route(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head.get(..line_end).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return simple("400 Bad Request", "bad request line\n");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return simple("400 Bad Request", "bad request line\n");
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return simple("400 Bad Request", "bad request line\n");
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            return response(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "Allow: GET, HEAD\r\n",
                b"method not allowed\n",
                false,
            )
        }
    };
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match path {
        "/metrics" => response(
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            "",
            metrics.render().as_bytes(),
            head_only,
        ),
        "/healthz" => response("200 OK", "text/plain; charset=utf-8", "", b"ok", head_only),
        _ => response(
            "404 Not Found",
            "text/plain; charset=utf-8",
            "",
            b"not found\n",
            head_only,
        ),
    }
}

/// A plain-text response with `body`.
fn simple(status: &str, body: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        "",
        body.as_bytes(),
        false,
    )
}

/// A full response; `extra_headers` is empty or complete `\r\n`-terminated
/// header lines; `head_only` leaves the body out (for `HEAD`).
fn response(
    status: &str,
    content_type: &str,
    extra_headers: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{extra_headers}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Writes all of `data` to `stream`.
async fn write_all(stream: &TcpStream, data: &[u8]) -> io::Result<()> {
    let mut written = 0;
    while let Some(rest) = data.get(written..).filter(|r| !r.is_empty()) {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Ends the write side, then reads and discards what the client still sends
/// (up to [`LINGER_BYTES`] within [`LINGER`]) before the stream is dropped:
/// closing a socket with unread input resets the connection, which can make
/// the client lose a response it has not read yet.
async fn linger_close(stream: &mut TcpStream) {
    let shut = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_shutdown(cx)).await;
    if shut.is_err() {
        return;
    }
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
        assert!(got
            .lines()
            .any(|l| l == "hashfed_match_queries_total{type=\"pdq\"} 1"));
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));

        let got = text(&raw(addr, b"GET /healthz HTTP/1.0\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
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
            b"GET /metrics SPDY/3\r\n\r\n",
            b"\xff\xfe /metrics HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
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

        // A client that connects and leaves, and one that sends half a head:
        // closed without an answer.
        assert!(raw(addr, Vec::new()).await.is_empty());
        assert!(raw(addr, b"GET /metr".to_vec()).await.is_empty());

        // The server is still up after all that.
        let got = text(&raw(addr, b"GET /healthz HTTP/1.1\r\n\r\n".to_vec()).await);
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn head_end_finds_both_terminators() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nbody", 0), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(head_end(b"", 0), None);
        assert_eq!(head_end(b"ab", 5), None);
    }
}
