//! Certificate parameters for the CA and its leaves, the process-wide leaf key, and the step
//! from a certificate chain to a finished rustls `ServerConfig`.

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use crate::keys::{DualKey, KeyType};
use crate::{CaError, provider};

/// Days the CA is valid, counted from two days before its creation (as mitmproxy).
pub(crate) const CA_VALIDITY_DAYS: i64 = 3650;
/// Days a leaf is valid, counted from two days before minting: stays under Chrome's 200 days.
pub(crate) const LEAF_VALIDITY_DAYS: i64 = 199;

/// The ECDSA P-256 key pair shared by every leaf this process mints (unless a CA was given
/// its own leaf key), as mitmproxy reuses one key: generating a key per host would cost more
/// than the signature itself.
pub(crate) fn leaf_key() -> Result<&'static DualKey, CaError> {
    static LEAF_KEY: OnceLock<DualKey> = OnceLock::new();
    if let Some(key) = LEAF_KEY.get() {
        return Ok(key);
    }
    let key = DualKey::generate(KeyType::EcdsaP256)?;
    // A racing thread may have won; its key is kept and ours dropped.
    Ok(LEAF_KEY.get_or_init(|| key))
}

/// A host prepared for a certificate: lowercased, brackets stripped from IPv6 literals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) san: SanType,
}

impl Host {
    /// Parses an SNI value or a request host. IP literals become IP SANs.
    pub(crate) fn parse(host: &str) -> Result<Self, CaError> {
        let invalid = |reason: &str| CaError::InvalidHost {
            host: host.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = host.trim().trim_end_matches('.');
        let unbracketed = trimmed
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or(trimmed);
        let name = unbracketed.to_ascii_lowercase();
        if name.is_empty() {
            return Err(invalid("empty host"));
        }
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => {
                if !name.is_ascii() || name.contains(char::is_whitespace) {
                    return Err(invalid(
                        "not an ASCII host name (IDNA hosts must be punycode)",
                    ));
                }
                let dns = name
                    .clone()
                    .try_into()
                    .map_err(|_| invalid("bad DNS name"))?;
                SanType::DnsName(dns)
            }
        };
        Ok(Self { name, san })
    }
}

/// notBefore = now − 2 days (tolerates clients with slow clocks), notAfter = that + `days`.
fn validity(params: &mut CertificateParams, days: i64) {
    let not_before = OffsetDateTime::now_utc() - Duration::days(2);
    params.not_before = not_before;
    params.not_after = not_before + Duration::days(days);
}

/// A random positive 16-byte serial number.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(rustls::Error::from)?;
    // Keep the high bit clear so the DER INTEGER is positive without a padding byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Parameters of a self-signed CA named `name` (CN and O), as mitmproxy creates its own.
pub(crate) fn ca_params(name: &str) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(random_serial()?);
    validity(&mut params, CA_VALIDITY_DAYS);
    Ok(params)
}

/// Parameters of a leaf for `hosts`: the first host is the CN (if shorter than 64 characters),
/// all of them are SANs. rcgen adds the AKI from the issuer's SKI.
pub(crate) fn leaf_params(hosts: &[Host]) -> Result<CertificateParams, CaError> {
    leaf_params_with(hosts, None)
}

/// As [`leaf_params`], with the subject's organization (copied from the server's certificate
/// under `upstream_cert`, as mitmproxy does).
pub(crate) fn leaf_params_with(
    hosts: &[Host],
    organization: Option<&str>,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(first) = hosts.first().filter(|h| h.name.len() < 64) {
        dn.push(DnType::CommonName, first.name.as_str());
    }
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    params.distinguished_name = dn;
    params.subject_alt_names = hosts.iter().map(|h| h.san.clone()).collect();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    validity(&mut params, LEAF_VALIDITY_DAYS);
    Ok(params)
}

/// A server config presenting `chain` (leaf first) with `key`, offering `alpn` and the TLS
/// `versions`.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: Arc<dyn SigningKey>,
    alpn: &[Vec<u8>],
    versions: &[&'static SupportedProtocolVersion],
) -> Result<Arc<ServerConfig>, CaError> {
    let resolver = SingleCertAndKey::from(CertifiedKey::new(chain, key));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

/// PEM text of one certificate, with `\n` line endings.
pub(crate) fn certificate_pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

#[cfg(test)]
mod tests {
    use super::Host;
    use rcgen::SanType;

    #[test]
    fn parses_hosts() {
        let ip = Host::parse("[::1]").expect("ipv6 literal");
        assert_eq!(ip.san, SanType::IpAddress("::1".parse().expect("ip")));
        let dns = Host::parse("Example.COM.").expect("dns name");
        assert_eq!(dns.name, "example.com");
        assert!(Host::parse("").is_err());
        assert!(Host::parse("bücher.de").is_err());
    }
}
