//! Replay through the real `flowtap` binary: server replay from a file (`-S`) and from the
//! archive (`--server-replay-store FILTER`) answer without contacting the server; client replay
//! from the archive (`flowtap replay --client FILTER`) really sends the request again.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Flowtap, binary, curl};

/// An origin that answers `origin says N` (N counts the requests it got) and closes.
fn counting_origin() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
    let addr = listener.local_addr().expect("origin address");
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            std::thread::spawn(move || answer(&mut stream, n));
        }
    });
    (addr, count)
}

fn answer(stream: &mut TcpStream, n: usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    let body = format!("origin says {n}");
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn get(proxy: SocketAddr, url: &str) -> (String, String) {
    let out = curl(&[
        "-s",
        "-x",
        &format!("http://{proxy}"),
        "-w",
        "\n%{http_code}",
        url,
    ]);
    let text = out.stdout;
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), code.to_string())
}

#[test]
fn server_and_client_replay() {
    let (origin, count) = counting_origin();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("flows.db");
    let store = store.to_str().expect("utf-8 path");
    let recording = dir.path().join("rec.mitm");
    let recording = recording.to_str().expect("utf-8 path");

    // Record two flows into a file and into the archive.
    let (proxy, addr) = Flowtap::start(&["--store", store, "-w", recording]);
    assert_eq!(get(addr, &format!("http://{origin}/a")).0, "origin says 1");
    assert_eq!(get(addr, &format!("http://{origin}/b")).0, "origin says 2");
    assert!(proxy.stop().0.success());
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Server replay from the file: recorded answers, the origin is not contacted.
    let extra = ["--set", "server_replay_extra=404"];
    let (proxy, addr) = Flowtap::start(&[&["-S", recording][..], &extra].concat());
    assert_eq!(
        get(addr, &format!("http://{origin}/b")),
        ("origin says 2".into(), "200".into())
    );
    assert_eq!(
        get(addr, &format!("http://{origin}/c")).1,
        "404",
        "unmatched: server_replay_extra"
    );
    assert!(proxy.stop().0.success());
    assert_eq!(
        count.load(Ordering::SeqCst),
        2,
        "server replay never reaches the origin"
    );

    // Server replay from the archive, selected by filter (the flows of this run are archived
    // too, as --store says).
    let args = [
        &["--server-replay-store", "~u /a$", "--store", store][..],
        &extra,
    ]
    .concat();
    let (proxy, addr) = Flowtap::start(&args);
    assert_eq!(get(addr, &format!("http://{origin}/a")).0, "origin says 1");
    assert_eq!(
        get(addr, &format!("http://{origin}/b")).1,
        "404",
        "/b is not selected"
    );
    assert!(proxy.stop().0.success());
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // Client replay from the archive: the request goes out again and is stored back.
    let out = Command::new(binary())
        .args(["replay", "--client", "~u /b$ & ~c 200", "--store", store])
        .output()
        .expect("run flowtap replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("[replay]: GET"));
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "client replay sends the request again"
    );
    let listed = Command::new(binary())
        .args(["flows", "--store", store, "list", "~replayq"])
        .output()
        .expect("run flowtap flows list");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(
        listed.lines().count(),
        1,
        "the replayed flow is stored: {listed}"
    );
    assert!(listed.contains("/b"));
}
