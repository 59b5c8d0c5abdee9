//! The repository's development certificates (`certs/`), and the command
//! that regenerates them: a node built on them serves the right roles and
//! refuses the rest.

use crate::nodes;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hashfed::database::Database;
use hashfed::identity::tls::CertKey;
use hashfed::server::Node;
use hashfed::store::StoreOptions;

fn cert(certs: &Path, stem: &str) -> CertKey {
    let read = |ext: &str| std::fs::read_to_string(certs.join(format!("{stem}.{ext}"))).unwrap();
    CertKey {
        cert: read("pem"),
        key: read("key"),
    }
}

async fn check(certs: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dev");
    let made = hashfed::identity::init_with(&dir, "dev", Some(certs)).unwrap();
    assert!(made.config.dev_certs);
    nodes::ephemeral_ports(&dir);
    let db = Arc::new(Database::open(&dir.join("store"), &StoreOptions::default()).unwrap());
    let config = hashfed::identity::load_config(&dir).unwrap();
    let node = Node::start(&dir, &config, db).await.unwrap();
    let a = node.addresses().clone();
    let local = cert(certs, "local-client");
    let operator = cert(certs, "operator");
    assert_eq!(
        nodes::handshake_outcome(&dir, a.match_, Some(&local)).await,
        "OK"
    );
    assert_eq!(
        nodes::handshake_outcome(&dir, a.admin, Some(&operator)).await,
        "OK"
    );
    assert_eq!(
        nodes::handshake_outcome(&dir, a.admin, Some(&local)).await,
        "UnknownCA"
    );
    assert_eq!(
        nodes::handshake_outcome(&dir, a.match_, Some(&operator)).await,
        "UnknownCA"
    );
    assert_eq!(
        nodes::handshake_outcome(&dir, a.match_, Some(&cert(certs, "expired-client"))).await,
        "CertificateExpired"
    );
    assert_eq!(
        nodes::handshake_outcome(&dir, a.match_, Some(&cert(certs, "unknown-ca-client"))).await,
        "UnknownCA"
    );
    // Certificates issued by a node built on the set chain to its CAs.
    let issued = hashfed::identity::roles::issue_client(
        &dir,
        "svc",
        hashfed::identity::roles::ClientRole::Local,
        1,
    )
    .unwrap();
    assert_eq!(
        nodes::handshake_outcome(&dir, a.match_, Some(&issued)).await,
        "OK"
    );
    // Keys copied into the node are owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("tls/match.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    node.stop(Duration::from_secs(2)).await.unwrap();
}

#[tokio::test]
async fn the_committed_development_certificates_work() {
    check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")).await;
}

#[tokio::test]
async fn regenerated_development_certificates_work() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("certs");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["dev-certs", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    check(&out).await;
    // It never overwrites.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args(["dev-certs", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
}
