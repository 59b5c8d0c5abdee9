//! Which certificates each listener presents and accepts, and issuing
//! client certificates for local services and operators.

use std::fs;
use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::tls::{self, CertKey, Usage};
use super::{load_config, IdentityError};

/// A listener whose callers authenticate with client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Local services: client certificates from the clients CA.
    Match,
    /// Operators: client certificates from the operators CA.
    Admin,
}

/// Who a client certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRole {
    /// A local service calling the match listener.
    Local,
    /// An operator calling the admin listener.
    Operator,
}

fn read(path: &Path) -> Result<String, IdentityError> {
    fs::read_to_string(path).map_err(|source| IdentityError::Io {
        path: path.to_owned(),
        source,
    })
}

/// The stem of a client role's CA files and its common name.
pub(super) fn client_ca(role: ClientRole, node_id: &str) -> (&'static str, String) {
    match role {
        ClientRole::Local => ("clients-ca", format!("hashfed local clients CA {node_id}")),
        ClientRole::Operator => ("operators-ca", format!("hashfed operators CA {node_id}")),
    }
}

/// TLS for a listener: the node's server certificate for it, and client
/// certificates required, verified against that role's CA only (TLS 1.3
/// and 1.2 as rustls offers them).
pub fn server_tls(dir: &Path, listener: Listener) -> Result<ServerTlsConfig, IdentityError> {
    let tls_dir = dir.join("tls");
    let (stem, ca) = match listener {
        Listener::Match => ("match", "clients-ca"),
        Listener::Admin => ("admin", "operators-ca"),
    };
    let identity = Identity::from_pem(
        read(&tls_dir.join(format!("{stem}.pem")))?,
        read(&tls_dir.join(format!("{stem}.key")))?,
    );
    let roots = Certificate::from_pem(read(&tls_dir.join(format!("{ca}.pem")))?);
    Ok(ServerTlsConfig::new()
        .identity(identity)
        .client_ca_root(roots)
        .client_auth_optional(false))
}

/// Issues a client certificate named `name` for `role`, valid for `days`.
pub fn issue_client(
    dir: &Path,
    name: &str,
    role: ClientRole,
    days: i64,
) -> Result<CertKey, IdentityError> {
    let config = load_config(dir)?;
    let (stem, ca_name) = client_ca(role, &config.node_id);
    let tls_dir = dir.join("tls");
    let ca = CertKey {
        cert: read(&tls_dir.join(format!("{stem}.pem")))?,
        key: read(&tls_dir.join(format!("{stem}.key")))?,
    };
    tls::issue(&ca_name, &ca, &[name.to_owned()], Usage::Client, days)
}
