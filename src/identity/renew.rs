//! Renewing the node's certificates while it serves.
//!
//! Peers pin the node CA, not its leaf certificates, so new leaves from the
//! same CA need nobody's cooperation: `hashfed keys rotate` issues new
//! server certificates (federation, match, admin) and a new peer client
//! certificate, and the running node serves them from the next handshake
//! on (see [`super::server::ServerCerts::reload`]; the peer client
//! certificate is read at every dial).
//!
//! Eight files change, and a certificate must never sit beside another
//! certificate's key. So the new files are first written beside the old
//! (`*.next`, [`stage`]), then (once the caller has recorded the renewal:
//! the store's journal, with its audit record) a marker
//! (`tls/renew.commit`) commits them, then each is renamed over its old
//! file and the marker removed ([`commit`]). [`recover`] finishes a
//! committed (or journalled) renewal a crash interrupted, and drops one
//! that was neither.

use std::fs;
use std::path::Path;

use super::client::PEER_CLIENT;
use super::tls::{self, CertKey, Usage};
use super::{io, load_config, remove_if_there, sync_dir, write_file, IdentityError, SERVER_DAYS};

/// The leaf certificates a renewal replaces (stems in `DIR/tls`).
const LEAVES: [&str; 4] = ["federation", "match", "admin", PEER_CLIENT];

const MARKER: &str = "renew.commit";

/// The files of one leaf: (final path, staged path, secret).
fn files(tls_dir: &Path, stem: &str) -> [(std::path::PathBuf, std::path::PathBuf, bool); 2] {
    let file = |ext: &str, secret| {
        (
            tls_dir.join(format!("{stem}.{ext}")),
            tls_dir.join(format!("{stem}.{ext}.next")),
            secret,
        )
    };
    [file("key", true), file("pem", false)]
}

/// Finishes a committed renewal a crash interrupted, or drops the staged
/// files of an uncommitted one. Call before reading the certificates, with
/// the node directory owned by this process.
/// `journalled`: the renewal was recorded, so it is finished even before
/// its marker was written.
pub fn recover(dir: &Path, journalled: bool) -> Result<(), IdentityError> {
    let tls_dir = dir.join("tls");
    let committed = journalled || tls_dir.join(MARKER).is_file();
    let staged = LEAVES
        .iter()
        .any(|stem| files(&tls_dir, stem).iter().any(|(_, s, _)| s.exists()));
    if committed && staged {
        tracing::warn!("finishing a certificate renewal interrupted after its commit");
    }
    roll(&tls_dir, committed)
}

/// Renames the staged files over the old ones and removes the marker
/// (`committed`), or removes the staged files.
fn roll(tls_dir: &Path, committed: bool) -> Result<(), IdentityError> {
    for stem in LEAVES {
        for (path, staged, _) in files(tls_dir, stem) {
            if !staged.exists() {
                continue;
            }
            if committed {
                fs::rename(&staged, &path).map_err(io(&path))?;
            } else {
                remove_if_there(&staged)?;
            }
        }
    }
    if committed {
        sync_dir(tls_dir);
        remove_if_there(&tls_dir.join(MARKER))?;
    }
    Ok(())
}

/// Issues new leaf certificates for the node in `dir` from its node CA and
/// puts them in place (see the module's notes). Returns the stems renewed.
/// Nodes on the development certificates have fixed ones and are refused.
pub fn renew(dir: &Path) -> Result<Vec<&'static str>, IdentityError> {
    let renewed = stage(dir)?;
    commit(dir)?;
    Ok(renewed)
}

