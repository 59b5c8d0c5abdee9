//! Rows of the security matrix not proven elsewhere (docs/SECURITY.md maps
//! every row to its test): silent and slow connections, and names that
//! would walk out of a directory. Real nodes, real mTLS, loopback.

use crate::nodes;

use std::time::{Duration, Instant};

use crate::nodes::TestNode;
use hashfed::identity::roles::ClientRole;
use hashfed::identity::server::HANDSHAKE_TIMEOUT;
use hashfed::service::proto::{self, admin_client::AdminClient};
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
    let started = Instant::now();
    assert_eq!(
        nodes::handshake_outcome(&node.dir, addr, Some(&local)).await,
        "OK"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

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
        .federation()
        .add_peer(proto::AddPeerRequest {
            card,
            send: vec![],
            accept: vec![],
        })
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // Nothing was created anywhere.
    assert!(node.db.store().sets().is_empty());
    assert!(!node.dir.parent().unwrap().join("etc").exists());
}
