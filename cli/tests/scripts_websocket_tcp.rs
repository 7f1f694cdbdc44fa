//! WebSocket and raw TCP flows with real Python scripts (`flowtap -s`): the examples
//! `websocket_simple.py`, `websocket_inject.py` and `tcp_simple.py`, an old-API
//! `tcp_message(context, tcp_msg)` script, and `flow.kill()` on live flows from outside their
//! hooks. Each test checks what the client and the origin really received.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use support::origin::{Origin, read_head};
use support::scripts::{TempScript, curl_via, example, poll, poll_text, status_of};
use support::websocket::{TEXT, WsClient, WsOrigin, exchange, tcp_echo_origin, tunnel};
use support::{Flowtap, WAIT};

#[test]
fn websocket_simple_logs_rewrites_and_drops_messages() {
    let origin = WsOrigin::start();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("websocket_simple.py")]);
    let mut client = WsClient::connect(proxy, origin.port(), "/chat");

    client.send_text("Hello world");
    assert_eq!(client.text(), "echo: HAPPY world");
    client.send_text("this has FOOBAR in it");
    client.send_text("after");
    // The dropped message reached nobody: the next frame is the echo of "after".
    assert_eq!(client.text(), "echo: after");
    let close = client.close("done");
    assert_eq!(close.opcode, 8);
    assert_eq!(origin.received(), vec!["HAPPY world", "after"]);

    // The script's log lines, on stdout as mitmdump prints them.
    flowtap
        .stdout
        .wait_for("logging the client's message", |l| {
            l.contains("client sent a message: b'Hello world'")
        });
    flowtap
        .stdout
        .wait_for("logging the server's message", |l| {
            l.contains("server sent a message: b'echo: HAPPY world'")
        });
    flowtap.stop();
}

#[test]
fn websocket_inject_sends_the_client_messages_from_a_task() {
    let origin = WsOrigin::start();
    let (flowtap, proxy) = Flowtap::start(&["-s", &example("websocket_inject.py")]);
    let mut client = WsClient::connect(proxy, origin.port(), "/");
    let first = client.frame();
    assert_eq!((first.opcode, first.text().as_str()), (TEXT, "injected 1"));
    let second = client.frame();
    assert_eq!(second.text(), "injected 2");
    // The connection still works both ways between injections.
    client.send_text("mine");
    let echo = loop {
        let text = client.text();
        if !text.starts_with("injected") {
            break text;
        }
    };
    assert_eq!(echo, "echo: mine");
    client.close("bye");
    assert_eq!(
        origin.received(),
        vec!["mine"],
        "injections went to the client only"
    );
    flowtap.stop();
}

#[test]
fn tcp_simple_rewrites_chunks_of_tcp_hosts() {
    let origin = tcp_echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "-s",
        &example("tcp_simple.py"),
        "--tcp-hosts",
        r"^127\.0\.0\.1:",
    ]);
    let mut stream = tunnel(proxy, origin.addr);
    // HTTP-looking bytes: only `--tcp-hosts` makes them a TCP flow.
    exchange(
        &mut stream,
        b"GET /foo HTTP/1.1\r\n\r\n",
        b"ECHO GET /bar HTTP/1.1\r\n\r\n",
    );
    exchange(&mut stream, b"food", b"ECHO bard");
    drop(stream);
    flowtap.stdout.wait_for("logging a chunk", |l| {
        l.contains("tcp_message from the server: b'ECHO bard'")
    });
    flowtap.stop();
}

const OLD_TCP_SCRIPT: &str = r#"
def start(context, argv):
    context.seen = []

def tcp_message(context, tcp_msg):
    sender = "client" if tcp_msg.sender is tcp_msg.client_conn else "server"
    tcp_msg.message = tcp_msg.message.replace(b"ping", b"PONG")
    context.log(f"old tcp_message from {sender}: {tcp_msg.message!r}")
"#;

#[test]
fn an_old_api_tcp_message_script_changes_the_chunks() {
    let origin = tcp_echo_origin();
    let script = TempScript::new("old_tcp.py", OLD_TCP_SCRIPT);
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let mut stream = tunnel(proxy, origin.addr);
    // Neither TLS nor HTTP: a TCP flow without `--tcp-hosts`.
    exchange(&mut stream, b"\x00ping", b"ECHO \x00PONG");
    drop(stream);
    flowtap.stdout.wait_for("the old hook's log line", |l| {
        l.contains(r"old tcp_message from client: b'\x00PONG'")
    });
    flowtap.stop();
}

