//! Who a node is: its signing key and node id, its certificates, and the
//! node directory that holds them.
//!
//! * [`keys`]: the Ed25519 signing key and the node id derived from it;
//! * [`tls`]: the node CA, server certificates and the client CAs (rcgen);
//! * [`roles`]: client roles and their certificates;
//! * [`server`]: TLS 1.3 for the listeners (rustls), one trusted CA per role;
//! * [`peers`]: the federation listener's peer trust, changed while the
//!   node runs, and each peer's open connections (closed on revocation);
//! * [`client`]: dialling a peer's federation listener with mTLS;
//! * [`renew`]: new server and peer-client certificates from the node CA,
//!   swapped in while the node serves.
//!
//! `hashfed init` lays a node directory out like this (keys owner-only):
//!
//! ```text
//! DIR/hashfed.toml            name, node id, listen addresses
//! DIR/keys/signing.pem        Ed25519 signing key (PKCS#8)
//! DIR/keys/rotations.json     its first key and rotations (after `hashfed keys rotate`)
//! DIR/tls/node-ca.{pem,key}   signs this node's server certificates; peers pin it
//! DIR/tls/{federation,match,admin}.{pem,key}   one server certificate per listener
//! DIR/tls/clients-ca.{pem,key}    issues local services' client certificates
//! DIR/tls/operators-ca.{pem,key}  issues operators' client certificates
//! DIR/tls/peer-client.{pem,key}   this node's client certificate towards peers
//!                                 (from the node CA; not on dev-cert nodes)
//! DIR/store/                  the hash database (created on first use)
//! ```

pub mod client;
pub mod dev;
pub mod expiry;
pub mod https;
pub mod keys;
pub mod peers;
pub mod renew;
pub mod roles;
pub mod server;
#[cfg(test)]
mod testing;
pub mod tls;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{Config, Limits, Listen, Retention};
pub use keys::NodeId;

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the node directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What happened.
        source: std::io::Error,
    },
    /// The directory already holds a node.
    #[error("{0} already holds a node (hashfed.toml exists); refusing to overwrite its keys")]
    Exists(PathBuf),
    /// A node name outside the allowed alphabet.
    #[error("node name {0:?} must be 1-64 of a-z 0-9 - (it appears in certificates and set ids)")]
    BadName(String),
    /// A key could not be made or read.
    #[error("signing key: {0}")]
    Key(String),
    /// A key, or the key history, could not be encoded or decoded: the
    /// cause is the decoder's error.
    #[error("signing key: {what}")]
    KeyFormat {
        /// Which key or file.
        what: String,
        /// The decoder's (or encoder's) error.
        source: BoxError,
    },
    /// A certificate could not be made or used.
    #[error("certificate: {0}")]
    Certificate(String),
    /// A certificate, a private key or a TLS setting that the TLS
    /// libraries (rustls, rcgen, tonic) refused: the cause is theirs.
    #[error("certificate: {what}")]
    Tls {
        /// Which certificate, key or setting.
        what: String,
        /// The library's error.
        source: BoxError,
    },
    /// The configuration file is malformed.
    #[error("configuration {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The configuration file is not valid TOML for a configuration, or
    /// could not be written as TOML.
    #[error("configuration {path}")]
    ConfigFormat {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: BoxError,
    },
    /// The node was built on the development certificates, whose node CA
    /// every such node shares: a peer trusting it would trust them all.
    #[error(
        "development certificates cannot federate: every dev-cert node shares one node CA, \
         so a peer could not tell them apart; make the node with `hashfed init` (no --dev-certs)"
    )]
    DevCertsCannotFederate,
    /// An address to dial (a peer's, or a node's listener) is not
    /// `host:port`.
    #[error("endpoint {endpoint:?}: {message}")]
    Endpoint {
        /// The address given.
        endpoint: String,
        /// What is wrong.
        message: String,
        /// The parser's error, if it gave one.
        source: Option<BoxError>,
    },
}

/// The cause an [`IdentityError`] keeps from a library's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Makes an error of the TLS libraries an [`IdentityError::Tls`] about
/// `what`.
pub(crate) fn tls_error<E>(what: impl Into<String>) -> impl FnOnce(E) -> IdentityError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    move |e| IdentityError::Tls {
        what,
        source: Box::new(e),
    }
}

/// Makes a key decoder's error an [`IdentityError::KeyFormat`] about
/// `what`.
fn key_error<E>(what: impl Into<String>) -> impl FnOnce(E) -> IdentityError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let what = what.into();
    move |e| IdentityError::KeyFormat {
        what,
        source: Box::new(e),
    }
}

/// Days the node CA and the client CAs are valid.
const CA_DAYS: i64 = 3650;
/// Days a server certificate is valid (rotation comes with governance).
const SERVER_DAYS: i64 = 365;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Removes `path` if it exists (a stray file from an interrupted write).
fn remove_if_there(path: &Path) -> Result<(), IdentityError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Makes a directory's entries (renames) durable; best effort, as not
/// every platform can open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Creates `path` (never overwriting) with `contents`, readable by the
/// owner only when `secret`, and syncs it.
pub fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), IdentityError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn make_dir(path: &Path, secret: bool) -> Result<(), IdentityError> {
    fs::create_dir_all(path).map_err(io(path))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(io(path))?;
    }
    Ok(())
}

