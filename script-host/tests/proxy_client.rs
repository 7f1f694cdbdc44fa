//! The proxy's script client (`flowtap_script_client::ScriptClient`) against real workers: it
//! spawns the real `script-host` binary, merges interest, applies changes, waits out intercepts,
//! applies the failure policy and restarts a crashed worker.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowtap_proto::v1::{Flow, Hook};
use flowtap_proxy_core::hooks::{CoreControl, Hooks, Verdict};
use flowtap_script_client::{Config, FailurePolicy, ScriptClient, ScriptsError};
use support::{header_value, http_flow, write_scripts};

fn config(scripts: &[(&str, &str)]) -> (tempfile::TempDir, Config) {
    let (dir, paths) = write_scripts(scripts);
    let config = Config {
        scripts: paths.iter().map(|p| p.display().to_string()).collect(),
        binary: Some(env!("CARGO_BIN_EXE_script-host").into()),
        ..Config::default()
    };
    (dir, config)
}

#[derive(Default)]
struct RecordingCore {
    calls: Mutex<Vec<String>>,
}

impl CoreControl for RecordingCore {
    fn kill(&self, flow_id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("kill {flow_id}"));
        Ok(())
    }
    fn resume(&self, flow_id: &str) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!("resume {flow_id}"));
        Ok(())
    }
    fn replay_client(&self, flow: Flow) -> Result<(), String> {
        self.calls.lock().unwrap().push(format!(
            "replay {}",
            flow.request
                .map(|r| String::from_utf8_lossy(&r.path).into_owned())
                .unwrap_or_default()
        ));
        Ok(())
    }
    fn inject_websocket(&self, _: &str, _: bool, _: bytes::Bytes, _: bool) -> Result<(), String> {
        Ok(())
    }
    fn inject_tcp(&self, _: &str, _: bool, _: bytes::Bytes) -> Result<(), String> {
        Ok(())
    }
    fn shutdown(&self) {
        self.calls.lock().unwrap().push("shutdown".into());
    }
}

#[tokio::test]
async fn changes_from_two_workers_and_merged_interest() {
    let (_dir, mut config) = config(&[
        (
            "a.py",
            "def request(flow):\n    flow.request.headers['x-a'] = '1'\n",
        ),
        (
            "b.py",
            "def response(flow):\n    pass\ndef client_disconnected(c):\n    pass\n",
        ),
    ]);
    config.workers = 2;
    let (client, scripts) = ScriptClient::start(config).await.expect("start");
    assert_eq!(scripts.len(), 2);
    let interest = client.interest();
    assert!(interest.of(Hook::Request).needs_body && interest.of(Hook::Request).awaited);
    assert!(interest.wants(Hook::Response));
    assert!(!interest.of(Hook::ClientDisconnected).awaited);
    assert!(!interest.wants(Hook::Requestheaders));
    for i in 0..6 {
        let mut flow = http_flow(&format!("/{i}"));
        flow.request.as_mut().unwrap().content = Some(bytes::Bytes::from_static(b"keep me"));
        assert_eq!(
            client.call(Hook::Request, &mut flow).await,
            Verdict::Continue
        );
        let request = flow.request.expect("request");
        assert_eq!(header_value(&request.headers, "x-a").as_deref(), Some("1"));
        assert_eq!(request.content.as_deref(), Some(&b"keep me"[..]));
    }
    client.shutdown().await;
}

#[tokio::test]
async fn startup_error_carries_the_traceback() {
    let (_dir, config) = config(&[("bad.py", "def request(flow)\n    pass\n")]);
    match ScriptClient::start(config).await {
        Err(ScriptsError::Startup { traceback }) => {
            assert!(traceback.contains("SyntaxError"), "{traceback}");
            assert!(traceback.contains("bad.py"), "{traceback}");
        }
        other => panic!("expected a startup error, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn intercept_waits_for_resume_and_kill_releases() {
    let (_dir, config) = config(&[(
        "hold.py",
        "import asyncio\n\
         async def request(flow):\n    flow.intercept()\n    \
         loop = asyncio.get_running_loop()\n    \
         loop.call_later(0.3, flow.kill if flow.request.path == '/kill' else flow.resume)\n",
    )]);
    let (client, _) = ScriptClient::start(config).await.expect("start");
    client.attach(Arc::new(RecordingCore::default()));
    let start = Instant::now();
    let mut flow = http_flow("/resume");
    assert_eq!(
        client.call(Hook::Request, &mut flow).await,
        Verdict::Continue
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
    assert!(!flow.intercepted);
    let mut flow = http_flow("/kill");
    assert_eq!(client.call(Hook::Request, &mut flow).await, Verdict::Kill);
}

#[tokio::test]
async fn controls_reach_the_core() {
    let (_dir, config) = config(&[(
        "ctl.py",
        "from mitmproxy import ctx\n\
         def response(flow):\n    ctx.master.commands.call('replay.client', [flow.copy()])\n    ctx.master.shutdown()\n",
    )]);
    let (client, _) = ScriptClient::start(config).await.expect("start");
    let core = Arc::new(RecordingCore::default());
    client.attach(core.clone());
    let mut flow = support::with_response(http_flow("/again"), "x");
    client.call(Hook::Response, &mut flow).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while core.calls.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *core.calls.lock().unwrap(),
        vec!["replay /again".to_string(), "shutdown".into()]
    );
}

#[tokio::test]
async fn timeout_fails_open_or_closed_by_policy() {
    let slow = [(
        "slow.py",
        "import time\ndef request(flow):\n    time.sleep(3)\n    flow.request.headers['x-late'] = '1'\n",
    )];
    let (_dir, mut config) = config(&slow);
    config.hook_timeout = Some(Duration::from_millis(300));
    // The default stays open; this script's own policy is closed.
    let mut closed = config.clone();
    closed
        .failure_by_script
        .insert(config.scripts[0].clone(), FailurePolicy::Closed);
    let (client, _) = ScriptClient::start(closed).await.expect("start");
    let mut flow = http_flow("/");
    assert_eq!(
        client.call(Hook::Request, &mut flow).await,
        Verdict::Respond
    );
    let response = flow.response.expect("504");
    assert_eq!(response.status_code, 504);
    assert!(String::from_utf8_lossy(&response.content.unwrap()).contains("did not answer in time"));

    let (client, _) = ScriptClient::start(config).await.expect("start");
    let mut flow = http_flow("/");
    assert_eq!(
        client.call(Hook::Request, &mut flow).await,
        Verdict::Continue
    );
    assert!(flow.response.is_none());
    assert!(header_value(&flow.request.expect("request").headers, "x-late").is_none());
}

#[tokio::test]
async fn crashed_worker_fails_closed_and_is_restarted() {
    let (_dir, mut config) = config(&[(
        "crash.py",
        "import os\ndef request(flow):\n    if flow.request.path == '/crash':\n        os._exit(3)\n    flow.request.headers['x-alive'] = '1'\n",
    )]);
    config.failure = FailurePolicy::Closed;
    let (client, _) = ScriptClient::start(config).await.expect("start");
    let mut flow = http_flow("/crash");
    assert_eq!(
        client.call(Hook::Request, &mut flow).await,
        Verdict::Respond
    );
    assert_eq!(flow.response.expect("502").status_code, 502);
    // The worker comes back; later flows are served again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut flow = http_flow("/ok");
        client.call(Hook::Request, &mut flow).await;
        let request = flow.request.expect("request");
        if header_value(&request.headers, "x-alive").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "worker was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
