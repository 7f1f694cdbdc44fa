//! 100 MiB bodies pass through the `flowtap` process, downloaded and uploaded, while its peak
//! resident memory stays under 100 MiB: bodies nobody needs whole are streamed.

#![allow(missing_docs)]

mod support;

use std::io::{Read, Write};

use support::origin::{Origin, content_length, read_head};
use support::{Flowtap, curl};

const SIZE: usize = 100 << 20;
const RSS_LIMIT: u64 = 100 << 20;

#[test]
fn a_100_mib_body_streams_through_both_ways_in_bounded_memory() {
    let origin = Origin::start(|mut stream| {
        while let Some((head, rest)) = read_head(&mut stream) {
            let response = if head.starts_with("GET ") {
                // A download: 100 MiB of a repeating pattern.
                let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n");
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for _ in 0..SIZE / chunk.len() {
                    if stream.write_all(&chunk).is_err() {
                        return;
                    }
                }
                continue;
            } else {
                // An upload: count what arrives.
                let mut left = content_length(&head) - rest.len();
                let mut received = rest.len();
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let n = stream.read(&mut buf[..left.min(64 * 1024)]).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    received += n;
                    left -= n;
                }
                let body = received.to_string();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            };
            if stream.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    });
    let (flowtap, addr) = Flowtap::start(&[]);
    let proxy = format!("http://{addr}");

    let url = format!("http://127.0.0.1:{}/download", origin.port());
    let out = curl(&[
        "-x",
        &proxy,
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ])
    .ok();
    assert_eq!(out.stdout, SIZE.to_string());
    flowtap.stdout.wait_for("for the download", |l| {
        l.contains("/download HTTP/1.1 << 200 OK 100m")
    });
    let after_download = flowtap.peak_rss_bytes();
    assert!(
        after_download < RSS_LIMIT,
        "peak RSS {} MiB after the download",
        after_download >> 20
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("upload.bin");
    let mut writer = std::fs::File::create(&file).expect("create the upload file");
    let block = vec![7u8; 1 << 20];
    for _ in 0..SIZE >> 20 {
        writer.write_all(&block).expect("write the upload file");
    }
    drop(writer);
    let url = format!("http://127.0.0.1:{}/upload", origin.port());
    let out = curl(&["-x", &proxy, "-T", file.to_str().expect("path"), &url]).ok();
    assert_eq!(
        out.stdout,
        SIZE.to_string(),
        "the origin received every byte"
    );
    let peak = flowtap.peak_rss_bytes();
    eprintln!(
        "flowtap peak RSS: {} KiB after the download, {} KiB after the upload",
        after_download >> 10,
        peak >> 10
    );
    assert!(
        peak < RSS_LIMIT,
        "peak RSS {} MiB after the upload",
        peak >> 20
    );

    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

/// Answers GET /N with N bytes of a repeating pattern (streamed).
fn pattern_origin() -> Origin {
    Origin::start(|mut stream| {
        while let Some((head, _)) = read_head(&mut stream) {
            let size: usize = head
                .split_whitespace()
                .nth(1)
                .and_then(|path| path.rsplit('/').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
            let mut left = size;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).is_err() {
                    return;
                }
                left -= n;
            }
        }
    })
}

fn pattern_sha256(size: usize) -> String {
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let mut hash = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    let mut stdin = hash.stdin.take().expect("stdin");
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        stdin.write_all(&chunk[..n]).expect("feed sha256sum");
        left -= n;
    }
    drop(stdin);
    let out = hash.wait_with_output().expect("sha256sum output");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A body a script reads is held on disk by the proxy (not in its heap) and reaches the worker
/// in pieces written straight into the script's `bytes`: the script sees every byte, a body it
/// changes reaches the client changed, the proxy's peak stays under the body's size and the
/// worker's under the body plus its own baseline. Before, the proxy held the body and its
/// encoded call (2x) and the worker the decoded call and the `bytes` (2x).
#[test]
fn a_body_a_script_reads_is_held_on_disk_and_sent_in_pieces() {
    use support::scripts::{TempScript, header_value};
    let script = TempScript::new(
        "reads_body.py",
        r#"
import hashlib

def response(flow):
    content = flow.response.content
    flow.response.headers["x-sha256"] = hashlib.sha256(content).hexdigest()
    if flow.request.path.startswith("/changed/"):
        flow.response.content = content[:10] + b"changed"
"#,
    );
    let origin = pattern_origin();
    let (flowtap, addr) = Flowtap::start(&["-s", script.arg()]);
    let worker = flowtap.workers(1)[0];
    let proxy = format!("http://{addr}");
    let url = format!("http://127.0.0.1:{}/whole/{SIZE}", origin.port());
    let out = curl(&[
        "-x",
        &proxy,
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ])
    .ok();
    assert!(out.stdout.ends_with(&SIZE.to_string()), "{}", out.stdout);
    assert_eq!(
        header_value(&out.stdout, "x-sha256").as_deref(),
        Some(pattern_sha256(SIZE).as_str()),
        "the script saw the whole body"
    );
    let url = format!("http://127.0.0.1:{}/changed/{}", origin.port(), 20 << 20);
    let out = curl(&["-x", &proxy, &url]).ok();
    let expected: Vec<u8> = (0..10u8).chain(*b"changed").collect();
    assert_eq!(out.stdout.as_bytes(), &expected[..]);

    let proxy_peak = flowtap.peak_rss_bytes();
    let worker_peak = support::peak_rss_of(worker);
    eprintln!(
        "peak RSS: flowtap {} MiB, worker {} MiB",
        proxy_peak >> 20,
        worker_peak >> 20
    );
    assert!(
        proxy_peak < RSS_LIMIT,
        "flowtap peak {} MiB",
        proxy_peak >> 20
    );
    assert!(
        worker_peak < (SIZE as u64) + (80 << 20),
        "worker peak {} MiB",
        worker_peak >> 20
    );
    // The spill files had no name: nothing is left in the confdir.
    let left: Vec<_> = std::fs::read_dir(flowtap.confdir())
        .expect("read the confdir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("spill"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");
}

/// With `--store` every body is held whole for the archive: on disk, and written to the store
/// in chunks whose pages are released, so the proxy's peak stays under the body's size (before:
/// the body in the heap, 1.1x), and the stored flow reads back whole.
#[test]
fn a_body_held_for_the_store_is_held_on_disk() {
    let origin = pattern_origin();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("flows.db");
    let store = store.to_str().expect("path");
    let (flowtap, addr) = Flowtap::start(&["--store", store]);
    let url = format!("http://127.0.0.1:{}/stored/{SIZE}", origin.port());
    let out = curl(&[
        "-x",
        &format!("http://{addr}"),
        "-o",
        "/dev/null",
        "-w",
        "%{size_download}",
        &url,
    ])
    .ok();
    assert_eq!(out.stdout, SIZE.to_string());
    let peak = flowtap.peak_rss_bytes();
    eprintln!("flowtap peak RSS with --store: {} MiB", peak >> 20);
    assert!(peak < RSS_LIMIT, "peak {} MiB", peak >> 20);
    let (status, _) = flowtap.stop();
    assert!(status.success(), "{status}");

    let exported = dir.path().join("out.mitm");
    let out = std::process::Command::new(support::binary())
        .args(["flows", "--store", store, "export", "-o"])
        .arg(&exported)
        .arg("~u /stored/")
        .output()
        .expect("run flowtap flows export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::metadata(&exported).expect("the export").len();
    assert!(
        written > SIZE as u64 && written < SIZE as u64 + (64 << 10),
        "the exported flow is {written} bytes"
    );
}
