//! The hook call sites fire in mitmproxy's order. Each scenario runs a real client through the proxy
//! with a recording `Hooks` implementation and compares the hooks seen with the order recorded
//! from mitmdump 12.3.1 (`fixtures/mitmproxy-12/*.events.txt`), keeping the hooks flowtap
//! exposes (mitmdump's `update`, `next_layer`, `tls_*` and lifecycle events are not call sites).

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::{Flow, Response};
use flowtap_proxy_core::hooks::{Hook, HookInterest, Interest};
use flowtap_proxy_core::{Config, Hooks, Proxy, Verdict};
use futures_util::future::BoxFuture;
use support::connect::connect_tunnel;
use support::websocket::{BINARY, CLOSE, TEXT, WsClient, WsOrigin, close_payload, tcp_echo_origin};
use support::{HyperOrigin, RawOrigin, closed_port, curl};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Wants every hook, records its name, and answers `/reply` with a 418 or kills `/kill` in the
/// `request` hook, as the fixture's reply.py does.
struct Recorder {
    interest: Interest,
    seen: Mutex<Vec<&'static str>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        let mut interest = Interest::none();
        for hook in ALL_HOOKS {
            interest.add(
                hook,
                HookInterest {
                    wanted: true,
                    needs_body: true,
                    awaited: true,
                },
            );
        }
        Arc::new(Self {
            interest,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<&'static str> {
        self.seen.lock().expect("recorder lock").clone()
    }
}

const ALL_HOOKS: [Hook; 21] = [
    Hook::ClientConnected,
    Hook::ClientDisconnected,
    Hook::ServerConnect,
    Hook::ServerConnected,
    Hook::ServerDisconnected,
    Hook::ServerConnectError,
    Hook::Requestheaders,
    Hook::Request,
    Hook::Responseheaders,
    Hook::Response,
    Hook::Error,
    Hook::HttpConnect,
    Hook::HttpConnected,
    Hook::HttpConnectError,
    Hook::WebsocketStart,
    Hook::WebsocketMessage,
    Hook::WebsocketEnd,
    Hook::TcpStart,
    Hook::TcpMessage,
    Hook::TcpEnd,
    Hook::TcpError,
];

/// mitmproxy's name of a hook.
fn name(hook: Hook) -> &'static str {
    match hook {
        Hook::ClientConnected => "client_connected",
        Hook::ClientDisconnected => "client_disconnected",
        Hook::ServerConnect => "server_connect",
        Hook::ServerConnected => "server_connected",
        Hook::ServerDisconnected => "server_disconnected",
        Hook::ServerConnectError => "server_connect_error",
        Hook::Requestheaders => "requestheaders",
        Hook::Request => "request",
        Hook::Responseheaders => "responseheaders",
        Hook::Response => "response",
        Hook::Error => "error",
        Hook::HttpConnect => "http_connect",
        Hook::HttpConnected => "http_connected",
        Hook::HttpConnectError => "http_connect_error",
        Hook::WebsocketStart => "websocket_start",
        Hook::WebsocketMessage => "websocket_message",
        Hook::WebsocketEnd => "websocket_end",
        Hook::TcpStart => "tcp_start",
        Hook::TcpMessage => "tcp_message",
        Hook::TcpEnd => "tcp_end",
        Hook::TcpError => "tcp_error",
        _ => "other",
    }
}

impl Hooks for Recorder {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        self.seen.lock().expect("recorder lock").push(name(hook));
        let path = flow
            .request
            .as_ref()
            .map(|r| r.path.clone())
            .unwrap_or_default();
        Box::pin(async move {
            if hook != Hook::Request {
                return Verdict::Continue;
            }
            match &path[..] {
                b"/reply" => {
                    flow.response = Some(Response {
                        http_version: Bytes::from_static(b"HTTP/1.1"),
                        status_code: 418,
                        reason: Bytes::from_static(b"I'm a teapot"),
                        content: Some(Bytes::from_static(b"teapot")),
                        ..Default::default()
                    });
                    Verdict::Respond
                }
                b"/kill" => Verdict::Kill,
                _ => Verdict::Continue,
            }
        })
    }
}

/// The hooks of a fixture's event log that are flowtap call sites, in order.
fn recorded(fixture: &str) -> Vec<String> {
    let path = format!(
        "{}/../fixtures/mitmproxy-12/{fixture}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).expect("the fixture exists");
    let known: Vec<&str> = ALL_HOOKS.iter().map(|h| name(*h)).collect();
    text.lines()
        .filter_map(|l| l.split(':').next())
        .filter(|h| known.contains(h))
        .map(str::to_string)
        .collect()
}

async fn start_proxy(
    hooks: Arc<Recorder>,
    trusted: Option<&std::path::Path>,
) -> (SocketAddr, tempfile::TempDir) {
    let confdir = tempfile::tempdir().expect("confdir");
    let ca = Arc::new(CertificateAuthority::load_or_create(confdir.path()).expect("create the CA"));
    let config = Config {
        listeners: vec![flowtap_proxy_core::Listener::regular(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        )))],
        upstream_trusted_ca: trusted.map(|p| vec![p.to_path_buf()]).unwrap_or_default(),
        ..Config::default()
    };
    let sink = Arc::new(flowtap_proxy_core::Sinks::default());
    let proxy = Proxy::bind(config, ca, hooks, sink).await.expect("bind");
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));
    (addr, confdir)
}

