//! Acting on live flows from outside their hooks, through the `CoreControl` the proxy gives
//! the scripts: injecting WebSocket and TCP messages, and killing HTTP, WebSocket and TCP
//! flows. A recording `Hooks` stands in for the script host; the clients and origins are real.

#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::hooks::{Hook, HookInterest, Interest};
use flowtap_proxy_core::{Config, CoreControl, Hooks, Verdict};
use futures_util::future::BoxFuture;
use support::TestProxy;
use support::connect::connect_tunnel;
use support::websocket::{BINARY, TEXT, WsClient, WsOrigin, tcp_echo_origin};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wants the hooks it is given, records each call (hook and flow), keeps the control.
struct Controller {
    interest: Interest,
    calls: Mutex<Vec<(Hook, Flow)>>,
    control: OnceLock<Arc<dyn CoreControl>>,
}

impl Controller {
    fn new(hooks: &[Hook]) -> Arc<Self> {
        let mut interest = Interest::none();
        for hook in hooks {
            interest.add(
                *hook,
                HookInterest {
                    wanted: true,
                    needs_body: true,
                    awaited: true,
                },
            );
        }
        Arc::new(Self {
            interest,
            calls: Mutex::new(Vec::new()),
            control: OnceLock::new(),
        })
    }

    fn control(&self) -> &Arc<dyn CoreControl> {
        self.control.get().expect("the proxy attached its control")
    }

