//! Every script in `examples/` run through the real worker, with the effect it promises.

mod support;

use std::time::{Duration, Instant};

use flowtap_proto::v1::{Hook, Verdict};
use support::{Host, examples_dir, header_value, http_flow, with_response};

async fn host_for(spec: &str) -> Host {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = examples_dir().join(spec);
    Host::start_with(dir, &[path.display().to_string()], "127.0.0.1:0").await
}

#[tokio::test]
async fn add_header() {
    let host = host_for("add_header.py").await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    let reply = session
        .call(Hook::Response, with_response(http_flow("/"), "x"))
        .await;
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(
        header_value(&response.headers, "x-flowtap").as_deref(),
        Some("added")
    );
}

#[tokio::test]
async fn reply_from_proxy() {
    let host = host_for("reply_from_proxy.py").await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session.call(Hook::Request, http_flow("/hello")).await;
    assert_eq!(reply.verdict(), Verdict::Respond);
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(
        response.content.as_deref(),
        Some(&b"Hello from the proxy\n"[..])
    );
    let reply = session.call(Hook::Request, http_flow("/other")).await;
    assert_eq!(reply.verdict(), Verdict::Continue);
}

#[tokio::test]
async fn block_host() {
    let host = host_for("block_host.py").await;
    let mut session = host.session().await;
    session.hello(&[("blocked_hosts", "example.com")]).await;
    let reply = session.call(Hook::Request, http_flow("/")).await;
    assert_eq!(reply.verdict(), Verdict::Respond);
    assert_eq!(
        reply
            .flow
            .expect("flow")
            .response
            .expect("response")
            .status_code,
        403
    );
}

#[tokio::test]
async fn query_param() {
    let host = host_for("query_param.py").await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session
        .call(Hook::Request, http_flow("/search?q=x&lang=de"))
        .await;
    let request = reply.flow.expect("flow").request.expect("request");
    assert_eq!(&request.path[..], b"/search?q=x&lang=en");
}

#[tokio::test]
async fn rewrite_body() {
    let host = host_for("rewrite_body.py").await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let reply = session
        .call(
            Hook::Response,
            with_response(http_flow("/"), "bananas are great"),
        )
        .await;
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(response.content.as_deref(), Some(&b"apples are great"[..]));
}

#[tokio::test]
async fn count_requests() {
    let host = host_for("count_requests.py").await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    for expected in ["1", "2", "3"] {
        let reply = session.call(Hook::Request, http_flow("/")).await;
        let request = reply.flow.expect("flow").request.expect("request");
        assert_eq!(
            header_value(&request.headers, "x-request-count").as_deref(),
            Some(expected)
        );
    }
    assert!(
        session.log_text().contains("We've seen 2 flows"),
        "{}",
        session.log_text()
    );
}

#[tokio::test]
async fn option_configure() {
    let host = host_for("option_configure.py").await;
    let mut session = host.session().await;
    let ready = session.hello(&[("max_body_kb", "0")]).await;
    assert!(
        ready
            .startup_error
            .contains("max_body_kb must be at least 1"),
        "{}",
        ready.startup_error
    );

    let host = host_for("option_configure.py").await;
    let mut session = host.session().await;
    assert_eq!(
        session.hello(&[("max_body_kb", "1")]).await.startup_error,
        ""
    );
    let big = "a".repeat(3000);
    let reply = session
        .call(Hook::Response, with_response(http_flow("/"), &big))
        .await;
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(response.content.expect("content").len(), 1024);
}

async fn twenty_in_parallel(script: &str, header: &str) -> Duration {
    let host = host_for(script).await;
    let mut session = host.session().await;
    session.hello(&[]).await;
    let start = Instant::now();
    for i in 0..20 {
        session
            .send_call(Hook::Request, http_flow(&format!("/{i}")), 0)
            .await;
    }
    for _ in 0..20 {
        let request = session
            .reply()
            .await
            .flow
            .expect("flow")
            .request
            .expect("request");
        assert!(header_value(&request.headers, header).is_some());
    }
    start.elapsed()
}

#[tokio::test]
async fn async_hook() {
    // 20 x 0.2 s serially would be 4 s.
    let elapsed = twenty_in_parallel("async_hook.py", "x-checked").await;
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn concurrent_hook() {
    let elapsed = twenty_in_parallel("concurrent_hook.py", "x-concurrent").await;
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn old_api() {
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = format!(
        "{} bananas apples",
        examples_dir().join("old_api.py").display()
    );
    let host = Host::start_with(dir, &[spec], "127.0.0.1:0").await;
    let mut session = host.session().await;
    assert_eq!(session.hello(&[]).await.startup_error, "");
    let reply = session
        .call(Hook::Response, with_response(http_flow("/"), "bananas!"))
        .await;
    let response = reply.flow.expect("flow").response.expect("response");
    assert_eq!(response.content.as_deref(), Some(&b"apples!"[..]));
    assert_eq!(
        header_value(&response.headers, "newheader").as_deref(),
        Some("foo")
    );
}
