//! Rows of the security matrix not proven elsewhere (docs/SECURITY.md maps
//! every row to its test): silent and slow connections, and names that
//! would walk out of a directory. Real nodes, real mTLS, loopback.

// `tls_connect` needs raw rustls: it speaks HTTP/2 by hand over TLS (half a
// request), which no tonic channel from identity::client can do.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use crate::nodes;

use std::time::{Duration, Instant};

use crate::nodes::TestNode;
use hashfed::identity::roles::ClientRole;
use hashfed::identity::server::HANDSHAKE_TIMEOUT;
use hashfed::wire::proto::{self, admin_client::AdminClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether the server closed `stream` (a read sees the end or an error)
/// within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Asserts that a real client completes a handshake and a health check at
/// `addr` within two seconds.
async fn served_at_once(
    node: &TestNode,
    addr: std::net::SocketAddr,
    cert: &hashfed::identity::tls::CertKey,
) {
    let started = Instant::now();
    assert_eq!(
        nodes::handshake_outcome(&node.dir, addr, Some(cert)).await,
        "OK"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// A TCP connection to `addr` from the loopback address 127.0.0.2.
async fn connect_from_another_host(addr: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_and_slow_loris_connections_are_dropped_and_starve_nobody() {
    let node = TestNode::start("a", |_| {}).await;
    let addr = node.node().addresses().match_;
    let local = node.issue(ClientRole::Local);

    // Twenty connections that never say anything, and one that trickles
    // a TLS record header a byte at a time.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let trickling = tokio::spawn(async move {
        let started = Instant::now();
        for byte in [
            0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ] {
            if trickle.write_all(&[byte]).await.is_err() {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(30), trickle.read(&mut buf)).await;
        started.elapsed()
    });

    // Meanwhile a real client is served at once.
    served_at_once(&node, addr, &local).await;

    // The handshake deadline closes every one of them.
    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(3);
    for (i, s) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(s, limit).await,
            "silent connection {i} kept open"
        );
    }
    let trickled = trickling.await.unwrap();
    assert!(
        trickled < limit + Duration::from_secs(2),
        "the trickling connection lasted {trickled:?}"
    );
    // And the listener still serves.
    assert_eq!(
        nodes::handshake_outcome(&node.dir, addr, Some(&local)).await,
        "OK"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn names_that_would_leave_their_directory_are_refused_at_every_door() {
    let node = TestNode::start("a", |_| {}).await;
    let operator = node.issue(ClientRole::Operator);
    let channel = nodes::channel(&node.dir, node.node().addresses().admin, Some(&operator))
        .await
        .unwrap();
    let mut admin = AdminClient::new(channel);
    for set in ["../a/x", "a/../../etc", "a/.ssh", "/etc/passwd", "a\\..\\x"] {
        // An import names its set in the first message.
        let chunk = proto::ImportChunk {
            set: set.into(),
            format: "te-lines".into(),
            data: format!("pdq {}\n", "f".repeat(64)).into_bytes(),
            ..Default::default()
        };
        let refused = admin
            .import(tokio_stream::iter(vec![chunk]))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{set}: {refused:?}"
        );
        let refused = admin
            .submit_entry(proto::SubmitEntryRequest {
                set: set.into(),
                signal_type: "pdq".into(),
                value: "f".repeat(64),
                labels: vec![],
                external_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "{set}: {refused:?}"
        );
    }
    // A peer card whose name would become a path.
    let other = TestNode::start("b", |_| {}).await;
    let card = other.card().replace("name = \"b\"", "name = \"../b\"");
    assert!(card.contains("../b"));
    let refused = node
        .node()
        .ops()
        .add_peer(
            &hashfed::ops::Actor::new("local-socket"),
            &card,
            vec![],
            vec![],
        )
        .unwrap_err();
    let refused = hashfed::service::status::ops_status(refused);
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // Nothing was created anywhere.
    assert!(node.db.store().sets().is_empty());
    assert!(!node.dir.parent().unwrap().join("etc").exists());
}

/// A raw mutual-TLS connection (HTTP/2 by ALPN) to the listener at `addr`
/// of the node in `dir`, presenting `cert`.
async fn tls_connect(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    cert: &hashfed::identity::tls::CertKey,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let ca = std::fs::read(dir.join("tls/node-ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(&ca).unwrap())
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![CertificateDer::from_pem_slice(cert.cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(cert.key.as_bytes()).unwrap(),
    )
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_caller_that_sends_half_a_request_and_stalls_is_cut_at_the_deadline() {
    // A 2 s request deadline instead of the default minute.
    let (tmp, dir) = nodes::node_dir("a");
    let config = dir.join("hashfed.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("request_secs = 60"), "{text}");
    std::fs::write(
        &config,
        text.replace("request_secs = 60", "request_secs = 2"),
    )
    .unwrap();
    let node = TestNode::start_in(tmp, dir).await;
    let addr = node.node().addresses().match_;
    let local = node.issue(ClientRole::Local);

    // An authenticated caller opens 50 MatchHashes calls on one HTTP/2
    // connection, each with a message header announcing 1000 bytes and
    // then 10 of them, and sends nothing more.
    let tls = tls_connect(&node.dir, addr, &local).await;
    let (h2, mut connection) = h2::client::handshake(tls).await.unwrap();
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..50 {
        let request = http::Request::post("https://localhost/hashfed.v1.Match/MatchHashes")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let mut h2 = h2.clone().ready().await.unwrap();
        let (response, mut body) = h2.send_request(request, false).unwrap();
        let mut half = vec![0u8, 0, 0, 0x03, 0xe8];
        half.extend([0x0a; 10]);
        body.send_data(half.into(), false).unwrap();
        stalled.push((response, body));
    }
    // Drive the connection a moment: the server's settings have arrived.
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut connection).await;
    assert_eq!(
        connection.max_concurrent_send_streams(),
        hashfed::server::MAX_STREAMS as usize,
        "the server limits streams per connection"
    );
    let driver = tokio::spawn(connection);

    // Meanwhile a well-behaved caller is served at once.
    let t = Instant::now();
    let channel = nodes::channel(&node.dir, addr, Some(&local)).await.unwrap();
    let answer = proto::match_client::MatchClient::new(channel)
        .match_hashes(proto::MatchRequest {
            queries: vec![nodes::pdq_query(vec![7; 32])],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(answer.into_inner().results.len(), 1);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    // At the deadline every stalled call is answered CANCELLED, not kept.
    for (i, (response, _body)) in stalled.into_iter().enumerate() {
        let response = tokio::time::timeout(Duration::from_secs(6), response)
            .await
            .unwrap_or_else(|_| panic!("stalled call {i} still open after 6 s"))
            .unwrap();
        let status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(status.as_deref(), Some("1"), "call {i}: {response:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_secs(6),
        "cut after {waited:?}"
    );
    driver.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_silent_connections_from_one_host_holds_only_its_share() {
    use hashfed::identity::server::MAX_HANDSHAKES_PER_ADDRESS;
    let node = TestNode::start("a", |_| {}).await;
    let addr = node.node().addresses().match_;
    let local = node.issue(ClientRole::Local);

    // 300 connections that never say a word, from 127.0.0.2: more than
    // the 256 handshakes a listener runs at once.
    let mut flood = Vec::new();
    for _ in 0..300 {
        flood.push(connect_from_another_host(addr).await);
    }
    // All but the host's share are closed at once...
    let checks: Vec<_> = flood
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let closed = closed_within(&mut s, Duration::from_millis(500)).await;
                (s, closed)
            })
        })
        .collect();
    let mut open = Vec::new();
    for check in checks {
        let (s, closed) = check.await.unwrap();
        if !closed {
            open.push(s);
        }
    }
    assert_eq!(open.len(), MAX_HANDSHAKES_PER_ADDRESS);
    // ...and a caller from another address is served at once.
    served_at_once(&node, addr, &local).await;
    // The share is given back at the handshake deadline.
    for s in &mut open {
        assert!(closed_within(s, HANDSHAKE_TIMEOUT + Duration::from_secs(3)).await);
    }
    let mut again = connect_from_another_host(addr).await;
    assert!(
        !closed_within(&mut again, Duration::from_millis(300)).await,
        "the host may handshake again"
    );
}