/// What [`init`] made.
#[derive(Clone, Debug)]
pub struct Initialized {
    /// The configuration written.
    pub config: Config,
    /// The node CA certificate (PEM), which peers will pin.
    pub node_ca: String,
}

/// Creates a node directory: signing key, node id, CAs, server
/// certificates and configuration. Refuses a directory that already holds
/// a node.
pub fn init(dir: &Path, name: &str) -> Result<Initialized, IdentityError> {
    init_with(dir, name, None)
}

/// As [`init`], but with the CAs and server certificates copied from a set
/// of development certificates (see [`dev`]) when `dev_certs` is given.
pub fn init_with(
    dir: &Path,
    name: &str,
    dev_certs: Option<&Path>,
) -> Result<Initialized, IdentityError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(IdentityError::BadName(name.chars().take(80).collect()));
    }
    let config_path = dir.join("hashfed.toml");
    if config_path.exists() {
        return Err(IdentityError::Exists(dir.to_owned()));
    }
    make_dir(dir, false)?;
    make_dir(&dir.join("keys"), true)?;
    make_dir(&dir.join("tls"), true)?;

    let signing = keys::generate();
    let node_id = NodeId::of(&signing.verifying_key());
    write_file(
        &dir.join("keys/signing.pem"),
        &keys::to_pem(&signing)?,
        true,
    )?;

    let tls_dir = dir.join("tls");
    if let Some(from) = dev_certs {
        for (source, target) in dev::node_files() {
            let path = from.join(&source);
            let text = fs::read_to_string(&path).map_err(io(&path))?;
            write_file(&tls_dir.join(target), &text, source.ends_with(".key"))?;
        }
        let node_ca = fs::read_to_string(tls_dir.join("node-ca.pem"))
            .map_err(io(&tls_dir.join("node-ca.pem")))?;
        return finish(dir, name, node_id, node_ca, true);
    }
    let save = |stem: &str, ck: &tls::CertKey| -> Result<(), IdentityError> {
        write_file(&tls_dir.join(format!("{stem}.pem")), &ck.cert, false)?;
        write_file(&tls_dir.join(format!("{stem}.key")), &ck.key, true)
    };
    let ca_name = node_ca_name(name, node_id.as_str());
    let node_ca = tls::new_ca(&ca_name, CA_DAYS)?;
    save("node-ca", &node_ca)?;
    let names = server_names(node_id.as_str());
    for listener in ["federation", "match", "admin"] {
        let cert = tls::issue(&ca_name, &node_ca, &names, tls::Usage::Server, SERVER_DAYS)?;
        save(listener, &cert)?;
    }
    for role in [roles::ClientRole::Local, roles::ClientRole::Operator] {
        let (stem, ca_name) = roles::client_ca(role, node_id.as_str());
        save(stem, &tls::new_ca(&ca_name, CA_DAYS)?)?;
    }
    // Before the configuration, which marks the directory complete (an
    // older node gets it from `client::ensure_peer_client_cert`).
    client::issue_peer_client(&tls_dir, &ca_name, &node_ca, node_id.as_str())?;
    finish(dir, name, node_id, node_ca.cert, false)
}

/// The node CA's name (its certificate's subject) for node `name`/`node_id`.
fn node_ca_name(name: &str, node_id: &str) -> String {
    format!("hashfed node CA {name} {node_id}")
}

/// The names a node's server certificates carry: `<node id>.hashfed` (what
/// peers dial it as) and loopback (local services and operators).
fn server_names(node_id: &str) -> Vec<String> {
    vec![
        format!("{node_id}.hashfed"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
    ]
}

/// Writes the configuration, the last file of a node directory.
fn finish(
    dir: &Path,
    name: &str,
    node_id: NodeId,
    node_ca: String,
    dev_certs: bool,
) -> Result<Initialized, IdentityError> {
    let config_path = dir.join("hashfed.toml");
    let config = Config {
        name: name.to_owned(),
        node_id: node_id.to_string(),
        listen: Listen::default(),
        dev_certs,
        quarantine: Default::default(),
        retention: Retention::default(),
        limits: Limits::default(),
        exchanges: Vec::new(),
    };
    let text = toml::to_string(&config).map_err(|e| IdentityError::ConfigFormat {
        path: config_path.clone(),
        source: Box::new(e),
    })?;
    write_file(&config_path, &text, false)?;
    tracing::info!(node = %node_id, "node directory initialised");
    Ok(Initialized { config, node_ca })
}

/// Reads `DIR/hashfed.toml` and checks the node id against the node's
/// first signing key (see [`keys::history`]).
pub fn load_config(dir: &Path) -> Result<Config, IdentityError> {
    let path = dir.join("hashfed.toml");
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    let config: Config = toml::from_str(&text).map_err(|e| IdentityError::ConfigFormat {
        path: path.clone(),
        source: Box::new(e),
    })?;
    let history = keys::history(dir)?;
    if history.node_id != config.node_id {
        return Err(IdentityError::Config {
            path,
            message: format!(
                "node_id {} does not belong to the node's signing key (which gives {})",
                config.node_id, history.node_id
            ),
        });
    }
    Ok(config)
}
