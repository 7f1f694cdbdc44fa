//! `ignore_hosts`: CONNECT tunnels to matching hosts are relayed untouched, so the client
//! talks TLS with the origin itself and sees the origin's own certificate.

#![allow(missing_docs)]

mod support;

use flowtap_certs::inspect;
use flowtap_proxy_core::Config;
use support::connect::peer_leaf;
use support::{HyperOrigin, TestProxy, curl, tls_through_proxy};

async fn proxy_ignoring(origin: &HyperOrigin, ignore: &[&str]) -> TestProxy {
    TestProxy::start(Config {
        ignore_hosts: ignore.iter().map(|s| s.to_string()).collect(),
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        ..Config::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_trusting_only_the_origin_ca_succeeds_for_an_ignored_host() {
    let origin = HyperOrigin::tls(&[b"h2", b"http/1.1"]).await;
    let origin_ca = origin
        .cert
        .as_ref()
        .expect("tls")
        .ca_path()
        .to_str()
        .expect("path")
        .to_string();
    let url = format!("https://localhost:{}/direct", origin.port());

    let ignoring = proxy_ignoring(&origin, &[r"^localhost:\d+$"]).await;
    let out = curl(&[
        "-x",
        &ignoring.url(),
        "--cacert",
        &origin_ca,
        "-w",
        " %{http_version}",
        &url,
    ])
    .await
    .ok();
    assert_eq!(out.text(), "origin: GET /direct 2");
    assert!(
        ignoring
            .sink
            .flows()
            .iter()
            .all(|f| f.request.as_ref().is_none_or(|r| r.method != "GET"))
    );

    // The same client through a proxy that intercepts localhost fails: the certificate it
    // sees then is the proxy's, which the origin's CA did not sign.
    let intercepting = proxy_ignoring(&origin, &["^example\\.com:"]).await;
    let out = curl(&["-x", &intercepting.url(), "--cacert", &origin_ca, &url]).await;
    assert_eq!(out.code, 60, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_presented_certificate_is_the_origins() {
    let origin = HyperOrigin::tls(&[b"http/1.1"]).await;
    let cert = origin.cert.as_ref().expect("tls");
    let proxy = proxy_ignoring(&origin, &["localhost"]).await;
    let tls = tls_through_proxy(
        proxy.addr,
        &format!("localhost:{}", origin.port()),
        "localhost",
        cert.ca_der(),
        &[],
    )
    .await
    .expect("handshake with the origin itself");
    let leaf = peer_leaf(&tls);
    assert_eq!(
        leaf.as_ref(),
        cert.leaf_der().as_ref(),
        "the origin's own leaf, byte for byte"
    );
    let issuer = inspect(&leaf).expect("parses").issuer;
    assert_eq!(issuer, inspect(cert.ca_der()).expect("parses").subject);
    assert_ne!(
        issuer,
        inspect(proxy.ca.cert_der()).expect("parses").subject
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_name_that_is_ignored_is_not_intercepted_whatever_the_connect_target() {
    let origin = HyperOrigin::tls(&[b"http/1.1"]).await;
    let origin_ca = origin
        .cert
        .as_ref()
        .expect("tls")
        .ca_path()
        .to_str()
        .expect("path")
        .to_string();
    // The CONNECT goes to 127.0.0.1 (not ignored); the ClientHello asks for localhost (ignored).
    let port = origin.port();
    let connect_to = format!("localhost:{port}:127.0.0.1:{port}");
    let url = format!("https://localhost:{port}/by-name");
    let ignoring = proxy_ignoring(&origin, &[r"^localhost:\d+$"]).await;
    let out = curl(&[
        "-x",
        &ignoring.url(),
        "--connect-to",
        &connect_to,
        "--cacert",
        &origin_ca,
        &url,
    ])
    .await
    .ok();
    assert_eq!(out.text(), "origin: GET /by-name");
    // Without the rule the same client is intercepted and refuses the proxy's certificate.
    let intercepting = proxy_ignoring(&origin, &["^example\\.com:"]).await;
    let out = curl(&[
        "-x",
        &intercepting.url(),
        "--connect-to",
        &connect_to,
        "--cacert",
        &origin_ca,
        &url,
    ])
    .await;
    assert_eq!(out.code, 60, "{}", out.stderr);
}
