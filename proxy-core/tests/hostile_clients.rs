//! Clients that try to hold the proxy or smuggle requests past it: idle and slow clients are
//! closed at their deadlines, the connection cap holds new clients back without failing them,
//! ambiguous framing is refused with 400 before anything reaches a server, and bodies over
//! `body_size_limit` are refused.

#![allow(missing_docs)]

mod support;

use std::time::{Duration, Instant};

use flowtap_proxy_core::Config;
use support::{HyperOrigin, RawOrigin, TestProxy, curl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound no deadline under test comes near: a read that takes longer means the proxy held
/// the connection.
const GUARD: Duration = Duration::from_secs(10);

/// Reads until the proxy closes the connection; returns what it sent and how long it took.
async fn read_until_closed(tcp: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, tcp.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the proxy kept the connection open past {GUARD:?}"
    );
    (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
}

fn short_deadlines() -> Config {
    Config {
        request_head_timeout: Duration::from_millis(400),
        client_idle_timeout: Duration::from_millis(400),
        tls_handshake_timeout: Duration::from_millis(400),
        tunnel_idle_timeout: Duration::from_millis(400),
        ..Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_sends_nothing_is_closed_at_the_idle_deadline() {
    let proxy = TestProxy::start(short_deadlines()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let (answer, took) = read_until_closed(&mut tcp).await;
    assert_eq!(answer, "", "an idle client is closed without an answer");
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_its_request() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(short_deadlines()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let request = format!(
        "GET http://127.0.0.1:{}/one HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        origin.port()
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let (answer, _) = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("origin: GET /one"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_sent_byte_by_byte_gets_408_at_the_head_deadline() {
    let proxy = TestProxy::start(Config {
        request_head_timeout: Duration::from_millis(500),
        client_idle_timeout: Duration::from_secs(5),
        ..Config::default()
    })
    .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    tcp.write_all(b"GET http://127.0.0.1:1/ HTTP/1.1\r\n")
        .await
        .expect("write");
    // Each byte comes well within the idle deadline; the head as a whole never ends.
    let (mut reader, mut writer) = tcp.into_split();
    let dribble = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let start = Instant::now();
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, reader.read_to_end(&mut out)).await;
    dribble.abort();
    assert!(read.is_ok(), "a slow head held the connection");
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_connect_tunnel_is_closed_at_the_tunnel_deadline() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(short_deadlines()).await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let connect = format!(
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
        origin.port()
    );
    tcp.write_all(connect.as_bytes()).await.expect("write");
    let (answer, took) = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        took >= Duration::from_millis(350),
        "closed too early: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn half_a_client_hello_is_closed_at_the_handshake_deadline() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config {
        tls_handshake_timeout: Duration::from_millis(400),
        ..Config::default()
    })
    .await;
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let connect = format!(
        "CONNECT 127.0.0.1:{0} HTTP/1.1\r\nHost: 127.0.0.1:{0}\r\n\r\n",
        origin.port()
    );
    tcp.write_all(connect.as_bytes()).await.expect("write");
    // A TLS record header announcing a handshake message that never comes.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .expect("write");
    let (answer, _) = read_until_closed(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn at_the_connection_cap_a_new_client_waits_for_a_slot_and_is_then_served() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config {
        max_client_connections: 3,
        ..Config::default()
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(proxy.addr).await.expect("connect"));
    }
    let url = format!("http://127.0.0.1:{}/capped", origin.port());
    let proxy_url = proxy.url();
    let waiting = tokio::spawn(async move { curl(&["-x", &proxy_url, "-m", "20", &url]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fourth client was served past the cap of 3"
    );
    assert!(origin.seen().is_empty());
    drop(idle.pop());
    let out = waiting.await.expect("curl task").ok();
    assert_eq!(out.text(), "origin: GET /capped");
}

/// Sends `request` raw and returns the proxy's answer (read until it closes).
async fn send_raw(proxy: &TestProxy, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    tcp.write_all(request).await.expect("write");
    read_until_closed(&mut tcp).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_framing_is_refused_with_400_before_anything_reaches_the_server() {
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let proxy = TestProxy::start(Config::default()).await;
    let port = origin.port();
    let cases = [
        format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: +3\r\n\r\nabc"
        ),
        format!(
            "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        format!(
            "GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: elsewhere\r\n\r\n"
        ),
    ];
    for request in &cases {
        let answer = send_raw(&proxy, request.as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{request:?} got {answer:?}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }
    assert_eq!(
        origin.connections(),
        0,
        "a refused request reached the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_chunk_size_is_400_before_anything_reaches_the_server() {
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    // A sink that keeps bodies makes the proxy read the request body before forwarding it.
    let proxy = TestProxy::start_with(
        Config::default(),
        std::sync::Arc::new(flowtap_proxy_core::NoHooks::default()),
        true,
    )
    .await;
    let port = origin.port();
    let request = format!(
        "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
    );
    let answer = send_raw(&proxy, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("invalid chunk size"), "{answer}");
    assert_eq!(origin.connections(), 0);
    let flows = proxy.sink.wait_flows(1).await;
    assert!(
        flows[0].error.is_some(),
        "the refused flow is recorded with its error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_chunk_extension_is_refused_at_the_line_limit() {
    let origin = RawOrigin::start(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let proxy = TestProxy::start(Config::default()).await;
    let port = origin.port();
    let mut tcp = TcpStream::connect(proxy.addr).await.expect("connect");
    let head = format!(
        "POST http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n\r\n1;ext="
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let (mut reader, mut writer) = tcp.into_split();
    // 64 MiB of extension if the proxy kept reading; it must answer long before.
    let flood = tokio::spawn(async move {
        let block = vec![b'a'; 64 * 1024];
        for _ in 0..1024 {
            if writer.write_all(&block).await.is_err() {
                return false;
            }
        }
        true
    });
    let mut out = Vec::new();
    let read = tokio::time::timeout(GUARD, reader.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept reading the extension");
    let answer = String::from_utf8_lossy(&out);
    assert!(answer.contains(" 400 "), "{answer}");
    assert!(answer.contains("chunk size line longer than"), "{answer}");
    let sent_everything = flood.await.expect("flood task");
    assert!(
        !sent_everything,
        "the proxy read all 64 MiB of a chunk size line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_absolute_form_request_reaches_the_server_with_the_targets_host() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/h", origin.port());
    let out = curl(&["-x", &proxy.url(), "-H", "Host: attacker.example", &url])
        .await
        .ok();
    assert_eq!(out.text(), "origin: GET /h");
    let seen = origin.seen();
    assert_eq!(
        seen[0].header("host"),
        Some(format!("127.0.0.1:{}", origin.port()).as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_over_body_size_limit_are_refused() {
    let origin = HyperOrigin::plain().await;
    let proxy = TestProxy::start_with(
        Config {
            body_size_limit: Some(1000),
            ..Config::default()
        },
        std::sync::Arc::new(flowtap_proxy_core::NoHooks::default()),
        true,
    )
    .await;
    let url = format!("http://127.0.0.1:{}/upload", origin.port());
    let body = "x".repeat(5000);
    let out = curl(&[
        "-x",
        &proxy.url(),
        "-w",
        "\n%{http_code}",
        "--data-binary",
        &body,
        &url,
    ])
    .await;
    let text = out.text();
    assert!(text.ends_with("\n413"), "{text}");
    assert!(text.contains("body_size_limit"), "{text}");
    assert!(
        origin.seen().is_empty(),
        "the refused request reached the server"
    );
    // A small request still goes through.
    let out = curl(&["-x", &proxy.url(), &url]).await.ok();
    assert_eq!(out.text(), "origin: GET /upload");
}
