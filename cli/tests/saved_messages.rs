//! `-w` of a WebSocket flow and a raw TCP flow proxied live: the file is read back by
//! flowtap's reader and by the real mitmproxy 12.3.1 (installed by `scripts/install-mitmproxy`;
//! `FLOWTAP_SKIP_MITMPROXY=1` skips that half and says so).

#![allow(missing_docs)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use flowtap_flow::FlowReader;
use flowtap_proto::v1::Flow;
use support::Flowtap;
use support::websocket::{BINARY, WsClient, WsOrigin, exchange, tcp_echo_origin, tunnel};

/// Proxies one WebSocket session and one TCP session with `-w FILE`; returns the file.
fn record_sessions(dir: &Path) -> PathBuf {
    let out = dir.join("out.mitm");
    let ws = WsOrigin::start();
    let tcp = tcp_echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-w", out.to_str().expect("utf-8 path")]);

    let mut client = WsClient::connect(proxy, ws.port(), "/chat");
    client.send_text("hello websocket");
    assert_eq!(client.text(), "echo: hello websocket");
    client.send(BINARY, b"\x00\x01binary");
    assert_eq!(client.frame().payload, b"echo: \x00\x01binary");
    client.close("bye");
    assert!(client.ended());

    let mut stream = tunnel(proxy, tcp.addr);
    exchange(&mut stream, b"\x00hello tcp", b"ECHO \x00hello tcp");
    stream
        .shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut stream, &mut rest).expect("read to the end");

    // Both flows are written once they end; wait for the second before stopping.
    support::scripts::poll("two flows in the file", || {
        (read_flows(&out).len() == 2).then_some(())
    });
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
    out
}

fn read_flows(path: &Path) -> Vec<Flow> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    FlowReader::new(std::io::BufReader::new(file)).read_all().0
}

#[test]
fn websocket_and_tcp_flows_are_saved_and_load_in_flowtap_and_mitmproxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = record_sessions(dir.path());
    let file = std::fs::File::open(&out).expect("open the file");
    let (flows, error) = FlowReader::new(std::io::BufReader::new(file)).read_all();
    assert!(error.is_none(), "{error:?}");
    assert_eq!(flows.len(), 2);

    let ws = flows
        .iter()
        .find(|f| f.r#type == "http")
        .expect("the WebSocket flow");
    assert_eq!(ws.response.as_ref().map(|r| r.status_code), Some(101));
    let websocket = ws.websocket.as_ref().expect("its WebSocket part");
    let messages: Vec<(u32, bool, &[u8])> = websocket
        .messages
        .iter()
        .map(|m| (m.r#type, m.from_client, &m.content[..]))
        .collect();
    assert_eq!(
        messages,
        vec![
            (1, true, &b"hello websocket"[..]),
            (1, false, b"echo: hello websocket"),
            (2, true, b"\x00\x01binary"),
            (2, false, b"echo: \x00\x01binary"),
        ]
    );
    assert_eq!(
        (
            websocket.closed_by_client,
            websocket.close_code,
            websocket.close_reason.as_deref()
        ),
        (Some(true), Some(1000), Some("bye"))
    );

    let tcp = flows
        .iter()
        .find(|f| f.r#type == "tcp")
        .expect("the TCP flow");
    let chunks: Vec<(bool, &[u8])> = tcp
        .messages
        .iter()
        .map(|m| (m.from_client, &m.content[..]))
        .collect();
    assert_eq!(
        chunks,
        vec![
            (true, &b"\x00hello tcp"[..]),
            (false, b"ECHO \x00hello tcp")
        ]
    );

    assert_mitmproxy_reads(&out);
}

/// What mitmproxy's own reader makes of the file, one line per flow.
const MITMPROXY_SUMMARY: &str = r#"
import sys
from mitmproxy import io, http, tcp
with open(sys.argv[1], "rb") as f:
    for flow in io.FlowReader(f).stream():
        if isinstance(flow, http.HTTPFlow):
            ws = flow.websocket
            print("http", flow.response.status_code, ws.closed_by_client, ws.close_code,
                  ws.close_reason, [(int(m.type), m.from_client, m.content, m.injected)
                                    for m in ws.messages])
        elif isinstance(flow, tcp.TCPFlow):
            print("tcp", [(m.from_client, m.content) for m in flow.messages])
"#;

fn assert_mitmproxy_reads(path: &Path) {
    if std::env::var("FLOWTAP_SKIP_MITMPROXY").as_deref() == Ok("1") {
        eprintln!("SKIPPED: reading the file with mitmproxy (FLOWTAP_SKIP_MITMPROXY=1)");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-mitmproxy");
    let installed = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/install-mitmproxy");
    assert!(
        installed.status.success(),
        "scripts/install-mitmproxy failed"
    );
    let venv = String::from_utf8_lossy(&installed.stdout)
        .lines()
        .last()
        .expect("the venv path")
        .trim()
        .to_string();
    let out = Command::new(Path::new(&venv).join("bin/python"))
        .args(["-c", MITMPROXY_SUMMARY])
        .arg(path)
        .output()
        .expect("run mitmproxy's python");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mitmproxy could not read the file:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            "http 101 True 1000 bye [(1, True, b'hello websocket', False), \
             (1, False, b'echo: hello websocket', False), (2, True, b'\\x00\\x01binary', False), \
             (2, False, b'echo: \\x00\\x01binary', False)]",
            "tcp [(True, b'\\x00hello tcp'), (False, b'ECHO \\x00hello tcp')]",
        ]
    );
}
