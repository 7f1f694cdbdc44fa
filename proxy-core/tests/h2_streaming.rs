//! `message.stream` over HTTP/2: a request and a response streamed through a stream callable
//! (here a `Hooks` that plays the script: it sets `stream` in the `*headers` hooks and
//! upper-cases each chunk), with real curl and a real HTTP/2 origin. The end-to-end tests with
//! real Python scripts are in cli/tests/scripts_streaming.rs.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use flowtap_certs::CertificateAuthority;
use flowtap_proto::v1::{Flow, StreamMode};
use flowtap_proxy_core::hooks::{Hook, HookInterest, Interest};
use flowtap_proxy_core::{Config, Hooks, Proxy, Verdict};
use futures_util::future::BoxFuture;
use support::proxy::RecordingSink;
use support::{HyperOrigin, curl};

const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Streams both messages through "a callable" that upper-cases chunks and ends each body with
/// `<END>`; records the content the `response` hook saw.
struct Streamer {
    interest: Interest,
    response_content: Mutex<Vec<Option<Bytes>>>,
}

impl Hooks for Streamer {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let callback = StreamMode::Callback.into();
            match hook {
                Hook::Requestheaders => {
                    flow.request.as_mut().expect("a request").stream = callback;
                }
                Hook::Responseheaders => {
                    flow.response.as_mut().expect("a response").stream = callback;
                }
                Hook::StreamChunk => {
                    let message = match (flow.request.as_mut(), flow.response.as_mut()) {
                        (_, Some(response)) => &mut response.content,
                        (Some(request), None) => &mut request.content,
                        (None, None) => panic!("a chunk call without a message"),
                    };
                    let chunk = message.take().unwrap_or_default();
                    *message = Some(if chunk.is_empty() {
                        Bytes::from_static(b"<END>")
                    } else {
                        Bytes::from(chunk.to_ascii_uppercase())
                    });
                }
                Hook::Response => {
                    let content = flow.response.as_ref().and_then(|r| r.content.clone());
                    self.response_content.lock().expect("lock").push(content);
                }
                _ => {}
            }
            Verdict::Continue
        })
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_bodies_stream_through_the_callable() {
    let origin = HyperOrigin::tls(H2_AND_H1).await;
    let mut interest = Interest::none();
    for hook in [Hook::Requestheaders, Hook::Responseheaders, Hook::Response] {
        interest.add(
            hook,
            HookInterest {
                wanted: true,
                needs_body: true,
                awaited: true,
            },
        );
    }
    let streamer = Arc::new(Streamer {
        interest,
        response_content: Mutex::new(Vec::new()),
    });
    let confdir = tempfile::tempdir().expect("confdir");
    let ca = Arc::new(CertificateAuthority::load_or_create(confdir.path()).expect("create the CA"));
    let config = Config {
        listeners: vec![flowtap_proxy_core::Listener::regular(SocketAddr::from((
            [127, 0, 0, 1],
            0,
        )))],
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        ..Config::default()
    };
    let sink = Arc::new(RecordingSink::default());
    let proxy = Proxy::bind(config, ca, streamer.clone(), sink.clone())
        .await
        .expect("bind");
    let addr = proxy.local_addr();
    tokio::spawn(proxy.serve(std::future::pending()));

    let cacert = confdir.path().join("flowtap-ca-cert.pem");
    let url = format!("https://localhost:{}/h2", origin.port());
    let out = curl(&[
        "-x",
        &format!("http://{addr}"),
        "--cacert",
        cacert.to_str().expect("path"),
        "--http2",
        "-w",
        "\nversion=%{http_version}",
        "--data-binary",
        "ping",
        &url,
    ])
    .await
    .ok();

    let text = out.text();
    // The origin answers "origin: METHOD PATH BODY": it got the body upper-cased with the
    // request's end marker, and the client got that answer upper-cased with the response's.
    assert_eq!(text, "ORIGIN: POST /H2PING<END><END>\nversion=2");
    let seen = origin.seen();
    assert_eq!(seen[0].version, "HTTP/2.0");
    assert_eq!(seen[0].body, "PING<END>");
    let flows = sink.wait_flows(1).await;
    assert!(
        flows[0]
            .response
            .as_ref()
            .is_some_and(|r| r.content.is_none()),
        "a streamed body is not kept"
    );
    assert_eq!(
        *streamer.response_content.lock().expect("lock"),
        vec![None],
        "`response` fired after the streamed body, without content"
    );
}
