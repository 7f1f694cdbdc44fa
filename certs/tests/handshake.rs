//! Real TLS handshakes: a rustls client trusting only the CA connects to a server using the
//! config minted for the host it asked for.

mod support;

use flowtap_certs::CertificateAuthority;
use support::{RsaKeyFormat, alpn, client_trusting, handshake};

#[tokio::test]
async fn client_trusting_the_ca_accepts_minted_leaves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let client = client_trusting(ca.cert_der(), &[]);
    for host in ["localhost", "127.0.0.1"] {
        let server = ca.server_config(host, &[]).expect("server config");
        let done = handshake(server, client.clone(), host).await.expect(host);
        assert_eq!(done.alpn, None);
        assert_eq!(done.peer_chain.len(), 2, "leaf and CA");
        assert_eq!(&done.peer_chain[1], ca.cert_der());
        assert_eq!(done.peer_chain[0], ca.leaf_certificate(host).expect("leaf"));
    }
}

#[tokio::test]
async fn a_leaf_for_another_host_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let server = ca.server_config("example.com", &[]).expect("server config");
    let err = handshake(server, client_trusting(ca.cert_der(), &[]), "localhost")
        .await
        .expect_err("wrong name");
    assert!(err.contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn alpn_h2_is_negotiated_when_both_offer_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(tmp.path()).expect("create CA");
    let server = ca
        .server_config("localhost", &alpn(&[b"h2", b"http/1.1"]))
        .expect("server config");
    let both = client_trusting(ca.cert_der(), &[b"h2", b"http/1.1"]);
    let done = handshake(server.clone(), both, "localhost")
        .await
        .expect("h2");
    assert_eq!(done.alpn.as_deref(), Some(&b"h2"[..]));

    let http1_only = client_trusting(ca.cert_der(), &[b"http/1.1"]);
    let done = handshake(server, http1_only, "localhost")
        .await
        .expect("http/1.1");
    assert_eq!(done.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

async fn mitmproxy_ca_round_trip(format: RsaKeyFormat) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca_file = support::openssl_mitmproxy_ca(tmp.path(), format);
    let ca = CertificateAuthority::load_mitmproxy(&ca_file).expect("load mitmproxy CA");
    assert_eq!(ca.ca_path(), ca_file);
    assert_eq!(
        ca.cert_pem_path(),
        Some(tmp.path().join("mitmproxy-ca-cert.pem").as_path())
    );
    let summary = flowtap_certs::inspect(ca.cert_der()).expect("inspect");
    assert_eq!(summary.subject, "CN=mitmproxy, O=mitmproxy");

    let leaf = ca.leaf_certificate("localhost").expect("mint");
    let leaf_path = tmp.path().join("leaf.der");
    std::fs::write(&leaf_path, &leaf).expect("write leaf");
    let leaf_arg = leaf_path.to_str().expect("utf-8 path");
    let text = support::openssl(&["x509", "-noout", "-text", "-inform", "DER", "-in", leaf_arg]);
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
    assert!(support::openssl_verifies(ca.cert_pem(), &leaf, tmp.path()));

    let client = client_trusting(ca.cert_der(), &[b"h2"]);
    for host in ["localhost", "127.0.0.1"] {
        let server = ca
            .server_config(host, &alpn(&[b"h2"]))
            .expect("server config");
        let done = handshake(server, client.clone(), host).await.expect(host);
        assert_eq!(done.alpn.as_deref(), Some(&b"h2"[..]));
    }
}

#[tokio::test]
async fn mitmproxy_rsa_ca_in_pkcs1_signs_leaves_clients_accept() {
    mitmproxy_ca_round_trip(RsaKeyFormat::Pkcs1).await;
}

#[tokio::test]
async fn mitmproxy_rsa_ca_in_pkcs8_signs_leaves_clients_accept() {
    mitmproxy_ca_round_trip(RsaKeyFormat::Pkcs8).await;
}

#[tokio::test]
async fn mitmproxy_directory_is_accepted_too() {
    let tmp = tempfile::tempdir().expect("tempdir");
    support::openssl_mitmproxy_ca(tmp.path(), RsaKeyFormat::Pkcs1);
    let ca = CertificateAuthority::load_mitmproxy(tmp.path()).expect("load from directory");
    assert_eq!(ca.ca_path(), tmp.path().join("mitmproxy-ca.pem"));
}

#[test]
fn a_key_from_another_certificate_is_rejected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let one = tmp.path().join("one");
    let two = tmp.path().join("two");
    std::fs::create_dir_all(&one).expect("mkdir");
    std::fs::create_dir_all(&two).expect("mkdir");
    let one = support::openssl_mitmproxy_ca(&one, RsaKeyFormat::Pkcs1);
    let two = support::openssl_mitmproxy_ca(&two, RsaKeyFormat::Pkcs1);
    let key = std::fs::read_to_string(&one).expect("read");
    let cert = std::fs::read_to_string(&two).expect("read");
    let key_end = key
        .find("-----BEGIN CERTIFICATE-----")
        .expect("cert in file");
    let cert_start = cert
        .find("-----BEGIN CERTIFICATE-----")
        .expect("cert in file");
    let mixed = tmp.path().join("mixed.pem");
    std::fs::write(
        &mixed,
        format!("{}{}", &key[..key_end], &cert[cert_start..]),
    )
    .expect("write");
    let err = CertificateAuthority::load_mitmproxy(&mixed).expect_err("mismatched key");
    assert!(err.to_string().contains("does not belong"), "{err}");
}
