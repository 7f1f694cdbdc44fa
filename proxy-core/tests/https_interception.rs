//! HTTPS through CONNECT with TLS interception: curl trusts the CA the proxy generated, the
//! proxy verifies the origin against the origin's own CA, and HTTP/2 is used on each side
//! wherever that side supports it.

#![allow(missing_docs)]

mod support;

use support::{HyperOrigin, TestProxy, curl};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

#[tokio::test(flavor = "multi_thread")]
async fn https_with_the_generated_ca() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let proxy = TestProxy::trusting(origin.cert.as_ref().expect("tls").ca_path()).await;
    let cacert = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/secret?status=201", origin.port());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http1.1",
        "-i",
        "--suppress-connect-headers",
        &url,
    ])
    .await
    .ok();

    let text = out.text();
    assert!(text.starts_with("HTTP/1.1 201 Created\r\n"), "{text}");
    assert!(
        text.contains("\r\nx-origin-version: HTTP/1.1\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\norigin: GET /secret"), "{text}");
    let flows = proxy.sink.wait_flows(1).await;
    let request = flows
        .last()
        .and_then(|f| f.request.as_ref())
        .expect("a flow");
    assert_eq!(
        (&request.scheme[..], request.host.as_str()),
        (&b"https"[..], "localhost")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_refuses_the_proxy_without_its_ca() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let proxy = TestProxy::trusting(origin.cert.as_ref().expect("tls").ca_path()).await;
    let url = format!("https://localhost:{}/", origin.port());
    let out = curl(&["-x", &proxy.url(), &url]).await;
    // 60: the peer certificate cannot be authenticated with known CA certificates.
    assert_eq!(out.code, 60, "{}", out.stderr);
    assert!(origin.seen().is_empty() || origin.seen().iter().all(|s| s.method != "GET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_on_the_client_and_the_server_side() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let proxy = TestProxy::trusting(origin.cert.as_ref().expect("tls").ca_path()).await;
    let cacert = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/h2", origin.port());
    let args = [
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
    ];
    let out = curl(
        &[
            &args[..],
            &[
                "-D",
                "-",
                "--suppress-connect-headers",
                "-w",
                "\nversion=%{http_version}",
                "--data-binary",
                "ping",
                &url,
            ],
        ]
        .concat(),
    )
    .await
    .ok();

    let text = out.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-origin-version: HTTP/2.0\r\n"), "{text}");
    assert!(
        text.contains("set-cookie: a=1\r\nset-cookie: b=2\r\n"),
        "{text}"
    );
    assert!(text.ends_with("origin: POST /h2ping\nversion=2"), "{text}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].version, "HTTP/2.0",
        "the origin was spoken to in HTTP/2"
    );
    assert_eq!(seen[0].body, "ping");
    let flow = proxy.sink.wait_flows(1).await.pop().expect("a flow");
    assert_eq!(
        flow.request.as_ref().map(|r| &r.http_version[..]),
        Some(&b"HTTP/2.0"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http1_only_origin_gives_the_client_http1() {
    let origin = HyperOrigin::tls(&[b"http/1.1"]).await;
    let proxy = TestProxy::trusting(origin.cert.as_ref().expect("tls").ca_path()).await;
    let cacert = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/h1", origin.port());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
        "-w",
        "\nversion=%{http_version}",
        &url,
    ])
    .await
    .ok();

    assert_eq!(out.text(), "origin: GET /h1\nversion=1.1");
    assert_eq!(origin.seen()[0].version, "HTTP/1.1");
}
