//! `Hooks::client_closed` is called once for every client connection that ends, on every path
//! (HTTP/1, HTTP/2 inside a TLS tunnel, a refused server, WebSocket, raw TCP, a client that
//! sends nothing), even when the hooks want no hook at all: the script client lets go of a
//! connection's worker affinity there.

#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowtap_proto::v1::Flow;
use flowtap_proxy_core::hooks::{Hook, Interest};
use flowtap_proxy_core::{Config, Hooks, Verdict};
use futures_util::future::BoxFuture;
use support::connect::connect_tunnel;
use support::proxy::TestProxy;
use support::websocket::{CLOSE, TEXT, WsClient, WsOrigin, close_payload, tcp_echo_origin};
use support::{HyperOrigin, closed_port, curl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wants no hook; records the ids of the client connections that ended.
#[derive(Default)]
struct Closes {
    interest: Interest,
    closed: Mutex<Vec<String>>,
}

impl Hooks for Closes {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, _flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        panic!("{hook:?} called though no hook is wanted")
    }

    fn client_closed(&self, client_id: &str) {
        self.closed
            .lock()
            .expect("closes lock")
            .push(client_id.to_string());
    }
}

impl Closes {
    /// Waits (bounded) for `count` closes in all; they have distinct, non-empty ids.
    async fn wait(&self, count: usize, after: &str) {
        for _ in 0..500 {
            let closed = self.closed.lock().expect("closes lock").clone();
            if closed.len() >= count {
                assert_eq!(closed.len(), count, "after {after}: {closed:?}");
                let mut ids = closed.clone();
                ids.sort();
                ids.dedup();
                assert_eq!(ids.len(), count, "an id closed twice: {closed:?}");
                assert!(ids.iter().all(|id| !id.is_empty()), "{closed:?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("after {after}: not {count} closes");
    }
}

#[tokio::test]
async fn every_client_connection_that_ends_is_reported_once() {
    let hooks = Arc::new(Closes::default());
    let origin = HyperOrigin::tls(&[b"h2", b"http/1.1"]).await;
    let origin_ca = origin.cert.as_ref().expect("a TLS origin").ca_path();
    let proxy = TestProxy::start_with(
        Config {
            upstream_trusted_ca: vec![origin_ca.to_path_buf()],
            ..Config::default()
        },
        hooks.clone(),
        false,
    )
    .await;
    let plain = HyperOrigin::plain().await;

    curl(&[
        "-x",
        &proxy.url(),
        &format!("http://127.0.0.1:{}/plain", plain.port()),
    ])
    .await
    .ok();
    hooks.wait(1, "HTTP/1").await;

    let ca = proxy.ca_cert_path();
    curl(&[
        "--http2",
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        "-x",
        &proxy.url(),
        &format!("https://127.0.0.1:{}/h2", origin.port()),
    ])
    .await
    .ok();
    hooks.wait(2, "HTTP/2 in a TLS tunnel").await;

    curl(&[
        "-x",
        &proxy.url(),
        &format!("http://127.0.0.1:{}/refused", closed_port()),
    ])
    .await;
    hooks.wait(3, "a refused server").await;

    let ws = WsOrigin::start().await;
    let mut client = WsClient::connect(proxy.addr, ws.port(), "/chat").await;
    client.send_text("hello").await;
    assert_eq!(client.frame().await.opcode, TEXT);
    client.send(true, CLOSE, &close_payload(1000, "bye")).await;
    assert_eq!(client.frame().await.opcode, CLOSE);
    drop(client);
    hooks.wait(4, "WebSocket").await;

    let echo = tcp_echo_origin().await;
    let mut tunnel = connect_tunnel(proxy.addr, &echo.to_string())
        .await
        .expect("the tunnel opens");
    let mut buf = vec![0u8; 64];
    tunnel.write_all(b"hello tcp\n").await.expect("send");
    let n = tunnel.read(&mut buf).await.expect("read the echo");
    assert!(n > 0);
    drop(tunnel);
    hooks.wait(5, "raw TCP").await;

    let silent = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    drop(silent);
    hooks.wait(6, "a client that sent nothing").await;
    proxy.stop().await;
}