    fn calls_of(&self, hook: Hook) -> Vec<Flow> {
        let calls = self.calls.lock().expect("calls lock");
        calls
            .iter()
            .filter(|(h, _)| *h == hook)
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// The flow of the first call of `hook`, once there was one (at most 10 s).
    async fn first(&self, hook: Hook) -> Flow {
        for _ in 0..1000 {
            if let Some(flow) = self.calls_of(hook).into_iter().next() {
                return flow;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {hook:?} call");
    }
}

impl Hooks for Controller {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        self.calls
            .lock()
            .expect("calls lock")
            .push((hook, flow.clone()));
        Box::pin(async { Verdict::Continue })
    }

    fn attach(&self, control: Arc<dyn CoreControl>) {
        let _ = self.control.set(control);
    }
}

const WEBSOCKET_HOOKS: [Hook; 3] = [
    Hook::WebsocketStart,
    Hook::WebsocketMessage,
    Hook::WebsocketEnd,
];

#[tokio::test]
async fn injected_websocket_messages_go_through_the_hook_to_their_side() {
    let origin = WsOrigin::start().await;
    let hooks = Controller::new(&WEBSOCKET_HOOKS);
    let proxy = TestProxy::start_with(Config::default(), hooks.clone(), true).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    let id = hooks.first(Hook::WebsocketStart).await.id;

    let control = hooks.control();
    control
        .inject_websocket(&id, true, Bytes::from_static(b"to the client"), true)
        .expect("a live WebSocket flow");
    let frame = client.frame().await;
    assert_eq!(
        (frame.opcode, &frame.payload[..]),
        (TEXT, &b"to the client"[..])
    );
    control
        .inject_websocket(&id, false, Bytes::from_static(b"to the server"), false)
        .expect("a live WebSocket flow");
    let echo = client.frame().await;
    assert_eq!(
        (echo.opcode, &echo.payload[..]),
        (BINARY, &b"echo: to the server"[..])
    );
    assert!(
        origin
            .frames()
            .iter()
            .any(|f| f.masked && f.payload == b"to the server"),
        "an injected frame to the server is masked"
    );
    assert!(
        control
            .inject_tcp(&id, true, Bytes::from_static(b"x"))
            .unwrap_err()
            .contains("not a TCP flow")
    );

    client
        .send(true, support::websocket::CLOSE, &[0x03, 0xe8])
        .await;
    let flow = proxy.sink.wait_flows(1).await.remove(0);
    let messages = &flow.websocket.as_ref().expect("websocket").messages;
    let summary: Vec<(bool, bool, &[u8])> = messages
        .iter()
        .map(|m| (m.injected, m.from_client, &m.content[..]))
        .collect();
    assert_eq!(
        summary,
        vec![
            (true, false, &b"to the client"[..]),
            (true, true, &b"to the server"[..]),
            (false, false, &b"echo: to the server"[..]),
        ]
    );
    let seen = hooks.calls_of(Hook::WebsocketMessage);
    let last = |f: &Flow| f.websocket.as_ref().expect("ws").messages.last().cloned();
    assert!(
        last(&seen[0]).is_some_and(|m| m.injected && &m.content[..] == b"to the client"),
        "websocket_message saw the injected message"
    );
    let error = control
        .inject_websocket(&id, true, Bytes::from_static(b"late"), true)
        .unwrap_err();
    assert!(error.contains("not live"), "{error}");
}

#[tokio::test]
async fn a_killed_websocket_flow_ends_with_websocket_end_and_the_error() {
    let origin = WsOrigin::start().await;
    let hooks = Controller::new(&WEBSOCKET_HOOKS);
    let proxy = TestProxy::start_with(Config::default(), hooks.clone(), false).await;
    let mut client = WsClient::connect(proxy.addr, origin.port(), "/").await;
    client.send_text("before").await;
    assert_eq!(&client.frame().await.payload[..], b"echo: before");
    let id = hooks.first(Hook::WebsocketStart).await.id;

    hooks.control().kill(&id).expect("a live flow");
    assert!(client.at_end().await, "the client connection is closed");
    let end = hooks.first(Hook::WebsocketEnd).await;
    assert_eq!(
        end.error.as_ref().map(|e| e.msg.as_str()),
        Some("Connection killed.")
    );
    let flow = proxy.sink.wait_flows(1).await.remove(0);
    assert_eq!(
        flow.error.map(|e| e.msg).as_deref(),
        Some("Connection killed.")
    );
    let again = hooks.control().kill(&id).unwrap_err();
    assert!(again.contains("not live"), "{again}");
}

#[tokio::test]
async fn tcp_flows_take_injections_and_can_be_killed() {
    let origin = tcp_echo_origin().await;
    let hooks = Controller::new(&[
        Hook::TcpStart,
        Hook::TcpMessage,
        Hook::TcpError,
        Hook::TcpEnd,
    ]);
    let proxy = TestProxy::start_with(Config::default(), hooks.clone(), false).await;
    let mut tunnel = connect_tunnel(proxy.addr, &origin.to_string())
        .await
        .expect("the tunnel opens");
    tunnel.write_all(b"\x00hello").await.expect("send");
    let mut buf = vec![0u8; 64];
    let n = tunnel.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"ECHO \x00hello");
    let id = hooks.first(Hook::TcpStart).await.id;

    let control = hooks.control();
    control
        .inject_tcp(&id, true, Bytes::from_static(b"injected"))
        .expect("a live TCP flow");
    let n = tunnel.read(&mut buf).await.expect("read");
    assert_eq!(&buf[..n], b"injected");
    assert!(
        control
            .inject_websocket(&id, true, Bytes::from_static(b"x"), true)
            .unwrap_err()
            .contains("not a WebSocket flow")
    );

    control.kill(&id).expect("a live flow");
    assert_eq!(tunnel.read(&mut buf).await.unwrap_or(0), 0, "closed");
    let error = hooks.first(Hook::TcpError).await;
    assert_eq!(
        error.error.as_ref().map(|e| e.msg.as_str()),
        Some("Connection killed.")
    );
    assert!(
        hooks.calls_of(Hook::TcpEnd).is_empty(),
        "tcp_error or tcp_end, not both"
    );
    let flow = proxy.sink.wait_flows(1).await.remove(0);
    assert_eq!(flow.r#type, "tcp");
    let contents: Vec<&[u8]> = flow.messages.iter().map(|m| &m.content[..]).collect();
    assert_eq!(
        contents,
        vec![&b"\x00hello"[..], b"ECHO \x00hello", b"injected"]
    );
}

#[tokio::test]
async fn an_http_flow_waiting_for_its_server_can_be_killed() {
    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            kept.push(tcp);
        }
    });
    let hooks = Controller::new(&[Hook::Request, Hook::Error, Hook::Response]);
    let proxy = TestProxy::start_with(Config::default(), hooks.clone(), false).await;
    let mut client = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let request = format!("GET http://127.0.0.1:{port}/slow HTTP/1.1\r\nHost: x\r\n\r\n");
    client.write_all(request.as_bytes()).await.expect("send");
    let id = hooks.first(Hook::Request).await.id;
    tokio::time::sleep(Duration::from_millis(50)).await;

    hooks.control().kill(&id).expect("a live flow");
    let mut buf = Vec::new();
    let n = client.read_to_end(&mut buf).await.unwrap_or(0);
    assert_eq!(n, 0, "no response, the connection just ends: {buf:?}");
    let error = hooks.first(Hook::Error).await;
    assert_eq!(
        error.error.as_ref().map(|e| e.msg.as_str()),
        Some("Connection killed.")
    );
    assert!(hooks.calls_of(Hook::Response).is_empty());
    let flow = proxy.sink.wait_flows(1).await.remove(0);
    assert!(flow.response.is_none());
    assert!(hooks.control().kill("no-such-flow").is_err());
    held.abort();
}

#[tokio::test]
async fn an_http2_flow_is_killed_by_resetting_its_stream() {
    let origin = support::HyperOrigin::tls(&[b"h2", b"http/1.1"]).await;
    let hooks = Controller::new(&[Hook::Request, Hook::Error]);
    let config = Config {
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        ..Config::default()
    };
    let proxy = TestProxy::start_with(config, hooks.clone(), false).await;
    let ca = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/slow?sleep_ms=20000", origin.port());
    let proxy_url = proxy.url();
    let curl = tokio::spawn(async move {
        support::curl(&[
            "--http2",
            "--cacert",
            ca.to_str().expect("utf-8 path"),
            "-x",
            &proxy_url,
            &url,
        ])
        .await
    });
    let request = hooks.first(Hook::Request).await;
    assert_eq!(
        request.request.as_ref().map(|r| &r.http_version[..]),
        Some(&b"HTTP/2.0"[..])
    );
    hooks.control().kill(&request.id).expect("a live flow");
    let out = curl.await.expect("curl task");
    assert_ne!(out.code, 0, "the stream was reset: {out:?}");
    let error = hooks.first(Hook::Error).await;
    assert_eq!(
        error.error.as_ref().map(|e| e.msg.as_str()),
        Some("Connection killed.")
    );
}
