//! Chunked bodies: a chunked response with trailers reaches the client with its trailers, and
//! a chunked request upload reaches the server chunked and whole.

#![allow(missing_docs)]

mod support;

use flowtap_proxy_core::Config;
use support::curl::curl_with_stdin;
use support::{RawOrigin, TestProxy, curl};

const CHUNKED_WITH_TRAILERS: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn chunked_response_keeps_its_trailers() {
    let origin = RawOrigin::start(CHUNKED_WITH_TRAILERS).await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/trailers", origin.port());

    // --raw: curl prints the body as it came over the wire, chunk framing and trailers included.
    let raw = curl(&["-x", &proxy.url(), "--raw", &url]).await.ok();
    let wire = raw.text();
    assert!(
        wire.ends_with("0\r\nX-Checksum: abc123\r\n\r\n"),
        "no trailers on the wire: {wire:?}"
    );

    // Decoded: the body is whole and curl reports the trailer among the headers it received.
    let headers = tempfile::NamedTempFile::new().expect("temp file");
    let path = headers.path().to_str().expect("utf-8 path");
    let decoded = curl(&["-x", &proxy.url(), "-D", path, &url]).await.ok();
    assert_eq!(decoded.text(), "hello world");
    let dumped = std::fs::read_to_string(path).expect("read the header dump");
    assert!(
        dumped.contains("Transfer-Encoding: chunked\r\n"),
        "{dumped}"
    );
    assert!(dumped.contains("X-Checksum: abc123"), "{dumped}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chunked_request_upload_reaches_the_server() {
    let origin = RawOrigin::start(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n").await;
    let proxy = TestProxy::start(Config::default()).await;
    let url = format!("http://127.0.0.1:{}/upload", origin.port());
    let body: Vec<u8> = (0..200_000u32).map(|i| b'a' + (i % 26) as u8).collect();

    // Uploading from stdin with no length makes curl send the body chunked.
    let args = ["-x", &proxy.url(), "-T", "-", "-w", "%{http_code}", &url];
    let out = curl_with_stdin(&args, Some(body.clone())).await.ok();
    assert_eq!(out.text(), "201");

    let requests = origin.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    let head_end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("put /upload http/1.1\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
    assert_eq!(dechunk(&request[head_end..]), body);
}

/// Decodes a chunked body (no trailers expected).
fn dechunk(mut wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = wire
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&wire[..line_end]).expect("ascii size");
        let size = usize::from_str_radix(size_text.split(';').next().expect("size").trim(), 16)
            .expect("hex");
        wire = &wire[line_end + 2..];
        if size == 0 {
            assert_eq!(wire, b"\r\n", "the body ends after the last chunk");
            return out;
        }
        out.extend_from_slice(&wire[..size]);
        assert_eq!(&wire[size..size + 2], b"\r\n");
        wire = &wire[size + 2..];
    }
}
