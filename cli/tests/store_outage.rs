//! The flow archive loses nothing when the store goes away: the real `flow-store` binary is
//! killed with SIGKILL while 1,000 flows go through the real `flowtap` proxy (`--store-addr`),
//! then restarted on the same address and database. Every flow ends up stored, each once, and
//! traffic never failed meanwhile.

#![allow(missing_docs)]

mod support;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Flowtap, WAIT, binary, flow_store_binary};

const FLOWS: usize = 1000;

/// Starts flow-store on `listen` with the database `db`; returns it and its address.
fn start_store(listen: &str, db: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(flow_store_binary())
        .args([
            "--listen",
            listen,
            "--store",
            db.to_str().expect("utf-8 path"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flow-store");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read flow-store's address");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected: {line:?}"));
    (child, addr.parse().expect("an address"))
}

/// A keep-alive origin answering every request with `ok`.
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the origin");
    let addr = listener.local_addr().expect("origin address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_ok(stream));
        }
    });
    addr
}

fn serve_ok(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one request on a keep-alive connection through the proxy and reads the `ok`.
fn request(conn: &mut BufReader<TcpStream>, origin: SocketAddr, n: usize) {
    let line = format!("GET http://{origin}/flow/{n} HTTP/1.1\r\nHost: {origin}\r\n\r\n");
    conn.get_mut()
        .write_all(line.as_bytes())
        .expect("send through the proxy");
    let mut head = String::new();
    loop {
        let mut header = String::new();
        conn.read_line(&mut header).expect("read the response head");
        if header == "\r\n" || header.is_empty() {
            break;
        }
        head.push_str(&header);
    }
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "request {n} failed: {head}"
    );
    let mut body = [0u8; 2];
    conn.read_exact(&mut body).expect("read the body");
    assert_eq!(&body, b"ok");
}

/// The paths of the flows the store holds (via `flowtap flows --store-addr ... list`).
fn stored_paths(store: SocketAddr) -> Vec<String> {
    let out = Command::new(binary())
        .args(["flows", "--store-addr", &format!("http://{store}"), "list"])
        .output()
        .expect("run flowtap flows list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.contains("/flow/"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn flows_survive_a_killed_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("flows.db");
    let (mut store, store_addr) = start_store("127.0.0.1:0", &db);
    let origin = start_origin();
    let endpoint = format!("http://{store_addr}");
    let (proxy, proxy_addr) = Flowtap::start(&["--flow-detail", "0", "--store-addr", &endpoint]);
    let mut conn = BufReader::new(TcpStream::connect(proxy_addr).expect("connect to flowtap"));
    for n in 0..FLOWS {
        if n == 300 {
            store.kill().expect("SIGKILL the store");
            store.wait().expect("reap the store");
        }
        if n == 700 {
            let (restarted, _) = start_store(&store_addr.to_string(), &db);
            store = restarted;
        }
        request(&mut conn, origin, n);
    }
    // The sink retries the store and delivers what it spooled; wait (bounded) for all.
    let deadline = Instant::now() + WAIT;
    let mut paths = stored_paths(store_addr);
    while paths.len() < FLOWS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        paths = stored_paths(store_addr);
    }
    assert_eq!(paths.len(), FLOWS, "every flow is stored exactly once");
    let distinct: HashSet<&String> = paths.iter().collect();
    assert_eq!(distinct.len(), FLOWS, "no flow is stored twice");
    let (status, _) = proxy.stop();
    assert!(status.success());
    let _ = store.kill();
    let _ = store.wait();
}
