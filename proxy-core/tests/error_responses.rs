//! Errors a client can read: a server that is down gives 502 naming the cause, a malformed
//! request gives 400, and the proxy keeps serving afterwards.

#![allow(missing_docs)]

mod support;

use flowtap_proxy_core::Config;
use support::{HyperOrigin, TestProxy, closed_port, curl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn still_serving(proxy: &TestProxy, origin: &HyperOrigin) {
    let url = format!("http://127.0.0.1:{}/after", origin.port());
    let out = curl(&["-x", &proxy.url(), &url]).await.ok();
    assert_eq!(out.text(), "origin: GET /after");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_is_down_gives_502_naming_the_cause() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/");
    let out = curl(&["-x", &proxy.url(), "-w", "\n%{http_code}", &url])
        .await
        .ok();

    let text = out.text();
    let (body, status) = text.rsplit_once('\n').expect("body and status");
    assert_eq!(status, "502");
    assert!(
        body.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{body}"
    );
    assert!(
        body.to_ascii_lowercase().contains("refused"),
        "the cause is named: {body}"
    );
    let flows = proxy.sink.wait_flows(1).await;
    assert!(
        flows[0]
            .error
            .as_ref()
            .is_some_and(|e| e.msg.contains("refused")),
        "{:?}",
        flows[0].error
    );
    still_serving(&proxy, &origin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_to_a_server_that_is_down_gives_502() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("https://127.0.0.1:{}/", closed_port());
    let out = curl(&["-x", &proxy.url(), "-w", "%{http_connect}", &url]).await;
    assert_ne!(out.code, 0);
    assert_eq!(out.text(), "502", "{}", out.stderr);
    still_serving(&proxy, &origin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_request_line_gives_400() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    for bad in [
        &b"GET /\x01bad HTTP/1.1\r\n\r\n"[..],
        b"THIS IS NOT HTTP\r\n\r\n",
        b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        // A multi-byte character where a scheme prefix would end once panicked the task.
        "GET /abcde\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
        "GET http:/\u{e9}/x HTTP/1.1\r\nHost: x\r\n\r\n".as_bytes(),
    ] {
        let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
        tcp.write_all(bad).await.expect("write");
        let mut response = Vec::new();
        tcp.read_to_end(&mut response)
            .await
            .expect("the proxy answers and closes");
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
            "{:?} -> {response}",
            String::from_utf8_lossy(bad)
        );
        assert!(response.contains("flowtap: "), "{response}");
        still_serving(&proxy, &origin).await;
    }
}
