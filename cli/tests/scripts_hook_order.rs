//! Hook order: `fixtures/mitmproxy-12/eventlog.py` loaded with `flowtap -s` logs one line per
//! hook; each scenario must give the lines mitmdump 12.3.1 recorded for it
//! (`fixtures/mitmproxy-12/*.events.txt`), except the hook flowtap does not fire (`next_layer`).
//! The argument descriptions are compared too (method, URL, status, error, `live`),
//! with ports and the option count normalized.

#![allow(missing_docs)]

mod support;

use flowtap_certs::testing::OriginCert;
use support::origin::Origin;
use support::scripts::{
    EventLog, fixed_response, fixture, http10_origin, normalize_events, recorded_events,
};
use support::websocket::{BINARY, WsClient, WsOrigin, exchange, tcp_echo_origin, tunnel};
use support::{Flowtap, curl, free_port};

/// Starts flowtap with eventlog.py (and `more` scripts), runs `scenario` with the proxy
/// address, stops flowtap and returns the normalized event lines.
fn record(
    extra_args: &[&str],
    replace: &[(&str, &str)],
    scenario: impl FnOnce(std::net::SocketAddr, &Flowtap, &EventLog),
) -> Vec<String> {
    let log = EventLog::new();
    let (name, value) = log.env();
    let eventlog = fixture("eventlog.py");
    let (flowtap, proxy) = Flowtap::start_with_env(
        &[&["-s", eventlog.as_str()], extra_args].concat(),
        &[(name, &value)],
    );
    scenario(proxy, &flowtap, &log);
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
    normalize_events(&log.lines(), replace)
}

fn expected(name: &str, replace: &[(&str, &str)]) -> Vec<String> {
    normalize_events(&recorded_events(name), replace)
}

fn assert_same(got: &[String], want: &[String]) {
    assert_eq!(
        got,
        want,
        "\ngot:\n{}\n\nwant:\n{}\n",
        got.join("\n"),
        want.join("\n")
    );
}

#[test]
fn http_get_200() {
    // Like the recording's origin (python -m http.server): HTTP/1.0, closes after the reply.
    let origin = http10_origin("hello from mitm fixture\n");
    let port = origin.port().to_string();
    let replace = [("18081", port.as_str())];
    let got = record(&[], &replace, |proxy, _, log| {
        let url = format!("http://127.0.0.1:{port}/hello.txt");
        let out = curl(&["-x", &format!("http://{proxy}"), &url]).ok();
        assert_eq!(out.stdout, "hello from mitm fixture\n");
        log.wait_for("client_disconnected");
    });
    assert_same(&got, &expected("http-get-200.events.txt", &replace));
}

#[test]
fn https_get() {
    let cert = OriginCert::new(&["127.0.0.1"]);
    let origin = Origin::tls(&cert, fixed_response("application/json", "{}"));
    let port = origin.port().to_string();
    let replace = [("18443", port.as_str())];
    let trust = format!(
        "ssl_verify_upstream_trusted_ca={}",
        cert.ca_path().display()
    );
    let got = record(&["--set", &trust], &replace, |proxy, flowtap, log| {
        let cacert = flowtap.confdir().join("flowtap-ca-cert.pem");
        let url = format!("https://127.0.0.1:{port}/secure/path?q=abc");
        let out = curl(&[
            "-x",
            &format!("http://{proxy}"),
            "--cacert",
            cacert.to_str().expect("path"),
            &url,
        ])
        .ok();
        assert_eq!(out.stdout, "{}");
        log.wait_for("server_disconnected");
    });
    assert_same(&got, &expected("https-get.events.txt", &replace));
}

/// The refused-connection scenario: events as logged, and as recorded, with the error text
/// (Python's `[Errno 111] Connect call failed (...)` there, the OS error here) made equal.
fn conn_refused_events() -> (Vec<String>, Vec<String>) {
    let port = free_port().to_string();
    let replace = [("18099", port.as_str())];
    let got = record(&[], &replace, |proxy, _, log| {
        let url = format!("http://127.0.0.1:{port}/nothing-here");
        let proxy = format!("http://{proxy}");
        let out = curl(&["-x", &proxy, "-o", "/dev/null", "-w", "%{http_code}", &url]).ok();
        assert_eq!(out.stdout, "502");
        log.wait_for("client_disconnected");
    });
    let refused = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| connect_error_as_refused(&l))
            .collect()
    };
    (
        refused(got),
        refused(expected("http-conn-refused.events.txt", &replace)),
    )
}

/// `err=<anything mentioning a refused connect>` becomes `err=REFUSED`.
fn connect_error_as_refused(line: &str) -> String {
    let Some(start) = line.find("err=") else {
        return line.to_string();
    };
    let rest = &line[start + 4..];
    let end = rest.find(" live=").unwrap_or(rest.len());
    let error = &rest[..end];
    if error.contains("Connect call failed") || error.contains("Connection refused") {
        format!("{}err=REFUSED{}", &line[..start], &rest[end..])
    } else {
        line.to_string()
    }
}