/// Keeps `/slow` flows; a request to `/kill` kills them from its own `request` hook.
const KILL_HTTP_SCRIPT: &str = r#"
slow = []

def request(flow):
    if flow.request.path == "/slow":
        slow.append(flow)
    elif flow.request.path == "/kill":
        slow.pop().kill()

def error(flow):
    with open(__file__ + ".errors", "a") as f:
        f.write(f"{flow.request.path} {flow.error.msg}\n")
"#;

#[test]
fn a_flow_waiting_for_its_server_is_killed_from_another_flows_hook() {
    // `/slow` gets no answer; everything else gets 200.
    let origin = Origin::start(|mut stream| {
        while let Some((head, _)) = read_head(&mut stream) {
            if head.starts_with("GET /slow") {
                thread::sleep(WAIT);
                return;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let script = TempScript::new("kill.py", KILL_HTTP_SCRIPT);
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", origin.port());
    let slow_url = url("/slow");
    let slow = thread::spawn(move || curl_via(proxy, &slow_url, &[]));
    thread::sleep(Duration::from_millis(500));
    assert!(!slow.is_finished());

    assert_eq!(status_of(&curl_via(proxy, &url("/kill"), &[]).ok()), 200);
    let out = slow.join().expect("curl thread");
    assert_eq!(out.code, 52, "curl gets an empty reply: {out:?}");
    let errors = script.sibling("kill.py.errors");
    let text = poll_text("the error hook", &errors);
    assert_eq!(text, "/slow Connection killed.\n");
    flowtap.stop();
}

/// A task started in `websocket_start` kills the flow once the client said "kill me".
const KILL_WEBSOCKET_SCRIPT: &str = r#"
import asyncio

async def killer(flow):
    while not any(m.content == b"kill me" for m in flow.websocket.messages):
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    flow.kill()

async def websocket_start(flow):
    asyncio.create_task(killer(flow))

def websocket_message(flow):
    pass

def websocket_end(flow):
    with open(__file__ + ".end", "w") as f:
        f.write(f"{flow.error.msg if flow.error else None}")
"#;

#[test]
fn a_websocket_flow_is_killed_from_a_task() {
    let origin = WsOrigin::start();
    let script = TempScript::new("kill_ws.py", KILL_WEBSOCKET_SCRIPT);
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let mut client = WsClient::connect(proxy, origin.port(), "/");
    client.send_text("kill me");
    assert_eq!(client.text(), "echo: kill me");
    assert!(client.ended(), "the proxy closed the connection");
    let end = script.sibling("kill_ws.py.end");
    let text = poll_text("the websocket_end hook", &end);
    assert_eq!(text, "Connection killed.");
    flowtap.stop();
}

/// A TCP flow kept from `tcp_start` is killed from another flow's `request` hook.
#[test]
fn a_tcp_flow_is_killed_by_another_flow() {
    const SCRIPT: &str = r#"
tcp = []

def tcp_start(flow):
    tcp.append(flow)
    open(__file__ + ".started", "w").close()

def request(flow):
    tcp.pop().kill()

def tcp_error(flow):
    with open(__file__ + ".error", "w") as f:
        f.write(flow.error.msg)
"#;
    let origin = tcp_echo_origin();
    let http = Origin::start(|mut stream| {
        while read_head(&mut stream).is_some() {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let script = TempScript::new("kill_tcp.py", SCRIPT);
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let mut stream = tunnel(proxy, origin.addr);
    exchange(&mut stream, b"\x01hi", b"ECHO \x01hi");
    // `tcp_start` is observed, not awaited: wait until the script has kept the flow.
    let started = script.sibling("kill_tcp.py.started");
    poll("the tcp_start hook", || started.exists().then_some(()));
    let url = format!("http://127.0.0.1:{}/kill", http.port());
    assert_eq!(status_of(&curl_via(proxy, &url, &[]).ok()), 200);
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap_or(0), 0, "{rest:?}");
    let error = script.sibling("kill_tcp.py.error");
    let text = poll_text("the tcp_error hook", &error);
    assert_eq!(text, "Connection killed.");
    flowtap.stop();
}