/// Waits (bounded) until the recorder has seen `count` client disconnects.
async fn until_disconnected(recorder: &Recorder, count: usize) {
    for _ in 0..200 {
        if recorder
            .seen()
            .iter()
            .filter(|h| **h == "client_disconnected")
            .count()
            >= count
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "client_disconnected not seen; hooks so far: {:?}",
        recorder.seen()
    );
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

#[tokio::test]
async fn plain_get_fires_hooks_in_mitmdump_order() {
    // The recording's origin (Python's http.server) answers HTTP/1.0 and closes: its
    // `server_disconnected` comes before the client's.
    let origin = RawOrigin::start(b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
    let recorder = Recorder::new();
    let (proxy, _conf) = start_proxy(recorder.clone(), None).await;
    curl(&[
        "-x",
        &format!("http://{proxy}"),
        &format!("http://127.0.0.1:{}/hello.txt", origin.port()),
    ])
    .await
    .ok();
    until_disconnected(&recorder, 1).await;
    assert_eq!(recorder.seen(), recorded("http-get-200.events.txt"));
}

#[tokio::test]
async fn refused_connection_fires_connect_error_then_error() {
    let recorder = Recorder::new();
    let (proxy, _conf) = start_proxy(recorder.clone(), None).await;
    let out = curl(&[
        "-x",
        &format!("http://{proxy}"),
        &format!("http://127.0.0.1:{}/nothing-here", closed_port()),
    ])
    .await;
    assert!(
        out.text().contains("flowtap: cannot connect"),
        "the client is told why: {}",
        out.text()
    );
    until_disconnected(&recorder, 1).await;
    assert_eq!(recorder.seen(), recorded("http-conn-refused.events.txt"));
}

#[tokio::test]
async fn script_reply_and_kill_fire_hooks_in_mitmdump_order() {
    let origin = RawOrigin::start(OK).await;
    let recorder = Recorder::new();
    let (proxy, _conf) = start_proxy(recorder.clone(), None).await;
    let base = format!("http://127.0.0.1:{}", origin.port());
    curl(&["-x", &format!("http://{proxy}"), &format!("{base}/reply")])
        .await
        .ok();
    until_disconnected(&recorder, 1).await;
    curl(&["-x", &format!("http://{proxy}"), &format!("{base}/kill")]).await;
    until_disconnected(&recorder, 2).await;
    assert_eq!(recorder.seen(), recorded("reply-and-kill.events.txt"));
    assert!(
        origin.requests().is_empty(),
        "neither request may reach the server"
    );
}

#[tokio::test]
async fn https_through_connect_fires_hooks_in_mitmdump_order() {
    let origin = HyperOrigin::tls(&[b"http/1.1"]).await;
    let recorder = Recorder::new();
    let origin_ca = origin.cert.as_ref().expect("a TLS origin").ca_path();
    let (proxy, conf) = start_proxy(recorder.clone(), Some(origin_ca)).await;
    let ca = conf.path().join("flowtap-ca-cert.pem");
    curl(&[
        "--http1.1",
        "--cacert",
        ca.to_str().expect("utf-8 path"),
        "-x",
        &format!("http://{proxy}"),
        &format!("https://127.0.0.1:{}/secure/path?q=abc", origin.port()),
    ])
    .await
    .ok();
    until_disconnected(&recorder, 1).await;
    // mitmdump reports the server's disconnect after the client's for TLS tunnels; wait for it.
    for _ in 0..200 {
        if recorder.seen().contains(&"server_disconnected") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(recorder.seen(), recorded("https-get.events.txt"));
}

#[tokio::test]
async fn websocket_fires_hooks_in_mitmdump_order() {
    // As the fixture's client did: a text and a binary message, each echoed, then close(1000).
    let origin = WsOrigin::start().await;
    let recorder = Recorder::new();
    let (proxy, _conf) = start_proxy(recorder.clone(), None).await;
    let mut client = WsClient::connect(proxy, origin.port(), "/chat").await;
    client.send_text("hello websocket").await;
    assert_eq!(client.frame().await.opcode, TEXT);
    client.send(true, BINARY, b"\x00\x01binary").await;
    assert_eq!(client.frame().await.opcode, BINARY);
    client.send(true, CLOSE, &close_payload(1000, "bye")).await;
    assert_eq!(client.frame().await.opcode, CLOSE);
    drop(client);
    until_disconnected(&recorder, 1).await;
    assert_eq!(recorder.seen(), recorded("websocket.events.txt"));
}

#[tokio::test]
async fn raw_tcp_after_connect_fires_hooks_in_mitmdump_order() {
    // As the fixture's client did: two lines, each echoed, then the client closes.
    let origin = tcp_echo_origin().await;
    let recorder = Recorder::new();
    let (proxy, _conf) = start_proxy(recorder.clone(), None).await;
    let mut tunnel = connect_tunnel(proxy, &origin.to_string())
        .await
        .expect("the tunnel opens");
    let mut buf = vec![0u8; 256];
    for line in [&b"hello tcp\n"[..], b"second line\n"] {
        tunnel.write_all(line).await.expect("send");
        let n = tunnel.read(&mut buf).await.expect("read the echo");
        assert_eq!(&buf[..n], [&b"ECHO "[..], line].concat());
    }
    tunnel.shutdown().await.expect("half-close");
    assert_eq!(tunnel.read(&mut buf).await.expect("read the end"), 0);
    until_disconnected(&recorder, 1).await;
    assert_eq!(recorder.seen(), recorded("tcp-raw.events.txt"));
}
