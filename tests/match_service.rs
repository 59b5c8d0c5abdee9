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

/// The operator's path: init, import, issue a client certificate, serve,
/// match from the issued files, stop with SIGTERM (clean close, snapshot).
#[tokio::test]
async fn serve_answers_issued_clients_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_hashfed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();
    assert!(Command::new(bin)
        .args(["init", "--dir", d, "--name", "provider-b"])
        .status()
        .unwrap()
        .success());
    let config = dir.join("hashfed.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("127.0.0.1:7702", "127.0.0.1:0");
    std::fs::write(&config, text).unwrap();
    let list = tmp.path().join("list.txt");
    let hex: String = PDQ.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(&list, format!("pdq {hex}\n")).unwrap();
    assert!(Command::new(bin)
        .args(["import", "--dir", d, "--set", "hotline-a/csam"])
        .arg(&list)
        .status()
        .unwrap()
        .success());
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    let issued = Command::new(bin)
        .args([
            "client",
            "issue",
            "--dir",
            d,
            "svc",
            "--out",
            certs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join("svc.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    let mut server = Command::new(bin)
        .args(["serve", "--dir", d])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("serve exited early").unwrap();
        if let Some(addr) = line.split("match listening on ").nth(1) {
            break addr.trim().to_owned();
        }
    };
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read_to_string(dir.join("tls/node-ca.pem")).unwrap(),
        ))
        .identity(Identity::from_pem(
            std::fs::read_to_string(certs.join("svc.pem")).unwrap(),
            std::fs::read_to_string(certs.join("svc.key")).unwrap(),
        ))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hits = MatchClient::new(channel)
        .match_hashes(pdq_query(PDQ.to_vec()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hits.results[0].hits.len(), 1);

    assert!(Command::new("kill")
        .arg(server.id().to_string())
        .status()
        .unwrap()
        .success());
    let status = server.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("stopped cleanly")),
        "{rest:?}"
    );
    assert!(dir.join("store/index.snapshot").is_file());
}
