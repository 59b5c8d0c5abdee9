//! Client roles, and issuing client certificates for local services and
//! operators.

use std::fs;
use std::path::Path;

use time::OffsetDateTime;

use super::tls::{self, CertKey, Usage};
use super::{load_config, IdentityError};

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

/// Issues a client certificate named `name` for `role`, valid for `days`.
pub fn issue_client(
    dir: &Path,
    name: &str,
    role: ClientRole,
    days: i64,
) -> Result<CertKey, IdentityError> {
    let (not_before, not_after) = tls::window(days);
    issue_client_between(dir, name, role, not_before, not_after)
}

/// As [`issue_client`], valid from `not_before` to `not_after`.
pub fn issue_client_between(
    dir: &Path,
    name: &str,
    role: ClientRole,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertKey, IdentityError> {
    let config = load_config(dir)?;
    let (stem, ca_name) = client_ca(role, config.ca_id());
    let tls_dir = dir.join("tls");
    let ca = CertKey {
        cert: read(&tls_dir.join(format!("{stem}.pem")))?,
        key: read(&tls_dir.join(format!("{stem}.key")))?,
    };
    tls::issue_between(
        &ca_name,
        &ca,
        &[name.to_owned()],
        Usage::Client,
        not_before,
        not_after,
    )
}
