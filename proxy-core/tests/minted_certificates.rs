//! The certificate the proxy presents for an intercepted host, seen by a rustls client that
//! went through CONNECT: signed by the proxy's CA, naming the requested host or IP, with a
//! sane validity window. And the CA's private key file is private.

#![allow(missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use flowtap_certs::{SubjectAltName, inspect};
use support::connect::peer_leaf;
use support::{HyperOrigin, TestProxy, tls_through_proxy};

const DAY: Duration = Duration::from_secs(24 * 3600);

async fn presented_leaf(
    authority: &str,
    server_name: &str,
) -> (flowtap_certs::CertSummary, String) {
    let origin = HyperOrigin::tls(&[b"http/1.1"]).await;
    let proxy = TestProxy::trusting(origin.cert.as_ref().expect("tls").ca_path()).await;
    let authority = format!("{authority}:{}", origin.port());
    let tls = tls_through_proxy(
        proxy.addr,
        &authority,
        server_name,
        proxy.ca.cert_der(),
        &[b"http/1.1"],
    )
    .await
    .expect("a client trusting only the proxy's CA accepts the presented certificate");
    let leaf = inspect(&peer_leaf(&tls)).expect("the leaf parses");
    let ca_subject = inspect(proxy.ca.cert_der()).expect("the CA parses").subject;
    (leaf, ca_subject)
}

fn assert_sane_validity(leaf: &flowtap_certs::CertSummary) {
    let now = SystemTime::now();
    assert!(
        leaf.not_before <= now,
        "not yet valid: {:?}",
        leaf.not_before
    );
    assert!(
        leaf.not_before > now - 7 * DAY,
        "backdated too far: {:?}",
        leaf.not_before
    );
    assert!(
        leaf.not_after > now + 30 * DAY,
        "expires too soon: {:?}",
        leaf.not_after
    );
    assert!(
        leaf.not_after < now + 400 * DAY,
        "valid longer than browsers accept: {:?}",
        leaf.not_after
    );
    assert!(!leaf.is_ca);
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_for_a_host_name() {
    let (leaf, ca_subject) = presented_leaf("localhost", "localhost").await;
    assert_eq!(leaf.issuer, ca_subject);
    assert!(
        leaf.sans.contains(&SubjectAltName::Dns("localhost".into())),
        "{:?}",
        leaf.sans
    );
    assert_sane_validity(&leaf);
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_for_an_ip_literal() {
    // No SNI is sent for an IP literal: the proxy mints for the CONNECT target.
    let (leaf, ca_subject) = presented_leaf("127.0.0.1", "127.0.0.1").await;
    assert_eq!(leaf.issuer, ca_subject);
    assert_eq!(
        leaf.ip_addresses(),
        vec![std::net::IpAddr::from([127, 0, 0, 1])],
        "{:?}",
        leaf.sans
    );
    assert_sane_validity(&leaf);
}

#[tokio::test(flavor = "multi_thread")]
async fn ca_key_file_is_private() {
    let proxy = TestProxy::start(flowtap_proxy_core::Config::default()).await;
    let key_file = proxy.confdir.path().join("flowtap-ca.pem");
    let mode = std::fs::metadata(&key_file)
        .expect("the CA file exists")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", key_file.display());
    let key_pem = std::fs::read_to_string(&key_file).expect("read");
    assert!(
        key_pem.contains("PRIVATE KEY-----"),
        "the key lives in flowtap-ca.pem"
    );
    let public = std::fs::read_to_string(proxy.ca_cert_path()).expect("flowtap-ca-cert.pem exists");
    assert!(
        !public.contains("PRIVATE KEY"),
        "the certificate to distribute holds no key"
    );
}
