//! mitmproxy's `message.stream` through the real binary: `flow.response.stream = True` relays a
//! body as it arrives (the client has its first part before the origin sent the rest), a
//! callable rewrites each chunk and is called once more with `b""` at the end, and a request
//! body streams through a callable to the origin.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::Flowtap;
use support::origin::{Origin, read_head};
use support::scripts::{TempScript, curl_via, status_of};

/// Streams responses; `response` logs what the flow kept of the body.
const PASS: &str = r#"
import logging

def responseheaders(flow):
    flow.response.stream = True

def response(flow):
    logging.info("streamed response kept content=%r", flow.response.content)
"#;

/// Replaces foo with bar in every chunk and ends the body with a marker from the final call.
const MODIFY: &str = r#"
def modify(chunk):
    if chunk == b"":
        return b"<end>"
    return chunk.replace(b"foo", b"bar")

def responseheaders(flow):
    flow.response.stream = modify
"#;

/// Upper-cases a request body as it streams; yields pieces to show iterables are accepted.
const REQUEST: &str = r#"
def upper(chunk):
    yield chunk.upper()

def requestheaders(flow):
    flow.request.stream = upper
"#;

/// An origin that sends `first`, waits (at most 10 s) until `go` is set, then sends `second`,
/// as a chunked body.
fn two_part_origin(first: &'static str, second: &'static str, go: Arc<AtomicBool>) -> Origin {
    Origin::start(move |mut stream| {
        if read_head(&mut stream).is_none() {
            return;
        }
        let head =
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
        let part = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
        if stream
            .write_all(format!("{head}{}", part(first)).as_bytes())
            .is_err()
        {
            return;
        }
        let _ = stream.flush();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !go.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = stream.write_all(format!("{}0\r\n\r\n", part(second)).as_bytes());
    })
}

/// An origin that answers with the request's body, read whole as chunked coding or by length.
fn body_echo_origin() -> Origin {
    Origin::start(|mut stream| {
        let Some((head, mut body)) = read_head(&mut stream) else {
            return;
        };
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let mut buf = [0u8; 4096];
        while !(if chunked {
            body.ends_with(b"0\r\n\r\n")
        } else {
            body.len() >= support::origin::content_length(&head)
        }) {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&buf[..n]),
            }
        }
        let body = if chunked { dechunk(&body) } else { body };
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        reply.extend_from_slice(&body);
        let _ = stream.write_all(&reply);
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 2 + size + 2..];
    }
}

/// Sends a GET through the proxy on a raw socket; returns the socket to read from.
fn get_via(proxy: std::net::SocketAddr, origin: &Origin) -> TcpStream {
    let mut client = TcpStream::connect(proxy).expect("connect to the proxy");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let request = format!(
        "GET http://127.0.0.1:{port}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n",
        port = origin.port()
    );
    client.write_all(request.as_bytes()).expect("send");
    client
}

/// Reads until `needle` has arrived; panics if the connection ends or stalls first.
fn read_until(client: &mut TcpStream, received: &mut Vec<u8>, needle: &str) {
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(received).contains(needle) {
        match client.read(&mut buf) {
            Ok(0) => panic!(
                "the connection ended before {needle:?}: {}",
                String::from_utf8_lossy(received)
            ),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no {needle:?} ({e}): {}", String::from_utf8_lossy(received)),
        }
    }
}

fn read_to_end(client: &mut TcpStream, received: &mut Vec<u8>) -> String {
    let _ = client.read_to_end(received);
    String::from_utf8_lossy(received).into_owned()
}

#[test]
fn a_streamed_response_reaches_the_client_before_the_origin_finished() {
    let script = TempScript::new("stream_pass.py", PASS);
    let go = Arc::new(AtomicBool::new(false));
    let origin = two_part_origin("first-part", "second-part", go.clone());
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);

    let mut client = get_via(proxy, &origin);
    let mut received = Vec::new();
    // With a buffered body this would wait for the origin, which waits for us.
    read_until(&mut client, &mut received, "first-part");
    go.store(true, Ordering::SeqCst);
    let all = read_to_end(&mut client, &mut received);
    assert!(all.contains("second-part"), "the whole body: {all}");
    // The script's log line, on stdout as mitmdump prints it.
    flowtap
        .stdout
        .wait_for("the response hook after streaming", |l| {
            l.contains("streamed response kept content=None")
        });
}

