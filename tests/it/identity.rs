//! `hashfed init`: a node directory with a signing key, a node id derived
//! from it, CAs and server certificates, keys readable by the owner only.

use std::process::Command;

use hashfed::identity::{init, load_config, IdentityError};

#[test]
fn init_lays_out_a_node_directory_with_private_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let out = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args([
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            "hotline-a",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = load_config(&dir).unwrap();
    assert_eq!(config.name, "hotline-a");
    assert_eq!(config.node_id.len(), 32);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&config.node_id));
    for file in [
        "keys/signing.pem",
        "tls/node-ca.pem",
        "tls/node-ca.key",
        "tls/federation.pem",
        "tls/match.key",
        "tls/admin.pem",
        "tls/clients-ca.key",
        "tls/operators-ca.pem",
    ] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
        for secret in [
            "keys/signing.pem",
            "tls/node-ca.key",
            "tls/match.key",
            "tls/operators-ca.key",
        ] {
            assert_eq!(mode(secret), 0o600, "{secret}");
        }
        assert_eq!(mode("keys"), 0o700);
        assert_eq!(mode("tls/node-ca.pem"), 0o644);
    }
    // A second init must not overwrite the keys.
    let again = Command::new(env!("CARGO_BIN_EXE_hashfed"))
        .args([
            "init",
            "--dir",
            dir.to_str().unwrap(),
            "--name",
            "hotline-a",
        ])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a node"));
    assert_eq!(load_config(&dir).unwrap(), config);
}

#[test]
fn bad_names_and_a_forged_node_id_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for bad in ["", "Upper", "a/b", "../x", "with space"] {
        assert!(
            matches!(
                init(&tmp.path().join("n"), bad),
                Err(IdentityError::BadName(_))
            ),
            "{bad:?}"
        );
    }
    let dir = tmp.path().join("n");
    init(&dir, "provider-1").unwrap();
    let path = dir.join("hashfed.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let id = load_config(&dir).unwrap().node_id;
    std::fs::write(&path, text.replace(&id, &"a".repeat(32))).unwrap();
    let err = load_config(&dir).unwrap_err().to_string();
    assert!(
        err.contains("does not belong to the node's signing key"),
        "{err}"
    );
}
