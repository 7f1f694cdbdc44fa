//! Bodies held whole that pass `flowtap_flow::spill::SPILL_BYTES` are held in a spill file in
//! `spill_dir`, not the heap, and reach the hooks, the server and the client intact: a 20 MiB
//! upload through real curl to a real origin that echoes it, over HTTP/1.1 and HTTP/2 (TLS
//! both ways), with hooks that want both bodies.

#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex};

use flowtap_flow::spill;
use flowtap_proto::v1::Flow;
use flowtap_proxy_core::hooks::{Hook, HookInterest, Interest};
use flowtap_proxy_core::{Config, Hooks, Verdict};
use futures_util::future::BoxFuture;
use support::proxy::TestProxy;
use support::{HyperOrigin, curl};

const SIZE: usize = 20 << 20;

/// Records, for each `request` and `response` hook, the body's length and whether it was held
/// on disk.
struct Recorder {
    interest: Interest,
    seen: Mutex<Vec<(Hook, usize, bool)>>,
}

impl Hooks for Recorder {
    fn interest(&self) -> &Interest {
        &self.interest
    }

    fn call<'a>(&'a self, hook: Hook, flow: &'a mut Flow) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let content = match hook {
                Hook::Request => flow.request.as_ref().and_then(|r| r.content.clone()),
                Hook::Response => flow.response.as_ref().and_then(|r| r.content.clone()),
                _ => None,
            };
            if let Some(content) = content {
                let spilled = spill::is_spilled(&content);
                self.seen
                    .lock()
                    .expect("lock")
                    .push((hook, content.len(), spilled));
            }
            Verdict::Continue
        })
    }
}

async fn upload_through(http_version: &str) {
    let origin = HyperOrigin::tls(&[b"h2", b"http/1.1"]).await;
    let mut interest = Interest::none();
    for hook in [Hook::Request, Hook::Response] {
        interest.add(
            hook,
            HookInterest {
                wanted: true,
                needs_body: true,
                awaited: true,
            },
        );
    }
    let recorder = Arc::new(Recorder {
        interest,
        seen: Mutex::new(Vec::new()),
    });
    let spill_dir = tempfile::tempdir().expect("spill dir");
    let config = Config {
        upstream_trusted_ca: vec![origin.cert.as_ref().expect("tls").ca_path().to_path_buf()],
        spill_dir: Some(spill_dir.path().to_path_buf()),
        ..Config::default()
    };
    let proxy = TestProxy::start_with(config, recorder.clone(), false).await;

    let body: Vec<u8> = (0..SIZE).map(|i| (i % 253) as u8).collect();
    let file = spill_dir.path().join("upload.bin");
    std::fs::write(&file, &body).expect("write the upload");
    let out = spill_dir.path().join("answer.bin");
    let url = format!("https://localhost:{}/echo", origin.port());
    curl(&[
        "-x",
        &proxy.url(),
        "--cacert",
        proxy.ca_cert_path().to_str().expect("path"),
        http_version,
        "--data-binary",
        &format!("@{}", file.display()),
        "-o",
        out.to_str().expect("path"),
        &url,
    ])
    .await
    .ok();
    std::fs::remove_file(&file).expect("remove the upload");

    // The origin answers "origin: POST /echo" and the body it got.
    let answer = std::fs::read(&out).expect("the answer");
    let prefix = b"origin: POST /echo";
    assert_eq!(&answer[..prefix.len()], prefix);
    assert!(
        answer[prefix.len()..] == body[..],
        "the body came back intact"
    );
    let seen = recorder.seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![
            (Hook::Request, SIZE, true),
            (Hook::Response, SIZE + prefix.len(), true)
        ],
        "both bodies were held on disk"
    );
    std::fs::remove_file(&out).expect("remove the answer");
    let left: Vec<_> = std::fs::read_dir(spill_dir.path())
        .expect("read the spill dir")
        .collect();
    assert!(left.is_empty(), "spill files have no name: {left:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_held_on_disk_over_http1() {
    upload_through("--http1.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_are_held_on_disk_over_http2() {
    upload_through("--http2").await;
}
