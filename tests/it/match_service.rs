//! The node's services on loopback with real mutual TLS, a real sled store
//! and real certificates: who is let in on which listener, what malformed
//! and oversized requests get, and what each match-service call does.

use crate::nodes;

use crate::nodes::{add_pdq, channel, pdq_query, TestNode};
use hashfed::identity::roles::{issue_client_between, ClientRole};
use hashfed::identity::tls::CertKey;
use hashfed::wire::proto::{self, admin_client::AdminClient, match_client::MatchClient};
use tonic::Code;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

const PDQ: [u8; 32] = [0x3c; 32];

async fn seeded() -> TestNode {
    TestNode::start("provider-a", |db| add_pdq(db, "hotline-a/csam", &[PDQ])).await
}

async fn health(node: &TestNode, addr: std::net::SocketAddr, cert: Option<&CertKey>) -> String {
    nodes::handshake_outcome(&node.dir, addr, cert).await
}

#[tokio::test]
async fn each_listener_serves_its_own_role_only() {
    let mut node = seeded().await;
    let a = node.node().addresses().clone();
    let local = node.issue(ClientRole::Local);
    let operator = node.issue(ClientRole::Operator);
    // The right role is served.
    assert_eq!(health(&node, a.match_, Some(&local)).await, "OK");
    assert_eq!(health(&node, a.admin, Some(&operator)).await, "OK");
    // A local service's certificate on the admin and federation listeners:
    // their CAs did not issue it.
    assert_eq!(health(&node, a.admin, Some(&local)).await, "UnknownCA");
    assert_eq!(health(&node, a.federation, Some(&local)).await, "UnknownCA");
    assert_eq!(
        health(&node, a.federation, Some(&operator)).await,
        "UnknownCA"
    );
    // An operator's certificate on the match listener.
    assert_eq!(health(&node, a.match_, Some(&operator)).await, "UnknownCA");
    // No certificate anywhere.
    for addr in [a.match_, a.admin, a.federation] {
        assert_eq!(
            health(&node, addr, None).await,
            "CertificateRequired",
            "{addr}"
        );
    }
    node.stop().await;
}

