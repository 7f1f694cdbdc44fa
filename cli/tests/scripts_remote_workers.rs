//! Script workers started by hand as separate processes (`flowtap script-host --listen
//! 127.0.0.1:0`), the proxy connected to them with `--script-host ADDR` (repeatable).

#![allow(missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use support::scripts::{TempScript, curl_parallel, echo_origin, header_value};
use support::{Flowtap, Lines, binary};

/// Tags each request with the pid of the worker that ran the hook.
const TAGGER: &str = r#"
import os

def request(flow):
    flow.request.headers["x-worker-pid"] = str(os.getpid())
"#;

/// A `flowtap script-host` process and the address it announced.
struct Worker {
    child: Child,
    addr: SocketAddr,
    _stdout: Lines,
}

impl Worker {
    fn start(script: &TempScript) -> Worker {
        let mut child = Command::new(binary())
            .args(["script-host", "-s", script.arg(), "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flowtap script-host");
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let line = stdout.wait_for("announcing the address", |l| {
            l.starts_with("script-host listening on ")
        });
        let addr = line["script-host listening on ".len()..]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"));
        Worker {
            child,
            addr,
            _stdout: stdout,
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn proxy_uses_two_workers_started_by_hand() {
    let script = TempScript::new("tagger.py", TAGGER);
    let workers = [Worker::start(&script), Worker::start(&script)];
    let pids: BTreeSet<String> = workers.iter().map(|w| w.child.id().to_string()).collect();
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[
        "--script-host",
        &workers[0].addr.to_string(),
        "--script-host",
        &workers[1].addr.to_string(),
    ]);
    // flowtap started no worker of its own.
    assert!(support::scripts::children_of(flowtap.pid()).is_empty());

    let (outs, _) = curl_parallel(proxy, 20, |i| {
        format!("http://127.0.0.1:{}/{i}", origin.port())
    });
    let mut seen = BTreeSet::new();
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        let pid = header_value(&out.stdout, "x-worker-pid")
            .unwrap_or_else(|| panic!("the script did not run: {out:?}"));
        assert!(pids.contains(&pid), "pid {pid} is not one of {pids:?}");
        seen.insert(pid);
    }
    assert_eq!(seen, pids, "20 flows did not use both workers");
    flowtap.stop();
}