/// Issues new leaf certificates for the node in `dir` from its node CA and
/// writes them beside the old ones; [`commit`] puts them in place. Returns
/// the names of the certificates staged.
pub fn stage(dir: &Path) -> Result<Vec<&'static str>, IdentityError> {
    let config = load_config(dir)?;
    if config.dev_certs {
        return Err(IdentityError::Certificate(
            "this node uses the fixed development certificates; they are not renewed".into(),
        ));
    }
    recover(dir, false)?;
    let tls_dir = dir.join("tls");
    let read = |name: &str| {
        let path = tls_dir.join(name);
        fs::read_to_string(&path).map_err(io(&path))
    };
    let ca = CertKey {
        cert: read("node-ca.pem")?,
        key: read("node-ca.key")?,
    };
    let ca_name = super::node_ca_name(&config.name, &config.node_id);
    let names = super::server_names(&config.node_id);
    let mut issued = Vec::with_capacity(LEAVES.len());
    for stem in LEAVES {
        let leaf = if stem == PEER_CLIENT {
            super::client::peer_client_cert(&ca_name, &ca, &config.node_id)?
        } else {
            tls::issue(&ca_name, &ca, &names, Usage::Server, SERVER_DAYS)?
        };
        issued.push((stem, leaf));
    }
    for (stem, leaf) in &issued {
        let [key, cert] = files(&tls_dir, stem);
        for ((_, staged, secret), text) in [(key, &leaf.key), (cert, &leaf.cert)] {
            write_file(&staged, text, secret)?;
        }
    }
    sync_dir(&tls_dir);
    Ok(issued.into_iter().map(|(stem, _)| stem).collect())
}

/// Puts a staged renewal in place: the marker commits it, then each file
/// is renamed over its old one.
pub fn commit(dir: &Path) -> Result<(), IdentityError> {
    let tls_dir = dir.join("tls");
    write_file(&tls_dir.join(MARKER), "", false)?;
    sync_dir(&tls_dir);
    roll(&tls_dir, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join("tls").join(name)).unwrap()
    }

    #[test]
    fn renewal_replaces_every_leaf_and_survives_a_crash() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a");
        crate::identity::init(&dir, "a").unwrap();
        let before: Vec<String> = LEAVES
            .iter()
            .map(|s| read(&dir, &format!("{s}.pem")))
            .collect();
        let ca = read(&dir, "node-ca.pem");
        assert_eq!(renew(&dir).unwrap(), LEAVES.to_vec());
        for (stem, old) in LEAVES.iter().zip(&before) {
            assert_ne!(&read(&dir, &format!("{stem}.pem")), old, "{stem}");
        }
        assert_eq!(read(&dir, "node-ca.pem"), ca);
        crate::identity::server::ServerCerts::load(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("tls/federation.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "renewed keys are owner-only");
        }

        // Staged but not committed: dropped, the old files stay.
        let current = read(&dir, "match.pem");
        fs::write(dir.join("tls/match.pem.next"), "half").unwrap();
        recover(&dir, false).unwrap();
        assert_eq!(read(&dir, "match.pem"), current);
        assert!(!dir.join("tls/match.pem.next").exists());

        // Committed, then a crash after one rename: finished.
        let tls_dir = dir.join("tls");
        fs::copy(tls_dir.join("admin.pem"), tls_dir.join("match.pem.next")).unwrap();
        fs::copy(tls_dir.join("admin.key"), tls_dir.join("match.key.next")).unwrap();
        fs::write(tls_dir.join(MARKER), "").unwrap();
        recover(&dir, false).unwrap();
        assert_eq!(read(&dir, "match.pem"), read(&dir, "admin.pem"));
        assert!(!tls_dir.join(MARKER).exists());
        crate::identity::server::ServerCerts::load(&dir).unwrap();

        // Staged and journalled, the marker never written: finished.
        assert_eq!(stage(&dir).unwrap(), LEAVES.to_vec());
        let next = read(&dir, "federation.pem.next");
        recover(&dir, true).unwrap();
        assert_eq!(read(&dir, "federation.pem"), next);
        assert!(!tls_dir.join("federation.pem.next").exists());
        crate::identity::server::ServerCerts::load(&dir).unwrap();
    }
}
