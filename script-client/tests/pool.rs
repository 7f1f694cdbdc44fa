//! The script client against real `script-host` worker processes (the binary built next to
//! this test): a pool with one worker up, one address that refuses (waiting to retry) and one
//! that accepts but never answers (being reached). Calls go to the worker that is up, a client
//! connection sticks to one worker, the counters move, and shutdown ends with members in every
//! state.

#![allow(missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use flowtap_proto::v1::{Connection, Flow, Hook, Request};
use flowtap_proxy_core::hooks::{Hooks, Verdict};
use flowtap_script_client::{Config, Outcome, ScriptClient};

const TAGGER: &str = "import os\n\
def request(flow):\n    flow.request.headers['x-worker-pid'] = str(os.getpid())\n";

/// The `script-host` binary next to this test's directory (`cargo build --workspace --bins`).
fn script_host() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let binary = dir.join("script-host");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        binary.display()
    );
    binary
}

/// A worker process on 127.0.0.1:0 and the address it announced.
struct Worker {
    child: Child,
    addr: SocketAddr,
}

impl Worker {
    fn start(script: &std::path::Path) -> Worker {
        let mut child = Command::new(script_host())
            .args(["-s", script.to_str().expect("utf-8 path")])
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start script-host");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the announcement");
        let addr = line
            .trim()
            .strip_prefix("script-host listening on ")
            .unwrap_or_else(|| panic!("unexpected announcement {line:?}"))
            .parse()
            .expect("an address");
        Worker { child, addr }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn flow(client: &str, path: &str) -> Flow {
    Flow {
        id: format!("{client}-{path}"),
        r#type: "http".into(),
        live: true,
        client_conn: Some(Connection {
            id: client.into(),
            ..Connection::default()
        }),
        request: Some(Request {
            http_version: Bytes::from_static(b"HTTP/1.1"),
            host: "example.com".into(),
            port: 80,
            method: Bytes::from_static(b"GET"),
            scheme: Bytes::from_static(b"http"),
            path: Bytes::copy_from_slice(path.as_bytes()),
            content: Some(Bytes::new()),
            ..Request::default()
        }),
        ..Flow::default()
    }
}

fn worker_pid(flow: &Flow) -> Option<String> {
    flow.request
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(b"x-worker-pid"))
        .map(|h| String::from_utf8_lossy(&h.value).into_owned())
}

#[tokio::test]
async fn calls_reach_the_worker_that_is_up_and_shutdown_ends_members_in_every_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("tagger.py");
    std::fs::write(&script, TAGGER).expect("write the script");
    let worker = Worker::start(&script);
    // Accepts connections and never answers: a member stays "being reached".
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    // Refuses: a member waits to retry.
    let refused = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let config = Config {
        addresses: vec![
            worker.addr.to_string(),
            silent.local_addr().expect("addr").to_string(),
            refused.to_string(),
        ],
        startup_timeout: Duration::from_secs(1),
        ..Config::default()
    };
    let (client, scripts) = ScriptClient::start(config).await.expect("start");
    assert_eq!(
        scripts.len(),
        1,
        "the worker that is up reported its script"
    );
    assert_eq!(client.stats().sessions_up, 1);

    for i in 0..5 {
        let mut flow = flow("conn-1", &format!("/{i}"));
        assert_eq!(
            client.call(Hook::Request, &mut flow).await,
            Verdict::Continue
        );
        assert_eq!(
            worker_pid(&flow),
            Some(worker.child.id().to_string()),
            "the script ran on the worker that is up"
        );
    }
    client.client_closed("conn-1");
    let stats = client.stats();
    let request_ok = stats
        .hook_calls
        .iter()
        .find(|c| c.hook == Hook::Request && c.outcome == Outcome::Ok)
        .expect("request calls counted");
    assert_eq!(request_ok.calls, 5);
    assert!(request_ok.total_latency > Duration::ZERO);
    assert_eq!((stats.failed_open, stats.failed_closed), (0, 0));

    let started = Instant::now();
    client.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "shutdown took {:?}",
        started.elapsed()
    );
    assert_eq!(client.stats().sessions_up, 0);
}

#[tokio::test]
async fn with_no_worker_up_calls_fail_open_and_are_counted_per_flow() {
    let refused = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let config = Config {
        addresses: vec![refused.to_string()],
        ..Config::default()
    };
    let (client, scripts) = ScriptClient::start(config).await.expect("starts anyway");
    assert!(scripts.is_empty());
    // The HTTP hooks are wanted until a worker says what its scripts implement.
    for hook in [
        Hook::Requestheaders,
        Hook::Request,
        Hook::Responseheaders,
        Hook::Response,
    ] {
        assert!(client.interest().of(hook).awaited, "{hook:?}");
    }
    for i in 0..3 {
        let mut flow = flow("conn-2", &format!("/{i}"));
        for hook in [Hook::Requestheaders, Hook::Request] {
            assert_eq!(client.call(hook, &mut flow).await, Verdict::Continue);
        }
        assert!(flow.response.is_none());
    }
    let stats = client.stats();
    assert_eq!(stats.failed_open, 6, "{stats:?}");
    assert_eq!(stats.failed_open_flows, 3, "{stats:?}");
    assert!(
        stats
            .hook_calls
            .iter()
            .any(|c| c.hook == Hook::Request && c.outcome == Outcome::Unreachable && c.calls == 3)
    );
    client.shutdown().await;
}
