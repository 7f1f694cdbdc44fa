//! The built-in addons through the library's `Config` (`Config::builtins`), over HTTP/2 on
//! both sides of an intercepted tunnel: they act on the flow lifecycle whichever protocol
//! drives it. (The command-line tests in `cli/tests/builtins.rs` cover each addon over
//! HTTP/1.)

#![allow(missing_docs)]

mod support;

use flowtap_proxy_core::Config;
use flowtap_proxy_core::builtins::BuiltinOptions;
use support::{HyperOrigin, RawOrigin, TestProxy, curl};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

#[tokio::test(flavor = "multi_thread")]
async fn the_addons_act_on_http2_flows() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("file.txt"), "from disk").expect("write");
    let proxy = TestProxy::start(Config {
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        builtins: BuiltinOptions {
            modify_headers: vec![
                "/~q/X-Added/yes".into(),
                "/~s/X-Origin-Method/changed".into(),
            ],
            modify_body: vec!["/~s/origin/ORIGIN".into()],
            map_local: vec![format!("|/local/|{}", dir.path().display())],
            ..BuiltinOptions::default()
        },
        ..Config::default()
    })
    .await;
    let cacert = proxy.ca_cert_path();
    let args = [
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
        "-D",
        "-",
        "--suppress-connect-headers",
    ];
    let base = format!("https://localhost:{}", origin.port());
    let out = curl(&[&args[..], &[&format!("{base}/echo")]].concat())
        .await
        .ok();
    let text = out.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-origin-method: changed\r\n"), "{text}");
    assert!(text.ends_with("ORIGIN: GET /echo"), "{text}");
    let seen = origin.seen();
    assert_eq!(seen[0].version, "HTTP/2.0");
    assert_eq!(seen[0].header("x-added"), Some("yes"));

    let out = curl(&[&args[..], &[&format!("{base}/local/file.txt")]].concat())
        .await
        .ok();
    let text = out.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("content-type: text/plain\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nfrom disk"), "{text}");
    assert_eq!(
        origin.seen().len(),
        1,
        "map_local answered without the origin"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn map_remote_points_an_http2_request_at_another_server() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let other = HyperOrigin::plain().await;
    let proxy = TestProxy::start(Config {
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        builtins: BuiltinOptions {
            map_remote: vec![format!(
                "|https://localhost:\\d+/moved/|http://127.0.0.1:{}/new/",
                other.port()
            )],
            ..BuiltinOptions::default()
        },
        ..Config::default()
    })
    .await;
    let cacert = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/moved/x", origin.port());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
        "-D",
        "-",
        "--suppress-connect-headers",
        &url,
    ])
    .await
    .ok();
    let text = out.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.ends_with("origin: GET /new/x"), "{text}");
    assert!(
        origin.seen().is_empty(),
        "the original server was not asked"
    );
    assert_eq!(other.seen()[0].path_and_query, "/new/x");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_request_sent_to_an_http1_server_gets_its_chunked_answer() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let other = RawOrigin::start(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-Other: 1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    let proxy = TestProxy::start(Config {
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        builtins: BuiltinOptions {
            map_remote: vec![format!(
                "|https://localhost:\\d+/|http://127.0.0.1:{}/",
                other.port()
            )],
            ..BuiltinOptions::default()
        },
        ..Config::default()
    })
    .await;
    let cacert = proxy.ca_cert_path();
    let url = format!("https://localhost:{}/chunked", origin.port());
    let out = curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
        "-D",
        "-",
        "--suppress-connect-headers",
        "--data-binary",
        "ping",
        &url,
    ])
    .await
    .ok();
    let text = out.text();
    assert!(text.starts_with("HTTP/2 200"), "{text}");
    assert!(text.contains("x-other: 1\r\n"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
    let request = String::from_utf8_lossy(&other.requests()[0]).into_owned();
    assert!(
        request.starts_with("POST /chunked HTTP/1.1\r\n"),
        "{request}"
    );
    assert!(
        request
            .to_ascii_lowercase()
            .contains(&format!("host: 127.0.0.1:{}\r\n", other.port())),
        "{request}"
    );
    assert!(request.ends_with("ping"), "{request}");
    proxy.stop().await;
}
