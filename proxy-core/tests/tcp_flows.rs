//! Raw TCP inside CONNECT tunnels: a client speaking neither TLS nor HTTP (or any client of a
//! `tcp_hosts` host) becomes a TCP flow with its messages; ignored hosts get no flow at all.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;

use flowtap_proto::v1::Flow;
use flowtap_proxy_core::{Config, NoHooks};
use support::TestProxy;
use support::connect::connect_tunnel;
use support::websocket::tcp_echo_origin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends each chunk through the tunnel and reads its echo, then closes its side and waits for
/// the proxy to close too.
async fn talk(mut tunnel: TcpStream, chunks: &[&[u8]]) {
    let mut buf = vec![0u8; 4096];
    for chunk in chunks {
        tunnel.write_all(chunk).await.expect("send");
        let n = tunnel.read(&mut buf).await.expect("read the echo");
        assert_eq!(&buf[..n], [&b"ECHO "[..], chunk].concat());
    }
    tunnel.shutdown().await.expect("half-close");
    assert_eq!(tunnel.read(&mut buf).await.expect("read the end"), 0);
}

fn summary(flow: &Flow) -> Vec<(bool, Vec<u8>)> {
    flow.messages
        .iter()
        .map(|m| (m.from_client, m.content.to_vec()))
        .collect()
}

async fn recording_proxy(config: Config) -> TestProxy {
    TestProxy::start_with(config, Arc::new(NoHooks::default()), true).await
}

#[tokio::test]
async fn a_tunnel_that_is_neither_tls_nor_http_is_a_tcp_flow() {
    let origin = tcp_echo_origin().await;
    let proxy = recording_proxy(Config::default()).await;
    let tunnel = connect_tunnel(proxy.addr, &origin.to_string())
        .await
        .expect("the tunnel opens");
    talk(tunnel, &[b"hello tcp\n", b"second line\n"]).await;

    let flows = proxy.sink.wait_flows(1).await;
    assert_eq!(
        flows.len(),
        1,
        "only the TCP flow; CONNECT flows are not saved"
    );
    let flow = &flows[0];
    assert_eq!(flow.r#type, "tcp");
    assert_eq!(
        summary(flow),
        vec![
            (true, b"hello tcp\n".to_vec()),
            (false, b"ECHO hello tcp\n".to_vec()),
            (true, b"second line\n".to_vec()),
            (false, b"ECHO second line\n".to_vec()),
        ]
    );
    assert!(flow.error.is_none(), "{:?}", flow.error);
    let server = flow.server_conn.as_ref().expect("a server");
    assert_eq!(
        server.address.as_ref().map(|a| a.port),
        Some(u32::from(origin.port()))
    );
    assert!(!flow.live);
}

#[tokio::test]
async fn tcp_hosts_are_tcp_flows_even_when_the_client_speaks_http() {
    let origin = tcp_echo_origin().await;
    let proxy = recording_proxy(Config {
        tcp_hosts: vec![r"^127\.0\.0\.1:".into()],
        ..Config::default()
    })
    .await;
    let tunnel = connect_tunnel(proxy.addr, &origin.to_string())
        .await
        .expect("the tunnel opens");
    talk(tunnel, &[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]).await;
    let flows = proxy.sink.wait_flows(1).await;
    assert_eq!(flows[0].r#type, "tcp");
    assert_eq!(
        summary(&flows[0])[0].1,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    );
}

#[tokio::test]
async fn ignored_hosts_are_relayed_without_a_flow() {
    let origin: SocketAddr = tcp_echo_origin().await;
    let proxy = recording_proxy(Config {
        ignore_hosts: vec![r"^127\.0\.0\.1:".into()],
        ..Config::default()
    })
    .await;
    let tunnel = connect_tunnel(proxy.addr, &origin.to_string())
        .await
        .expect("the tunnel opens");
    talk(tunnel, &[b"\x00\x01binary"]).await;
    // A plain HTTP request afterwards is recorded, so the sink is working.
    let http = support::RawOrigin::start(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
    support::curl(&[
        "-x",
        &proxy.url(),
        &format!("http://127.0.0.1:{}/after", http.port()),
    ])
    .await
    .ok();
    let flows = proxy.sink.wait_flows(1).await;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].r#type, "http");
}
