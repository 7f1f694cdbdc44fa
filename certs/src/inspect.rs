//! A readable summary of a certificate, for tests, logs and the flow view.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

use crate::CaError;

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject, RFC 4514 style (e.g. `CN=example.com`).
    pub subject: String,
    /// The issuer, RFC 4514 style (e.g. `CN=flowtap, O=flowtap`).
    pub issuer: String,
    /// The subject's first common name, if it has one.
    pub common_name: Option<String>,
    /// The subject's first organization name (O), if it has one.
    pub organization: Option<String>,
    /// DNS and IP subject alternative names, in certificate order.
    pub sans: Vec<SubjectAltName>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Whether BasicConstraints says `CA:TRUE`.
    pub is_ca: bool,
    /// The serial number as colon-separated hex, as OpenSSL prints it.
    pub serial: String,
}

/// A subject alternative name of the kinds flowtap mints.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A `dNSName` entry.
    Dns(String),
    /// An `iPAddress` entry.
    Ip(IpAddr),
}

impl CertSummary {
    /// The DNS names among the SANs.
    pub fn dns_names(&self) -> Vec<&str> {
        self.sans
            .iter()
            .filter_map(|san| match san {
                SubjectAltName::Dns(name) => Some(name.as_str()),
                SubjectAltName::Ip(_) => None,
            })
            .collect()
    }

    /// The IP addresses among the SANs.
    pub fn ip_addresses(&self) -> Vec<IpAddr> {
        self.sans
            .iter()
            .filter_map(|san| match san {
                SubjectAltName::Ip(ip) => Some(*ip),
                SubjectAltName::Dns(_) => None,
            })
            .collect()
    }
}

/// Summarises a DER certificate. Fails if it is not a parsable X.509 certificate; SAN kinds
/// other than DNS and IP are left out of [`CertSummary::sans`].
pub fn inspect(der: &[u8]) -> Result<CertSummary, CaError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CaError::Parse(e.to_string()))?;
    let validity = cert.validity();
    Ok(CertSummary {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        organization: cert
            .subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok())
            .map(str::to_owned),
        sans: sans(&cert)?,
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
        is_ca: cert.is_ca(),
        serial: cert.raw_serial_as_string(),
    })
}

/// PEM text of a DER certificate (`-----BEGIN CERTIFICATE-----`, `\n` line endings), the form
/// mitmproxy stores in `certificate_list`.
pub fn certificate_pem(der: &[u8]) -> String {
    crate::mint::certificate_pem(der)
}

fn sans(cert: &X509Certificate<'_>) -> Result<Vec<SubjectAltName>, CaError> {
    let Some(ext) = cert
        .subject_alternative_name()
        .map_err(|e| CaError::Parse(format!("subjectAltName: {e}")))?
    else {
        return Ok(Vec::new());
    };
    let names = ext
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(SubjectAltName::Dns((*dns).to_owned())),
            GeneralName::IPAddress(bytes) => ip_from_bytes(bytes).map(SubjectAltName::Ip),
            _ => None,
        });
    Ok(names.collect())
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn system_time(unix_seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(unix_seconds.unsigned_abs());
    if unix_seconds >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}
