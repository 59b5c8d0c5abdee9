//! Development certificates: one fixed set of CAs, server and client
//! certificates that the repository carries in `certs/`, so that the demo,
//! the examples and the tests can name certificate files that exist before
//! any node does (`hashfed init --dev-certs certs` builds a node on them).
//!
//! Their private keys are public. A production node never uses them: it
//! makes its own with `hashfed init`.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use super::roles::{client_ca, ClientRole};
use super::tls::{self, CertKey, Usage};
use super::{write_file, IdentityError};

/// Years the development CAs and certificates are valid.
const DEV_DAYS: i64 = 3650;

/// The node id the development CAs are named for (they are not tied to a
/// signing key; nodes built on them keep their own id).
pub(super) use crate::config::DEV_ID;

/// The server certificate names: what a local client dials.
fn server_names() -> Vec<String> {
    vec!["localhost".to_owned(), "127.0.0.1".to_owned()]
}

/// The files [`write()`] makes, as (stem, what it is).
pub const FILES: &[(&str, &str)] = &[
    (
        "node-ca",
        "node CA: signs the server certificates; clients trust it",
    ),
    ("server", "server certificate for localhost and 127.0.0.1"),
    ("clients-ca", "issues local services' client certificates"),
    ("operators-ca", "issues operators' client certificates"),
    ("local-client", "a local service (match listener)"),
    ("operator", "an operator (admin listener)"),
    (
        "expired-client",
        "a local service whose certificate expired",
    ),
    (
        "unknown-ca-client",
        "a local service from a CA no node trusts",
    ),
];

/// Writes a fresh set of development certificates into `out` (which must
/// not hold them yet): `STEM.pem` and `STEM.key` for every entry of
/// [`FILES`].
pub fn write(out: &Path) -> Result<(), IdentityError> {
    std::fs::create_dir_all(out).map_err(|source| IdentityError::Io {
        path: out.to_owned(),
        source,
    })?;
    let save = |stem: &str, ck: &CertKey| -> Result<(), IdentityError> {
        write_file(&out.join(format!("{stem}.pem")), &ck.cert, false)?;
        write_file(&out.join(format!("{stem}.key")), &ck.key, true)
    };
    let node_ca_name = format!("hashfed node CA {DEV_ID}");
    let node_ca = tls::new_ca(&node_ca_name, DEV_DAYS)?;
    save("node-ca", &node_ca)?;
    let server = tls::issue(
        &node_ca_name,
        &node_ca,
        &server_names(),
        Usage::Server,
        DEV_DAYS,
    )?;
    save("server", &server)?;
    let now = OffsetDateTime::now_utc();
    for (role, client, days) in [
        (ClientRole::Local, "local-client", DEV_DAYS),
        (ClientRole::Operator, "operator", DEV_DAYS),
    ] {
        let (stem, name) = client_ca(role, DEV_ID);
        let ca = tls::new_ca(&name, DEV_DAYS)?;
        save(stem, &ca)?;
        let cert = tls::issue(&name, &ca, &[client.to_owned()], Usage::Client, days)?;
        save(client, &cert)?;
        if role == ClientRole::Local {
            let expired = tls::issue_between(
                &name,
                &ca,
                &["expired-client".to_owned()],
                Usage::Client,
                now - Duration::days(30),
                now - Duration::days(1),
            )?;
            save("expired-client", &expired)?;
        }
    }
    let stranger_name = "hashfed unknown CA (development)";
    let stranger = tls::new_ca(stranger_name, DEV_DAYS)?;
    let client = tls::issue(
        stranger_name,
        &stranger,
        &["unknown-ca-client".to_owned()],
        Usage::Client,
        DEV_DAYS,
    )?;
    save("unknown-ca-client", &client)
}

/// The CA and server files a node directory takes from a development set,
/// as (file in the set, file in `DIR/tls`).
pub(super) fn node_files() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for ext in ["pem", "key"] {
        for stem in ["node-ca", "clients-ca", "operators-ca"] {
            files.push((format!("{stem}.{ext}"), format!("{stem}.{ext}")));
        }
        for listener in ["federation", "match", "admin"] {
            files.push((format!("server.{ext}"), format!("{listener}.{ext}")));
        }
    }
    files
}
