//! Certificates: the node's CA, its server certificates and the two client
//! CAs, made with rcgen.
//!
//! Roles are kept apart by *who signs*, not by a field a certificate could
//! claim: each listener trusts exactly one client CA (local services: the
//! clients CA; operators: the operators CA; peers: their own pinned CAs),
//! so a certificate valid for one role cannot even be verified by the
//! others.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::IdentityError;

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct CertKey {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

fn err(e: rcgen::Error) -> IdentityError {
    super::tls_error("making a certificate")(e)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "hashfed");
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// From an hour ago (slack for clocks that run a little behind) to `days`
/// from now.
pub(super) fn window(days: i64) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (now - Duration::hours(1), now + Duration::days(days))
}

fn validity(params: &mut CertificateParams, days: i64) {
    (params.not_before, params.not_after) = window(days);
}

/// A new self-signed CA valid for `days`.
pub fn new_ca(common_name: &str, days: i64) -> Result<CertKey, IdentityError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = ca_params(common_name);
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Whether a leaf certificate serves (a listener) or authenticates (a caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// TLS server.
    Server,
    /// TLS client.
    Client,
}

/// A leaf certificate for `names` (DNS names or IP addresses; the first is
/// also the common name), signed by the CA `ca_name`/`ca`, valid for `days`.
pub fn issue(
    ca_name: &str,
    ca: &CertKey,
    names: &[String],
    usage: Usage,
    days: i64,
) -> Result<CertKey, IdentityError> {
    let (not_before, not_after) = window(days);
    issue_between(ca_name, ca, names, usage, not_before, not_after)
}

/// As [`issue`], valid from `not_before` to `not_after` (the development
/// certificates include an expired one, to show it refused).
pub fn issue_between(
    ca_name: &str,
    ca: &CertKey,
    names: &[String],
    usage: Usage,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertKey, IdentityError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err)?;
    let issuer = Issuer::new(ca_params(ca_name), ca_key);
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "hashfed");
    dn.push(
        DnType::CommonName,
        names.first().map_or("hashfed", String::as_str),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_pem_certificates() {
        let ca = new_ca("test CA", 30).unwrap();
        assert!(ca.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let leaf = issue(
            "test CA",
            &ca,
            &["localhost".into(), "127.0.0.1".into()],
            Usage::Server,
            1,
        )
        .unwrap();
        assert!(leaf.cert.contains("BEGIN CERTIFICATE"));
        assert!(leaf.key.contains("PRIVATE KEY"));
        assert!(issue(
            "test CA",
            &CertKey {
                cert: String::new(),
                key: "junk".into()
            },
            &[],
            Usage::Client,
            1
        )
        .is_err());
    }
}
