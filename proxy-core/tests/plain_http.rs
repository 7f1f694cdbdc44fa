//! Plain HTTP through the proxy with real curl: status codes, headers and bodies arrive
//! intact in both directions, and both connections are kept alive across requests.

#![allow(missing_docs)]

mod support;

use flowtap_proxy_core::Config;
use support::{HyperOrigin, TestProxy, curl};

#[tokio::test(flavor = "multi_thread")]
async fn status_headers_and_body_pass_through_intact() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/teapot?status=418", origin.port());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-i",
        "-H",
        "X-Client-Says: hello there",
        &url,
    ])
    .await
    .ok();
    let text = out.text();

    assert!(text.starts_with("HTTP/1.1 418 I'm a teapot\r\n"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.contains("\r\nx-origin-version: HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains("\r\nset-cookie: a=1\r\nset-cookie: b=2\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 19\r\n"), "{head}");
    assert_eq!(body, "origin: GET /teapot");

    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/teapot?status=418");
    assert_eq!(seen[0].header("x-client-says"), Some("hello there"));
    // Hop-by-hop headers curl sends to a proxy are not forwarded (RFC 9110 7.6.1).
    assert_eq!(seen[0].header("proxy-connection"), None);

    let flows = proxy.sink.wait_flows(1).await;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].response.as_ref().map(|r| r.status_code), Some(418));
}

#[tokio::test(flavor = "multi_thread")]
async fn request_bodies_reach_the_origin() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/upload", origin.port());
    let body: String = (0..5000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let out = curl(&["-x", &proxy.url(), "--data-binary", &body, &url])
        .await
        .ok();

    assert_eq!(out.text(), format!("origin: POST /upload{body}"));
    let seen = origin.seen();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].body, body.as_bytes());
    assert_eq!(seen[0].header("content-length"), Some("5000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_alive_on_both_sides() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let first = format!("http://127.0.0.1:{}/one", origin.port());
    let second = format!("http://127.0.0.1:{}/two", origin.port());
    // `%{num_connects}` is the number of new connections curl made for each transfer.
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        " connects=%{num_connects}\n",
        &first,
        &second,
    ])
    .await
    .ok();

    assert_eq!(
        out.text(),
        "origin: GET /one connects=1\norigin: GET /two connects=0\n"
    );
    assert_eq!(
        origin.connections(),
        1,
        "the proxy reused its server connection"
    );
    let flows = proxy.sink.wait_flows(2).await;
    assert_eq!(flows.len(), 2);
    let client_ids: Vec<_> = flows
        .iter()
        .map(|f| f.client_conn.as_ref().map(|c| c.id.clone()))
        .collect();
    assert_eq!(
        client_ids[0], client_ids[1],
        "both flows came over one client connection"
    );
    let server_ids: Vec<_> = flows
        .iter()
        .map(|f| f.server_conn.as_ref().map(|c| c.id.clone()))
        .collect();
    assert_eq!(
        server_ids[0], server_ids[1],
        "both flows went over one server connection"
    );
}
