//! Leaves minted by the CA: names, issuer, validity, key identifiers, caching.

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flowtap_certs::{CertificateAuthority, SubjectAltName, inspect};
use support::alpn;
use x509_parser::extensions::ParsedExtension;

const DAY: Duration = Duration::from_secs(86_400);

fn new_ca() -> (tempfile::TempDir, CertificateAuthority) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    (tmp, ca)
}

#[test]
fn leaf_names_the_host_and_is_issued_by_the_ca() {
    let (_tmp, ca) = new_ca();
    let leaf = ca.leaf_certificate("Example.COM").expect("mint");
    let summary = inspect(&leaf).expect("inspect leaf");
    let ca_summary = inspect(ca.cert_der()).expect("inspect CA");
    assert_eq!(summary.issuer, ca_summary.subject);
    assert_eq!(summary.subject, "CN=example.com");
    assert_eq!(summary.common_name.as_deref(), Some("example.com"));
    assert_eq!(
        summary.sans,
        vec![SubjectAltName::Dns("example.com".into())]
    );
    assert!(!summary.is_ca);

    let now = SystemTime::now();
    assert!(summary.not_before < now, "starts in the past");
    let remaining = summary.not_after.duration_since(now).expect("not expired");
    assert!(remaining < 200 * DAY, "ends within 200 days: {remaining:?}");
    assert!(remaining > 190 * DAY, "lasts about 197 days: {remaining:?}");
}

#[test]
fn ip_literals_become_ip_sans() {
    let (_tmp, ca) = new_ca();
    let v4 = inspect(&ca.leaf_certificate("127.0.0.1").expect("mint v4")).expect("inspect");
    let expected: IpAddr = "127.0.0.1".parse().expect("ip");
    assert_eq!(v4.ip_addresses(), vec![expected]);
    assert!(v4.dns_names().is_empty());

    let v6 = inspect(&ca.leaf_certificate("[::1]").expect("mint v6")).expect("inspect");
    let expected: IpAddr = "::1".parse().expect("ip");
    assert_eq!(v6.sans, vec![SubjectAltName::Ip(expected)]);
}

#[test]
fn long_hosts_get_no_common_name() {
    let (_tmp, ca) = new_ca();
    let host = format!("{}.example.com", "a".repeat(60));
    let summary = inspect(&ca.leaf_certificate(&host).expect("mint")).expect("inspect");
    assert_eq!(summary.common_name, None);
    assert_eq!(summary.dns_names(), vec![host.as_str()]);
}

#[test]
fn leaf_authority_key_id_is_the_ca_subject_key_id() {
    let (_tmp, ca) = new_ca();
    let leaf = ca.leaf_certificate("example.org").expect("mint");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(ca.cert_der()).expect("parse CA");
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf).expect("parse leaf");
    let ski = ca_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("CA has an SKI");
    let aki = leaf_cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.clone(),
            _ => None,
        })
        .expect("leaf has an AKI");
    assert_eq!(aki.0, ski.as_slice());
    let eku = leaf_cert
        .extended_key_usage()
        .expect("EKU parses")
        .expect("leaf has an EKU");
    assert!(eku.value.server_auth);
}

#[test]
fn leaves_share_one_key_but_not_serials() {
    let (_tmp, ca) = new_ca();
    let a = ca.leaf_certificate("a.example").expect("mint a");
    let b = ca.leaf_certificate("b.example").expect("mint b");
    let (_, a) = x509_parser::parse_x509_certificate(&a).expect("parse a");
    let (_, b) = x509_parser::parse_x509_certificate(&b).expect("parse b");
    assert_eq!(a.public_key().raw, b.public_key().raw);
    assert_ne!(a.raw_serial(), b.raw_serial());
}

#[test]
fn openssl_verify_accepts_a_minted_leaf() {
    let (tmp, ca) = new_ca();
    for host in ["localhost", "127.0.0.1", "deep.sub.example.net"] {
        let leaf = ca.leaf_certificate(host).expect("mint");
        assert!(
            support::openssl_verifies(ca.cert_pem(), &leaf, tmp.path()),
            "openssl rejected the leaf for {host}"
        );
    }
}

#[test]
fn server_configs_are_cached_per_host_and_alpn() {
    let (_tmp, ca) = new_ca();
    let h2 = alpn(&[b"h2", b"http/1.1"]);
    let first = ca.server_config("example.com", &h2).expect("config");
    let second = ca.server_config("EXAMPLE.com", &h2).expect("config again");
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(first.alpn_protocols, h2);

    let http1 = ca
        .server_config("example.com", &alpn(&[b"http/1.1"]))
        .expect("config");
    assert!(!Arc::ptr_eq(&first, &http1));
    let other = ca.server_config("example.net", &h2).expect("config");
    assert!(!Arc::ptr_eq(&first, &other));
    // The leaf is minted once per host, whatever the ALPN.
    assert_eq!(
        ca.leaf_certificate("example.com").expect("leaf"),
        ca.leaf_certificate("example.com").expect("leaf again")
    );
}

#[test]
fn concurrent_callers_get_the_same_config() {
    let (_tmp, ca) = new_ca();
    let ca = Arc::new(ca);
    let configs: Vec<_> = (0..8)
        .map(|_| {
            let ca = Arc::clone(&ca);
            std::thread::spawn(move || ca.server_config("race.example", &[]).expect("config"))
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    let after = ca.server_config("race.example", &[]).expect("config");
    assert!(configs.iter().all(|c| Arc::ptr_eq(c, &after)));
}

#[test]
fn invalid_hosts_are_rejected() {
    let (_tmp, ca) = new_ca();
    assert!(ca.server_config("", &[]).is_err());
    assert!(ca.server_config("bücher.example", &[]).is_err());
}