#[test]
fn a_stream_callable_rewrites_each_chunk_and_flushes_at_the_end() {
    let script = TempScript::new("stream_modify.py", MODIFY);
    let go = Arc::new(AtomicBool::new(false));
    let origin = two_part_origin("foo one foo", "two foo", go.clone());
    let (_flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);

    let mut client = get_via(proxy, &origin);
    let mut received = Vec::new();
    read_until(&mut client, &mut received, "bar one bar");
    go.store(true, Ordering::SeqCst);
    let all = read_to_end(&mut client, &mut received);
    let (head, body) = all.split_once("\r\n\r\n").expect("a response head");
    assert!(!body.contains("foo"), "every foo was replaced: {all}");
    // The client asked to close: the rewritten body (its length unknown when the head left)
    // ends with the connection instead of the origin's chunked coding or a length.
    let head = head.to_ascii_lowercase();
    assert!(
        !head.contains("content-length") && !head.contains("transfer-encoding"),
        "{head}"
    );
    assert_eq!(body, "bar one bartwo bar<end>");
}

#[test]
fn a_request_body_streams_through_a_callable_to_the_origin() {
    let script = TempScript::new("stream_request.py", REQUEST);
    let origin = body_echo_origin();
    let (_flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);

    let url = format!("http://127.0.0.1:{}/upload", origin.port());
    let out = curl_via(proxy, &url, &["--data-binary", "hello streamed body"]);
    assert_eq!(status_of(&out), 200, "{}", out.stdout);
    assert!(
        out.stdout.ends_with("HELLO STREAMED BODY"),
        "the origin got the upper-cased body: {}",
        out.stdout
    );
}

#[test]
fn a_rewritten_body_is_sent_chunked_on_a_kept_alive_connection() {
    let script = TempScript::new("stream_modify.py", MODIFY);
    let origin = two_part_origin("foo one foo", "two foo", Arc::new(AtomicBool::new(true)));
    let (_flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);

    let url = format!("http://127.0.0.1:{}/", origin.port());
    let out = curl_via(proxy, &url, &[]);
    assert_eq!(status_of(&out), 200, "{}", out.stdout);
    let (head, body) = out.stdout.split_once("\r\n\r\n").expect("a response head");
    assert!(
        head.to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(body, "bar one bartwo bar<end>");
}

/// Logs what mitmdump's scripts see: the `stream` preset of `stream_large_bodies` in the
/// `*headers` hooks, and (with only a `response` hook reading it) the request's content.
const PRESET: &str = r#"
import logging

def requestheaders(flow):
    logging.info("requestheaders %s stream=%r", flow.request.path, flow.request.stream)

def responseheaders(flow):
    logging.info("responseheaders %s stream=%r", flow.request.path, flow.response.stream)
"#;

const RESPONSE_ONLY: &str = r#"
import logging

def response(flow):
    logging.info("response sees request content=%r", flow.request.content)
"#;

#[test]
fn scripts_see_the_stream_large_bodies_preset_as_on_mitmdump() {
    let script = TempScript::new("preset.py", PRESET);
    let origin = support::scripts::echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg(), "--set", "stream_large_bodies=1k"]);
    let large = "x".repeat(2000);
    for (path, body) in [("/large", large.as_str()), ("/small", "tiny")] {
        let url = format!("http://127.0.0.1:{}{path}", origin.port());
        let out = curl_via(proxy, &url, &["--data-binary", body]).ok();
        assert_eq!(status_of(&out), 200, "{out:?}");
    }
    for line in [
        "requestheaders /large stream=True",
        "responseheaders /large stream=True",
        "requestheaders /small stream=False",
        "responseheaders /small stream=False",
    ] {
        flowtap.stdout.wait_for(line, |l| l.contains(line));
    }
}

#[test]
fn a_response_hook_sees_the_request_body() {
    let script = TempScript::new("response_only.py", RESPONSE_ONLY);
    let origin = support::scripts::echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let url = format!("http://127.0.0.1:{}/form", origin.port());
    let out = curl_via(proxy, &url, &["-d", "a=1"]).ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    flowtap
        .stdout
        .wait_for("the request content in response", |l| {
            l.contains("response sees request content=b'a=1'")
        });
}
