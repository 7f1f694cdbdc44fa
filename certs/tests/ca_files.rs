//! The CA on disk: created once with private permissions, then reused.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use flowtap_certs::authority::{CA_FILE, CERT_CER_FILE, CERT_PEM_FILE};
use flowtap_certs::{CaError, CertificateAuthority, KeyType, inspect};

const DAY: Duration = Duration::from_secs(86_400);

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn first_start_creates_private_files_and_later_starts_reuse_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let confdir = tmp.path().join("nested").join("flowtap");

    let ca = CertificateAuthority::load_or_create(&confdir).expect("create CA");
    assert_eq!(mode(&confdir), 0o700);
    assert_eq!(ca.ca_path(), confdir.join(CA_FILE));
    assert_eq!(mode(ca.ca_path()), 0o600);
    let key_file = std::fs::read_to_string(ca.ca_path()).expect("read CA file");
    assert!(key_file.contains("-----BEGIN PRIVATE KEY-----"));
    assert!(key_file.contains("-----BEGIN CERTIFICATE-----"));

    let pem_path = ca.cert_pem_path().expect("cert pem path");
    let cer_path = ca.cert_cer_path().expect("cert cer path");
    assert_eq!(pem_path, confdir.join(CERT_PEM_FILE));
    assert_eq!(cer_path, confdir.join(CERT_CER_FILE));
    let cert_pem = std::fs::read_to_string(pem_path).expect("read cert pem");
    assert_eq!(cert_pem, ca.cert_pem());
    assert!(!cert_pem.contains("PRIVATE KEY"));
    assert_eq!(
        std::fs::read(cer_path).expect("read cer"),
        cert_pem.as_bytes()
    );

    let again = CertificateAuthority::load_or_create(&confdir).expect("load CA");
    assert_eq!(again.cert_der(), ca.cert_der());
    assert_eq!(again.cert_pem(), ca.cert_pem());
    assert_eq!(mode(again.ca_path()), 0o600);
}

#[test]
fn created_ca_has_mitmproxy_shape() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let summary = inspect(ca.cert_der()).expect("inspect CA");
    assert_eq!(summary.subject, "CN=flowtap, O=flowtap");
    assert_eq!(summary.issuer, summary.subject);
    assert!(summary.is_ca);
    let now = SystemTime::now();
    let age = now
        .duration_since(summary.not_before)
        .expect("starts in the past");
    assert!(
        age > DAY && age < 3 * DAY,
        "notBefore about 2 days ago: {age:?}"
    );
    let lifetime = summary
        .not_after
        .duration_since(summary.not_before)
        .expect("ordered validity");
    assert_eq!(lifetime, 3650 * DAY);

    let text = support::openssl(&["x509", "-noout", "-text", "-in", path_str(ca.ca_path())]);
    assert!(
        text.contains("Signature Algorithm: ecdsa-with-SHA256"),
        "{text}"
    );
    assert!(
        text.contains("X509v3 Basic Constraints: critical"),
        "{text}"
    );
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
}

#[test]
fn stale_or_missing_certificate_files_are_rewritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let pem_path = tmp.path().join(CERT_PEM_FILE);
    let cer_path = tmp.path().join(CERT_CER_FILE);
    std::fs::write(&pem_path, "an old CA\n").expect("write stale");
    std::fs::remove_file(&cer_path).expect("remove cer");
    CertificateAuthority::load_or_create(tmp.path()).expect("load CA");
    assert_eq!(
        std::fs::read_to_string(&pem_path).expect("pem"),
        ca.cert_pem()
    );
    assert_eq!(
        std::fs::read_to_string(&cer_path).expect("cer"),
        ca.cert_pem()
    );
}

#[test]
fn an_existing_directory_keeps_its_mode() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o750)).expect("chmod");
    CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    assert_eq!(mode(tmp.path()), 0o750);
}

#[test]
fn an_unreadable_ca_file_is_an_error_and_is_not_replaced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_path = tmp.path().join(CA_FILE);
    std::fs::write(&ca_path, "-----BEGIN CERTIFICATE-----\nnot base64!\n").expect("write");
    let err = CertificateAuthority::load_or_create(tmp.path()).expect_err("corrupt CA");
    assert!(matches!(err, CaError::Pem { .. }), "{err:?}");
    assert!(err.to_string().contains(CA_FILE), "{err}");
    let after = std::fs::read_to_string(&ca_path).expect("read");
    assert!(after.contains("not base64!"));
}

#[test]
fn a_ca_file_without_key_is_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let only_cert = tmp.path().join("only-cert.pem");
    std::fs::write(&only_cert, ca.cert_pem()).expect("write");
    let err = CertificateAuthority::load_mitmproxy(&only_cert).expect_err("no key");
    assert!(
        matches!(
            err,
            CaError::Incomplete {
                missing: "private key",
                ..
            }
        ),
        "{err:?}"
    );
}

fn path_str(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn an_rsa_ca_is_written_private_as_pkcs8_and_reloaded() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let confdir = tmp.path().join("flowtap");
    let rsa = KeyType::rsa(2048).expect("in range");
    let ca = CertificateAuthority::load_or_create_with(&confdir, rsa).expect("create CA");
    assert_eq!(mode(&confdir), 0o700);
    assert_eq!(mode(ca.ca_path()), 0o600);
    let key_file = std::fs::read_to_string(ca.ca_path()).expect("read CA file");
    assert!(key_file.contains("-----BEGIN PRIVATE KEY-----"));
    let (_, parsed) = x509_parser::parse_x509_certificate(ca.cert_der()).expect("parse");
    assert_eq!(
        parsed.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.1",
        "rsaEncryption"
    );
    assert_eq!(
        parsed.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.113549.1.1.11",
        "sha256WithRSAEncryption"
    );
    let again = CertificateAuthority::load_or_create(&confdir).expect("reload CA");
    assert_eq!(again.cert_der(), ca.cert_der());
    assert_eq!(mode(again.ca_path()), 0o600);
}
