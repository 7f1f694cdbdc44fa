//! The `flowtap` command as a user runs it: its flags, and mitmdump's one line per flow.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::process::Command;

use support::origin::Origin;
use support::{Flowtap, binary, curl, free_port, wait_for_port};

const HELLO: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Origin: raw\r\n\r\nhello";

/// curl through the proxy; returns the client port curl used and the body.
fn get(proxy: SocketAddr, url: &str, extra: &[&str]) -> (u16, String) {
    let proxy = format!("http://{proxy}");
    let out = curl(&[&["-x", &proxy, "-w", "\n%{local_port}"], extra, &[url]].concat()).ok();
    let (body, port) = out.stdout.rsplit_once('\n').expect("body and port");
    (port.parse().expect("a port"), body.to_string())
}

#[test]
fn version_and_help() {
    let version = Command::new(binary())
        .arg("--version")
        .output()
        .expect("run flowtap");
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("flowtap {}", env!("CARGO_PKG_VERSION"))
    );

    let help = Command::new(binary())
        .arg("--help")
        .output()
        .expect("run flowtap");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen-port",
        "--listen-host",
        "--set",
        "--quiet",
        "--flow-detail",
        "--ignore-hosts",
        "--ssl-insecure",
        "--use-mitmproxy-ca",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn listen_host_and_port_choose_the_address() {
    let origin = Origin::fixed(HELLO);
    let port = free_port();
    let flowtap = Flowtap::spawn(&["--listen-host", "127.0.0.1", "-p", &port.to_string()]);
    let addr = flowtap.listening_at();
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
    wait_for_port(addr);
    let (_, body) = get(addr, &format!("http://127.0.0.1:{}/", origin.port()), &[]);
    assert_eq!(body, "hello");
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn one_line_per_flow_like_mitmdump() {
    let origin = Origin::fixed(HELLO);
    let (flowtap, addr) = Flowtap::start(&[]);
    let url = format!("http://127.0.0.1:{}/path?q=1", origin.port());
    let (client_port, body) = get(addr, &url, &[]);
    assert_eq!(body, "hello");

    // The body was streamed (nothing needed it whole), so its size comes from Content-Length.
    let expected = format!("127.0.0.1:{client_port}: GET {url} HTTP/1.1 << 200 OK 5b");
    let line = flowtap
        .stdout
        .wait_for("for the flow", |l| l.contains("/path?q=1"));
    assert_eq!(line, expected);

    let refused = format!("http://127.0.0.1:{}/down", free_port());
    let (client_port, _) = get(addr, &refused, &[]);
    let line = flowtap
        .stdout
        .wait_for("for the failed flow", |l| l.contains("/down"));
    let prefix = format!("127.0.0.1:{client_port}: GET {refused} HTTP/1.1 << cannot connect to");
    assert!(
        line.starts_with(&prefix),
        "{line:?} does not start with {prefix:?}"
    );
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

#[test]
fn quiet_prints_no_flow_lines() {
    let origin = Origin::fixed(HELLO);
    // -q also silences the log, so readiness is seen by polling the port.
    let port = free_port();
    let flowtap = Flowtap::spawn(&["-q", "-p", &port.to_string()]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_for_port(addr);
    let (_, body) = get(
        addr,
        &format!("http://127.0.0.1:{}/quiet", origin.port()),
        &[],
    );
    assert_eq!(body, "hello");
    let (status, stdout) = flowtap.stop();
    assert!(status.success(), "{status}");
    assert!(stdout.is_empty(), "-q printed {stdout:?}");
}

#[test]
fn flow_detail_2_prints_headers() {
    let origin = Origin::fixed(HELLO);
    let (flowtap, addr) = Flowtap::start(&["--flow-detail", "2"]);
    get(
        addr,
        &format!("http://127.0.0.1:{}/detail", origin.port()),
        &["-H", "X-Client-Header: yes"],
    );
    flowtap
        .stdout
        .wait_for("with the response header", |l| l.trim() == "X-Origin: raw");
    let (status, stdout) = flowtap.stop();
    assert!(status.success(), "{status}");
    let text = stdout.join("\n");
    assert!(text.contains("GET http://127.0.0.1:"), "{text}");
    assert!(
        stdout.iter().any(|l| l == "    X-Client-Header: yes"),
        "{text}"
    );
    assert!(stdout.iter().any(|l| l == "    << 200 OK 5b"), "{text}");
    assert!(
        stdout.iter().any(|l| l == "    Content-Length: 5"),
        "{text}"
    );
}