#[test]
fn http_conn_refused_hook_order() {
    let (got, want) = conn_refused_events();
    let hooks = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .map(|l| l.split(':').next().unwrap_or_default().to_string())
            .collect()
    };
    assert_same(&hooks(&got), &hooks(&want));
    // The error reached the scripts in both the connection and the flow hook.
    assert!(
        got.iter()
            .any(|l| l.starts_with("server_connect_error:") && l.ends_with("err=REFUSED"))
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("error:") && l.contains("err=REFUSED"))
    );
}

#[test]
fn http_conn_refused() {
    let (got, want) = conn_refused_events();
    assert_same(&got, &want);
}

#[test]
fn reply_and_kill() {
    // Neither request reaches a server: the script answers one and kills the other.
    let port = free_port().to_string();
    let replace = [("18081", port.as_str())];
    let reply = fixture("reply.py");
    let got = record(&["-s", &reply], &replace, |proxy, _, log| {
        let proxy = format!("http://{proxy}");
        let out = curl(&["-x", &proxy, &format!("http://127.0.0.1:{port}/reply")]).ok();
        assert_eq!(out.stdout, "teapot");
        log.wait_for("client_disconnected");
        let out = curl(&["-x", &proxy, &format!("http://127.0.0.1:{port}/kill")]);
        assert_eq!(out.code, 52, "curl gets an empty reply: {out:?}");
        poll_lines(log, 2);
    });
    assert_same(&got, &expected("reply-and-kill.events.txt", &replace));
}

/// Waits until `n` client_disconnected lines were logged.
fn poll_lines(log: &EventLog, n: usize) {
    support::scripts::poll("client_disconnected lines", || {
        (log.lines()
            .iter()
            .filter(|l| l.starts_with("client_disconnected"))
            .count()
            >= n)
            .then_some(())
    });
}

#[test]
fn websocket() {
    // As the recording's client did: a text and a binary message, each echoed, then close.
    let origin = WsOrigin::start();
    let port = origin.port().to_string();
    let replace = [("18083", port.as_str())];
    let got = record(&[], &replace, |proxy, _, log| {
        let mut client = WsClient::connect(proxy, origin.port(), "/chat");
        client.send_text("hello websocket");
        assert_eq!(client.text(), "echo: hello websocket");
        client.send(BINARY, b"\x00\x01binary");
        assert_eq!(client.frame().payload, b"echo: \x00\x01binary");
        client.close("bye");
        drop(client);
        log.wait_for("client_disconnected");
        log.wait_for("server_disconnected");
    });
    assert_same_per_subject(&got, &expected("websocket.events.txt", &replace));
}

#[test]
fn tcp_raw() {
    // As the recording: two lines each echoed, then the client closes. (The recording used
    // `--tcp-hosts`; without it the proxy finds the bytes are neither TLS nor HTTP, with the
    // same hooks. Waiting for `http_connected` before sending keeps that observed hook of the
    // CONNECT flow ahead of the TCP flow's `tcp_start` in the worker.)
    let origin = tcp_echo_origin();
    let port = origin.port().to_string();
    let replace = [("18084", port.as_str())];
    let got = record(&[], &replace, |proxy, _, log| {
        let mut stream = tunnel(proxy, origin.addr);
        log.wait_for("http_connected");
        exchange(&mut stream, b"hello tcp\n", b"ECHO hello tcp\n");
        exchange(&mut stream, b"second line\n", b"ECHO second line\n");
        stream
            .shutdown(std::net::Shutdown::Write)
            .expect("half-close");
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut stream, &mut rest).expect("read to the end");
        log.wait_for("client_disconnected");
        log.wait_for("server_disconnected");
    });
    assert_same_per_subject(&got, &expected("tcp-raw.events.txt", &replace));
}

/// The worker runs observed hooks of different subjects (the flow, the server connection,
/// the client connection) concurrently, so when the proxy sends `websocket_end` / `tcp_end`,
/// `server_disconnected` and `client_disconnected` back to back (proxy-core's own hook-order
/// test checks that it does, in this order) their lines may come in any order. Everything
/// else must be exactly as recorded; each disconnect line once, after the flow's hooks began.
fn assert_same_per_subject(got: &[String], want: &[String]) {
    let is_disconnect =
        |l: &String| l.starts_with("server_disconnected:") || l.starts_with("client_disconnected:");
    let flow_lines = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| !is_disconnect(l))
            .cloned()
            .collect()
    };
    assert_same(&flow_lines(got), &flow_lines(want));
    let mut got_disconnects: Vec<&String> = got.iter().filter(|l| is_disconnect(l)).collect();
    let mut want_disconnects: Vec<&String> = want.iter().filter(|l| is_disconnect(l)).collect();
    got_disconnects.sort();
    want_disconnects.sort();
    assert_eq!(got_disconnects, want_disconnects);
    let first_disconnect = got.iter().position(is_disconnect).expect("disconnects");
    let last_message = got
        .iter()
        .rposition(|l| l.starts_with("websocket_message:") || l.starts_with("tcp_message:"))
        .expect("messages");
    assert!(first_disconnect > last_message, "{got:?}");
}
