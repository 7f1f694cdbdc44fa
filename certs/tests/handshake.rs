//! Real TLS handshakes: a rustls client trusting only the CA connects to a server using the
//! config minted for the host it asked for.

mod support;

use flowtap_certs::{CertificateAuthority, KeyType};
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

/// The modulus size of `cert`'s public key when it is RSA, else None.
fn rsa_bits(cert: &[u8]) -> Option<usize> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).expect("a certificate");
    match parsed.public_key().parsed().expect("a public key") {
        x509_parser::public_key::PublicKey::RSA(rsa) => Some(rsa.key_size()),
        _ => None,
    }
}

#[tokio::test]
async fn key_size_makes_the_new_ca_and_the_leaves_rsa() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rsa = KeyType::rsa(3072).expect("in range");
    let ca = CertificateAuthority::load_or_create_with(tmp.path(), rsa)
        .and_then(|ca| ca.with_leaf_key(rsa))
        .expect("create an RSA CA");
    assert_eq!(rsa_bits(ca.cert_der()), Some(3072));
    let server = ca.server_config("localhost", &[]).expect("server config");
    let done = handshake(server, client_trusting(ca.cert_der(), &[]), "localhost")
        .await
        .expect("a handshake with an RSA leaf");
    assert_eq!(rsa_bits(&done.peer_chain[0]), Some(3072));
    assert_eq!(&done.peer_chain[1], ca.cert_der());

    // A later start without key_size keeps the RSA CA; its leaves are P-256 again.
    let again = CertificateAuthority::load_or_create(tmp.path()).expect("load the RSA CA");
    assert_eq!(again.cert_der(), ca.cert_der());
    let server = again
        .server_config("localhost", &[])
        .expect("server config");
    let done = handshake(server, client_trusting(ca.cert_der(), &[]), "localhost")
        .await
        .expect("a handshake with a P-256 leaf under the RSA CA");
    assert_eq!(rsa_bits(&done.peer_chain[0]), None);

    // An existing P-256 CA stays P-256 when an RSA key is asked for; leaves follow the ask.
    let ecdsa_dir = tempfile::tempdir().expect("tempdir");
    let ecdsa = CertificateAuthority::load_or_create(ecdsa_dir.path()).expect("P-256 CA");
    let kept = CertificateAuthority::load_or_create_with(ecdsa_dir.path(), rsa)
        .and_then(|ca| ca.with_leaf_key(KeyType::rsa(2048).expect("in range")))
        .expect("load the P-256 CA");
    assert_eq!(kept.cert_der(), ecdsa.cert_der());
    assert_eq!(rsa_bits(kept.cert_der()), None);
    let leaf = kept.leaf_certificate("localhost").expect("leaf");
    assert_eq!(rsa_bits(&leaf), Some(2048));
}
