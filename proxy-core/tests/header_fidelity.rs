//! Header case, order and duplicates are preserved as received, in requests and responses,
//! checked byte for byte against a raw TCP origin. Only what RFC 9110 calls hop-by-hop is
//! removed, and the absolute-form target becomes origin-form.

#![allow(missing_docs)]

mod support;

use flowtap_proxy_core::Config;
use support::{RawOrigin, TestProxy, curl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RESPONSE_HEAD: &str = "HTTP/1.1 200 OK\r\nX-Weird-CASE: first\r\nx-dup: 1\r\nCONTENT-length: 2\r\nServer: raw\r\nX-Dup: 2\r\n\r\n";

fn response() -> Vec<u8> {
    format!("{RESPONSE_HEAD}ok").into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn request_reaches_the_server_byte_for_byte() {
    let origin = RawOrigin::start(&response()).await;
    let proxy = TestProxy::start(Config::default()).await;
    let port = origin.port();
    let fields = format!(
        "Host: 127.0.0.1:{port}\r\nX-Mixed-Case: 1\r\nCONTENT-LENGTH: 5\r\nx-dup: a\r\nzzz: z\r\nX-Dup: b\r\n"
    );
    let sent = format!(
        "POST http://127.0.0.1:{port}/form?x=1 HTTP/1.1\r\n{fields}Proxy-Connection: keep-alive\r\n\r\nhello"
    );

    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    tcp.write_all(sent.as_bytes()).await.expect("write");
    let mut answer = vec![0u8; response().len()];
    tcp.read_exact(&mut answer)
        .await
        .expect("the whole response");
    assert_eq!(
        String::from_utf8_lossy(&answer),
        String::from_utf8_lossy(&response())
    );

    let requests = origin.requests();
    let expected = format!("POST /form?x=1 HTTP/1.1\r\n{fields}\r\nhello");
    assert_eq!(String::from_utf8_lossy(&requests[0]), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_headers_keep_case_and_order() {
    let origin = RawOrigin::start(&response()).await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/path", origin.port());
    let args = [
        "-x",
        &proxy.url(),
        "-i",
        "-H",
        "X-Mixed-Case: 1",
        "-H",
        "x-dup: a",
        "-H",
        "zzz-last: z",
        "-H",
        "X-Dup: b",
        "-H",
        "ACCEPT: text/plain",
        &url,
    ];
    let out = curl(&args).await.ok();
    assert_eq!(
        out.text(),
        format!("{RESPONSE_HEAD}ok"),
        "the response head changed on the way"
    );

    let request = String::from_utf8_lossy(&origin.requests()[0]).into_owned();
    assert!(request.starts_with("GET /path HTTP/1.1\r\n"), "{request}");
    let expected =
        "X-Mixed-Case: 1\r\nx-dup: a\r\nzzz-last: z\r\nX-Dup: b\r\nACCEPT: text/plain\r\n";
    assert!(
        request.contains(expected),
        "headers changed on the way:\n{request}"
    );
    assert!(
        !request.to_ascii_lowercase().contains("proxy-connection"),
        "{request}"
    );
}
