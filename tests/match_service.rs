//! The match service on loopback with real mutual TLS: a local service's
//! certificate is served, an operator's certificate and no certificate are
//! refused, malformed hashes are `INVALID_ARGUMENT`.

use std::sync::Arc;

use hashfed::database::Database;
use hashfed::identity::roles::{issue_client, server_tls, ClientRole, Listener};
use hashfed::model::{EntryData, SetId, SetInfo, Signal};
use hashfed::service::proto::{self, match_client::MatchClient};
use hashfed::store::{Change, StoreOptions};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Node {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

const PDQ: [u8; 32] = [0x3c; 32];

async fn start() -> Node {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    hashfed::identity::init(&dir, "provider-a").unwrap();
    let db = Database::open(&dir.join("store"), &StoreOptions::default()).unwrap();
    let set = SetId::new("hotline-a", "csam").unwrap();
    db.create_set(SetInfo::new(set.clone())).unwrap();
    let signal = Signal::from_bytes(hashfed::model::SignalType::Pdq, PDQ.to_vec()).unwrap();
    db.apply(
        &set,
        &[Change::Add(EntryData {
            signal,
            labels: vec!["A1".into()],
            external_id: None,
            vetting: vec![],
        })],
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = server_tls(&dir, Listener::Match).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hashfed::service::serve_match(
        Arc::new(db),
        tls,
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    Node {
        _tmp: tmp,
        dir,
        addr,
        stop: Some(stop),
    }
}

async fn client(
    node: &Node,
    role: Option<ClientRole>,
) -> Result<MatchClient<Channel>, tonic::transport::Error> {
    let ca = std::fs::read_to_string(node.dir.join("tls/node-ca.pem")).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(role) = role {
        let cert = issue_client(&node.dir, "uploader", role, 1).unwrap();
        tls = tls.identity(Identity::from_pem(cert.cert, cert.key));
    }
    let channel = Channel::from_shared(format!("https://{}", node.addr))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(MatchClient::new(channel))
}

fn pdq_query(value: Vec<u8>) -> proto::MatchRequest {
    proto::MatchRequest {
        queries: vec![proto::Query {
            signal: Some(proto::Signal {
                r#type: proto::SignalType::Pdq as i32,
                value,
                opaque_type: String::new(),
            }),
            pdq_variants: vec![],
            quality: Some(90),
            radius: None,
        }],
    }
}

#[tokio::test]
async fn local_services_match_over_mtls_and_other_roles_are_refused() {
    let mut node = start().await;
    let mut ok = client(&node, Some(ClientRole::Local)).await.unwrap();
    let mut near = PDQ.to_vec();
    near[0] ^= 0x0f;
    let response = ok.match_hashes(pdq_query(near)).await.unwrap().into_inner();
    let hits = &response.results[0].hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (
            hits[0].distance,
            hits[0].set.as_str(),
            hits[0].labels.clone()
        ),
        (4, "hotline-a/csam", vec!["A1".to_string()])
    );

    let bad = ok.match_hashes(pdq_query(vec![1, 2, 3])).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("query 0"), "{}", bad.message());
    let empty = ok
        .match_hashes(proto::MatchRequest { queries: vec![] })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);

    // An operator's certificate (another CA) and no certificate at all fail
    // the handshake, so no call gets through.
    for role in [Some(ClientRole::Operator), None] {
        let refused = match client(&node, role).await {
            Err(_) => true,
            Ok(mut c) => c.match_hashes(pdq_query(PDQ.to_vec())).await.is_err(),
        };
        assert!(refused, "{role:?} was served");
    }
    let _ = node.stop.take().map(|s| s.send(()));
}
