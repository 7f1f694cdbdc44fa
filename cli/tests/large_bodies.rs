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