#[tokio::test]
async fn unknown_ca_and_expired_certificates_are_refused() {
    let mut node = seeded().await;
    let a = node.node().addresses().clone();
    // Certificates from another node's CAs, with the right roles.
    let other = TestNode::start("provider-x", |_| {}).await;
    let foreign_local = other.issue(ClientRole::Local);
    let foreign_operator = other.issue(ClientRole::Operator);
    assert_eq!(
        health(&node, a.match_, Some(&foreign_local)).await,
        "UnknownCA"
    );
    assert_eq!(
        health(&node, a.admin, Some(&foreign_operator)).await,
        "UnknownCA"
    );
    // This node's CA, but expired yesterday.
    let now = time::OffsetDateTime::now_utc();
    let expired = issue_client_between(
        &node.dir,
        "expired",
        ClientRole::Local,
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .unwrap();
    assert_eq!(
        health(&node, a.match_, Some(&expired)).await,
        "CertificateExpired"
    );
    // Not yet valid.
    let future = issue_client_between(
        &node.dir,
        "future",
        ClientRole::Local,
        now + time::Duration::days(1),
        now + time::Duration::days(30),
    )
    .unwrap();
    assert_eq!(
        health(&node, a.match_, Some(&future)).await,
        "CertificateExpired"
    );
    node.stop().await;
}

async fn match_client(node: &TestNode) -> MatchClient<tonic::transport::Channel> {
    let cert = node.issue(ClientRole::Local);
    let channel = channel(&node.dir, node.node().addresses().match_, Some(&cert))
        .await
        .unwrap();
    MatchClient::new(channel).max_decoding_message_size(64 << 20)
}

fn batch(queries: Vec<proto::Query>) -> proto::MatchRequest {
    proto::MatchRequest { queries, tag: 0 }
}

#[tokio::test]
async fn malformed_and_oversized_requests_are_invalid_argument() {
    let mut node = seeded().await;
    let mut c = match_client(&node).await;
    let exact = |kind: proto::SignalType, value: Vec<u8>| proto::Query {
        signal: Some(proto::Signal {
            r#type: kind as i32,
            value,
            opaque_type: String::new(),
        }),
        pdq_variants: vec![],
        quality: None,
        radius: None,
    };
    let mut bad_variant = pdq_query(PDQ.to_vec());
    bad_variant.pdq_variants = vec![vec![0; 31]];
    let mut too_far = pdq_query(PDQ.to_vec());
    too_far.radius = Some(129);
    let mut variants_on_md5 = exact(proto::SignalType::Md5, vec![0; 16]);
    variants_on_md5.pdq_variants = vec![vec![0; 32]];
    let cases: Vec<(&str, proto::MatchRequest)> = vec![
        ("short PDQ", batch(vec![pdq_query(vec![1, 2, 3])])),
        ("long PDQ", batch(vec![pdq_query(vec![0; 33])])),
        ("empty value", batch(vec![pdq_query(vec![])])),
        (
            "short MD5",
            batch(vec![exact(proto::SignalType::Md5, vec![0; 15])]),
        ),
        (
            "unknown type",
            batch(vec![exact(proto::SignalType::Unspecified, vec![0; 16])]),
        ),
        ("no signal", batch(vec![proto::Query::default()])),
        ("bad variant", batch(vec![bad_variant])),
        ("radius 129", batch(vec![too_far])),
        ("variants on MD5", batch(vec![variants_on_md5])),
        ("empty batch", batch(vec![])),
        ("1025 queries", batch(vec![pdq_query(PDQ.to_vec()); 1025])),
        (
            "second query bad",
            batch(vec![pdq_query(PDQ.to_vec()), pdq_query(vec![9])]),
        ),
    ];
    for (what, request) in cases {
        let status = c.match_hashes(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}");
    }
    let status = c
        .match_hashes(batch(vec![pdq_query(vec![1]), pdq_query(PDQ.to_vec())]))
        .await
        .unwrap_err();
    assert!(
        status.message().starts_with("query 0:"),
        "{}",
        status.message()
    );

    // Over the match service's 16 MiB limit: unary, and on the stream.
    let huge = batch(vec![pdq_query(vec![0; 17 << 20])]);
    let status = c.match_hashes(huge.clone()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let stream = c.match_stream(tokio_stream::iter(vec![huge])).await;
    let status = match stream {
        Err(status) => status,
        Ok(response) => {
            let mut s = response.into_inner();
            s.message().await.unwrap_err()
        }
    };
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    // Images: garbage, truncated, over the size limit.
    for (what, image) in [
        ("garbage", b"not an image at all".to_vec()),
        ("truncated PNG", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
        ("17 MiB", vec![0; 17 << 20]),
    ] {
        let status = c
            .match_image(proto::MatchImageRequest {
                image,
                dihedral: false,
                radius: None,
                quality_floor: None,
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    }

    // The node is still fine.
    let ok = c
        .match_hashes(batch(vec![pdq_query(PDQ.to_vec())]))
        .await
        .unwrap();
    assert_eq!(ok.into_inner().results[0].hits.len(), 1);
    node.stop().await;
}

#[tokio::test]
async fn batches_and_the_stream_answer_every_query() {
    let mut far = PDQ;
    far[..16].iter_mut().for_each(|b| *b = !*b); // 128 bits away
    let mut node = seeded().await;
    let mut c = match_client(&node).await;
    let mut near = PDQ.to_vec();
    near[0] ^= 0x0f;
    let response = c
        .match_hashes(proto::MatchRequest {
            queries: vec![pdq_query(near.clone()), pdq_query(far.to_vec())],
            tag: 7,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.tag, 7);
    let hit = &response.results[0].hits[0];
    assert_eq!(
        (hit.distance, hit.set.as_str(), hit.labels.clone()),
        (4, "hotline-a/csam", vec!["A1".to_owned()])
    );
    assert_eq!(hit.match_id.len(), 32);
    assert!(response.results[1].hits.is_empty());

    // Low quality is answered as skipped, not refused.
    let mut low = pdq_query(PDQ.to_vec());
    low.quality = Some(10);
    let skipped = c.match_hashes(batch(vec![low])).await.unwrap().into_inner();
    assert!(
        skipped.results[0].skipped.contains("quality"),
        "{skipped:?}"
    );

    // 200 requests on one stream, each answered once, by tag.
    // 800 matches of one entry within a second is a flood by the node's
    // default limits (see tests/governance.rs): switched off here, where
    // the point is the stream.
    node.db.set_flood_limits(hashfed::database::FloodLimits {
        per_minute: 0,
        share: 0.0,
        min_matches: 0,
    });
    let requests: Vec<proto::MatchRequest> = (0..200u64)
        .map(|tag| proto::MatchRequest {
            queries: vec![
                pdq_query(if tag % 2 == 0 {
                    near.clone()
                } else {
                    far.to_vec()
                });
                8
            ],
            tag,
        })
        .collect();
    let mut responses = c
        .match_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(r) = responses.message().await.unwrap() {
        assert_eq!(r.results.len(), 8);
        let hits = r.results.iter().filter(|q| !q.hits.is_empty()).count();
        assert_eq!(hits, if r.tag % 2 == 0 { 8 } else { 0 }, "tag {}", r.tag);
        assert!(seen.insert(r.tag), "tag {} answered twice", r.tag);
    }
    assert_eq!(seen.len(), 200);
    node.stop().await;
}

#[tokio::test]
async fn images_are_hashed_by_the_node_and_feedback_is_recorded_once() {
    use hashfed::signal::content::{hash_image, HashOptions};
    use hashfed::signal::pdq::PdqHasher;
    // A real PNG with structure (PDQ quality is high).
    let img = image::RgbImage::from_fn(256, 192, |x, y| {
        let v = ((x * 7 + y * 3) % 256) as u8;
        image::Rgb([v, (x % 64 * 4) as u8, (y % 32 * 8) as u8])
    });
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let hashes = hash_image(&png, &HashOptions::default(), &mut PdqHasher::new()).unwrap();
    let code = hashes.pdq.hash.to_bytes();
    let mut node = TestNode::start("provider-a", |db| add_pdq(db, "hotline-a/csam", &[code])).await;
    let mut c = match_client(&node).await;
    let answer = c
        .match_image(proto::MatchImageRequest {
            image: png.clone(),
            dihedral: true,
            radius: None,
            quality_floor: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.hits.len(), 1, "{answer:?}");
    assert_eq!(answer.hits[0].distance, 0);
    let reported = answer.hashes.unwrap();
    assert_eq!(reported.pdq.unwrap().value, code.to_vec());
    assert_eq!(reported.sha256, hashes.exact.sha256.to_vec());
    assert!(reported.dihedral.is_some());

    let match_id = answer.hits[0].match_id.clone();
    let feedback =
        |verdict: proto::Verdict, reason: proto::FeedbackReason, id: &str| proto::FeedbackRequest {
            match_id: id.to_owned(),
            verdict: verdict as i32,
            reason: reason as i32,
        };
    let fp = proto::Verdict::FalsePositive;
    let collision = proto::FeedbackReason::BenignCollision;
    let given = c
        .feedback(feedback(fp, collision, &match_id))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(given.set, "hotline-a/csam");
    let again = c
        .feedback(feedback(fp, collision, &match_id))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let unknown = c
        .feedback(feedback(fp, collision, &"0".repeat(32)))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    for bad in [
        feedback(fp, collision, "xyz"),
        feedback(proto::Verdict::Unspecified, collision, &match_id),
        feedback(fp, proto::FeedbackReason::Unspecified, &match_id),
    ] {
        let status = c.feedback(bad).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    let counts = node.db.match_counts().unwrap();
    assert_eq!((counts.matches, counts.false_positive), (1, 1));
    node.stop().await;
}

#[tokio::test]
async fn health_reflection_and_metrics_are_served() {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut node = seeded().await;
    let a = node.node().addresses().clone();
    let cert = node.issue(ClientRole::Local);
    let ch = channel(&node.dir, a.match_, Some(&cert)).await.unwrap();
    let serving = HealthClient::new(ch.clone())
        .check(HealthCheckRequest {
            service: "hashfed.v1.Match".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(serving.status, 1, "SERVING");

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let reply = replies.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("{reply:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"hashfed.v1.Match".to_owned()), "{names:?}");
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );

    let mut c = MatchClient::new(ch);
    for _ in 0..3 {
        c.match_hashes(batch(vec![pdq_query(PDQ.to_vec())]))
            .await
            .unwrap();
    }
    let text = http_get(a.metrics, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("hashfed_match_queries_total{type=\"pdq\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("hashfed_match_hits_total{type=\"pdq\"} 3"),
        "{text}"
    );
    assert!(text.contains("hashfed_match_latency_seconds_bucket{type=\"pdq\""));
    assert!(text.contains("hashfed_entries{type=\"pdq\"} 1"), "{text}");
    assert!(text.contains("hashfed_sets 1"), "{text}");
    assert!(
        text.contains("hashfed_rpc_requests_total{method=\"MatchHashes\",code=\"OK\"} 3"),
        "{text}"
    );
    node.stop().await;
}

#[tokio::test]
async fn invalid_queries_count_under_the_type_the_caller_named() {
    let mut node = seeded().await;
    let metrics = node.node().addresses().metrics;
    let mut c = match_client(&node).await;
    let named = |kind: proto::SignalType, opaque_type: &str, value: Vec<u8>| proto::Query {
        signal: Some(proto::Signal {
            r#type: kind as i32,
            value,
            opaque_type: opaque_type.into(),
        }),
        pdq_variants: vec![],
        quality: None,
        radius: None,
    };
    let mut bad_variant = pdq_query(PDQ.to_vec());
    bad_variant.pdq_variants = vec![vec![0; 31]];
    for query in [
        // 31 bytes (62 hex digits) sent as PDQ: a PDQ error, not an opaque one.
        pdq_query(vec![0x3c; 31]),
        // The same, PDQ named by its type name.
        named(proto::SignalType::Opaque, "pdq", vec![0x3c; 31]),
        bad_variant,
        named(proto::SignalType::Md5, "", vec![0; 15]),
        // No known type: opaque.
        named(proto::SignalType::Unspecified, "", vec![0; 32]),
    ] {
        let status = c.match_hashes(batch(vec![query])).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }
    let text = http_get(metrics, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    for line in [
        "hashfed_match_errors_total{type=\"pdq\",reason=\"invalid_argument\"} 3",
        "hashfed_match_errors_total{type=\"md5\",reason=\"invalid_argument\"} 1",
        "hashfed_match_errors_total{type=\"opaque\",reason=\"invalid_argument\"} 1",
        "hashfed_match_queries_total{type=\"pdq\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    node.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn admin_over_the_unix_socket_changes_what_matches_at_once() {
    let mut node = seeded().await;
    let a = node.node().addresses().clone();
    let mut admin = AdminClient::new(
        hashfed::service::client::unix_channel(&a.admin_socket)
            .await
            .unwrap(),
    );
    let mut c = match_client(&node).await;
    let mut other = [0xa5u8; 32];
    other[0] = 0;
    let line = format!("pdq {}\n", nodes::hex(&other));
    let summary = admin
        .import(tokio_stream::iter(vec![proto::ImportChunk {
            set: "hotline-b/list".into(),
            format: "te-lines".into(),
            data: line.into_bytes(),
            ..Default::default()
        }]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((summary.added, summary.head_seq), (1, 1), "{summary:?}");
    let found = c
        .match_hashes(batch(vec![pdq_query(other.to_vec())]))
        .await
        .unwrap()
        .into_inner();
    let entry = found.results[0].hits[0].entry_id.clone();
    let retracted = admin
        .retract(proto::RetractRequest {
            id: entry.clone(),
            reason: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(retracted.retracted && retracted.changed);
    let gone = c
        .match_hashes(batch(vec![pdq_query(other.to_vec())]))
        .await
        .unwrap()
        .into_inner();
    assert!(gone.results[0].hits.is_empty());
    let sets = admin
        .list_sets(proto::ListSetsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sets.sets.len(), 2);
    let stats = admin
        .stats(proto::StatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (stats.sets, stats.entries, stats.matchable, stats.matches),
        (2, 2, 1, 1)
    );
    let bad = admin
        .get_entry(proto::EntryRef { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let missing = admin
        .get_entry(proto::EntryRef { id: "0".repeat(32) })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // An import chunk over the admin service's 4 MiB limit.
    let status = admin
        .import(tokio_stream::iter(vec![proto::ImportChunk {
            set: "hotline-b/list".into(),
            data: vec![b'x'; 5 << 20],
            ..Default::default()
        }]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&a.admin_socket), 0o600);
        assert_eq!(mode(a.admin_socket.parent().unwrap()), 0o700);
    }
    node.stop().await;
    assert!(!a.admin_socket.exists());
}

#[tokio::test]
async fn same_host_services_can_match_over_a_unix_socket() {
    use hashfed::database::Database;
    use hashfed::server::Node;
    use std::sync::Arc;
    let (_tmp, dir) = nodes::node_dir("provider-u");
    let config_path = dir.join("hashfed.toml");
    let mut config = hashfed::identity::load_config(&dir).unwrap();
    config.listen.match_socket = Some("run/match.sock".into());
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let db = Database::open(&dir.join("store"), &hashfed::store::StoreOptions::default()).unwrap();
    add_pdq(&db, "hotline-a/csam", &[PDQ]);
    let db = Arc::new(db);
    let config = hashfed::identity::load_config(&dir).unwrap();
    let node = Node::start(&dir, &config, db.clone()).await.unwrap();
    let socket = node.addresses().match_socket.clone().unwrap();
    assert_eq!(socket, dir.join("run/match.sock"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
    }
    let mut c = MatchClient::new(
        hashfed::service::client::unix_channel(&socket)
            .await
            .unwrap(),
    );
    let r = c
        .match_hashes(batch(vec![pdq_query(PDQ.to_vec())]))
        .await
        .unwrap()
        .into_inner();
    let id: hashfed::store::matches::MatchId = r.results[0].hits[0].match_id.parse().unwrap();
    let record = db.match_record(&id).unwrap().unwrap();
    assert_eq!(record.client, "local-socket");
    // A second node on the same directory is refused: the socket is live.
    let second = Node::start(&dir, &config, db.clone()).await;
    assert!(second.is_err());
    node.stop(std::time::Duration::from_secs(2)).await.unwrap();
    assert!(!socket.exists());
}
