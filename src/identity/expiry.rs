//! When the node's certificates expire, so operators hear of it weeks
//! ahead (`hashfed status`, and a metric to alert on).
//!
//! Only the validity's end is read, from certificates this node made
//! (rcgen, DER inside PEM), with a small bounds-checked DER walk: every
//! length is checked against what is left, nothing else is interpreted, and
//! anything unexpected is an error, never a panic.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::IdentityError;

/// The node's certificates, by the name they are shown under, and their
/// files in `tls/`.
const CERTIFICATES: [(&str, &str); 7] = [
    ("node-ca", "node-ca.pem"),
    ("federation", "federation.pem"),
    ("match", "match.pem"),
    ("admin", "admin.pem"),
    ("clients-ca", "clients-ca.pem"),
    ("operators-ca", "operators-ca.pem"),
    ("peer-client", "peer-client.pem"),
];

/// One certificate's end of validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expiry {
    /// Which (`node-ca`, `federation`, ...).
    pub name: &'static str,
    /// Its end of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The end of validity of each of the node's certificates in `dir` (those
/// present: a development-certificate node has no `peer-client`).
pub fn expiries(dir: &Path) -> Result<Vec<Expiry>, IdentityError> {
    let mut out = Vec::new();
    for (name, file) in CERTIFICATES {
        let path = dir.join("tls").join(file);
        if !path.exists() {
            continue;
        }
        let pem = std::fs::read(&path).map_err(|source| IdentityError::Io {
            path: path.clone(),
            source,
        })?;
        let bad = |why: &str| IdentityError::Certificate(format!("{}: {why}", path.display()));
        let der = CertificateDer::from_pem_slice(&pem).map_err(super::tls_error(format!(
            "{}: no PEM certificate",
            path.display()
        )))?;
        let not_after = not_after(&der).ok_or_else(|| bad("no readable validity"))?;
        out.push(Expiry { name, not_after });
    }
    Ok(out)
}

/// A DER element at the start of `bytes`: its tag, contents, and the rest.
fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *bytes.first()?;
    let first = *bytes.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in bytes.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let contents = bytes.get(header..header.checked_add(len)?)?;
    Some((tag, contents, &bytes[header + len..]))
}

/// The notAfter of an X.509 certificate, seconds since the Unix epoch.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = element(cert)?;
    (tag == SEQUENCE).then_some(())?;
    let (tag, tbs, _) = element(certificate)?;
    (tag == SEQUENCE).then_some(())?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
        rest = element(rest)?.2;
    } else {
        rest = after;
    }
    rest = element(rest)?.2; // signature algorithm
    rest = element(rest)?.2; // issuer
    let (tag, validity, _) = element(rest)?;
    (tag == SEQUENCE).then_some(())?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, time)
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (0x18, 14) => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let num = |i: usize| -> Option<u8> { rest.get(i..i + 2)?.parse().ok() };
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(num(0)?).ok()?, num(2)?).ok()?;
    let t = time::Time::from_hms(num(4)?, num(6)?, num(8)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_node_certificates_expire_when_issued_to() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("n");
        super::super::init(&dir, "n").unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let all = expiries(&dir).unwrap();
        let names: Vec<&str> = all.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            [
                "node-ca",
                "federation",
                "match",
                "admin",
                "clients-ca",
                "operators-ca",
                "peer-client"
            ]
        );
        let days = |e: &Expiry| (e.not_after - now) / 86_400;
        let ca = &all[0];
        assert!((3640..=3650).contains(&days(ca)), "{}", days(ca));
        let server = &all[1];
        assert!((360..=365).contains(&days(server)), "{}", days(server));
    }

    #[test]
    fn malformed_der_is_refused_not_panicked_on() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01]), None);
        for n in 0..64u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x30).collect();
            let _ = not_after(&junk);
        }
        assert_eq!(parse_time(0x17, b"991231235959Z"), Some(946_684_799));
        assert_eq!(parse_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(parse_time(0x17, b"9912312359Z"), None);
    }
}
