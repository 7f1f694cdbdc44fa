//! Failure as policy, through the real binary: a worker killed with SIGKILL under load, a hook
//! past its deadline (`hook_timeout`), with `script_failure=open` and `=closed`; a syntax
//! error at start-up; an exception in a hook.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use support::origin::Origin;
use support::scripts::{
    TempScript, curl_via, echo_origin, has_header, header_value, poll, sigkill, status_of,
};
use support::{Curl, Flowtap};

/// Marks every request it sees (`x-script: seen`); `/slow` leaves a marker file and blocks
/// for 30 s (long enough to be killed in), `/sleep3` blocks for 3 s.
const SCRIPT: &str = r#"
import pathlib, time

MARK = pathlib.Path(__file__).with_name("in_hook")

def request(flow):
    if flow.request.path == "/slow":
        MARK.write_text("x")
        time.sleep(30)
    if flow.request.path == "/sleep3":
        time.sleep(3)
    flow.request.headers["x-script"] = "seen"
"#;

fn start(policy: &str, extra: &[&str]) -> (TempScript, Origin, Flowtap, SocketAddr) {
    let script = TempScript::new("policy.py", SCRIPT);
    let origin = echo_origin();
    let failure = format!("script_failure={policy}");
    let (flowtap, proxy) =
        Flowtap::start(&[&["-s", script.arg(), "--set", &failure], extra].concat());
    (script, origin, flowtap, proxy)
}

/// Sequential requests to `/fast` in a thread until stopped; returns every result.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Curl>>,
}

impl Traffic {
    fn start(proxy: SocketAddr, origin: &Origin) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://127.0.0.1:{}/fast", origin.port());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut results = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                results.push(curl_via(proxy, &url, &[]));
            }
            results
        });
        Traffic { stop, thread }
    }

    fn finish(self) -> Vec<Curl> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("traffic thread")
    }
}

/// Starts a `/slow` request in a thread, waits until its hook runs, SIGKILLs the worker;
/// returns the request's outcome and the killed worker's pid.
fn kill_worker_during_slow_hook(
    flowtap: &Flowtap,
    proxy: SocketAddr,
    origin: &Origin,
    script: &TempScript,
) -> (Curl, u32) {
    let worker = flowtap.workers(1)[0];
    let url = format!("http://127.0.0.1:{}/slow", origin.port());
    let slow = std::thread::spawn(move || curl_via(proxy, &url, &[]));
    let marker = script.sibling("in_hook");
    poll("the /slow hook to start", || marker.exists().then_some(()));
    sigkill(worker);
    (slow.join().expect("slow request thread"), worker)
}

/// Polls until a request has the script's effect again from a new worker.
fn wait_for_new_worker(flowtap: &Flowtap, proxy: SocketAddr, origin: &Origin, old: u32) {
    let url = format!("http://127.0.0.1:{}/again", origin.port());
    poll(
        "a request with the script's effect after the restart",
        || {
            let out = curl_via(proxy, &url, &[]);
            (out.code == 0 && has_header(&out.stdout, "x-script", "seen")).then_some(())
        },
    );
    let now = flowtap.workers(1);
    assert_ne!(now, vec![old], "the worker was not replaced");
}

#[test]
fn killed_worker_with_fail_open_loses_no_request_and_comes_back() {
    let (script, origin, flowtap, proxy) = start("open", &[]);
    let traffic = Traffic::start(proxy, &origin);
    let (slow, old) = kill_worker_during_slow_hook(&flowtap, proxy, &origin, &script);
    // The flow in the dead worker's hook went on, unmodified.
    assert_eq!(status_of(&slow), 200, "{slow:?}");
    assert!(slow.stdout.contains("GET /slow HTTP/1.1"), "{slow:?}");
    assert!(header_value(&slow.stdout, "x-script").is_none(), "{slow:?}");
    wait_for_new_worker(&flowtap, proxy, &origin, old);
    let results = traffic.finish();
    let unmodified = results
        .iter()
        .filter(|out| header_value(&out.stdout, "x-script").is_none())
        .count();
    eprintln!(
        "{} requests around the crash, {unmodified} passed unmodified",
        results.len()
    );
    assert!(!results.is_empty());
    for out in &results {
        assert_eq!(out.code, 0, "a request failed: {out:?}");
        assert_eq!(status_of(out), 200, "{out:?}");
    }
    flowtap.stop();
}

#[test]
fn killed_worker_with_fail_closed_answers_502_naming_the_cause() {
    let (script, origin, flowtap, proxy) = start("closed", &[]);
    let (slow, old) = kill_worker_during_slow_hook(&flowtap, proxy, &origin, &script);
    assert_eq!(status_of(&slow), 502, "{slow:?}");
    eprintln!("the 502: {}", slow.stdout);
    let body = slow.stdout.to_lowercase();
    assert!(
        body.contains("script") && (body.contains("worker") || body.contains("crash")),
        "the 502 does not name the cause: {slow:?}"
    );
    // The request never reached the origin.
    assert!(!slow.stdout.contains("GET /slow"), "{slow:?}");
    wait_for_new_worker(&flowtap, proxy, &origin, old);
    flowtap.stop();
}

#[test]
fn hook_past_its_deadline_gives_504_with_fail_closed() {
    let (_script, origin, flowtap, proxy) = start("closed", &["--set", "hook_timeout=1"]);
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/sleep3", origin.port()),
        &[],
    )
    .ok();
    assert_eq!(status_of(&out), 504, "{out:?}");
    assert!(
        out.stdout.to_lowercase().contains("timed out")
            || out.stdout.to_lowercase().contains("timeout"),
        "the 504 does not name the cause: {out:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    flowtap.stop();
}

#[test]
fn hook_past_its_deadline_passes_unmodified_with_fail_open() {
    let (_script, origin, flowtap, proxy) = start("open", &["--set", "hook_timeout=1"]);
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/sleep3", origin.port()),
        &[],
    )
    .ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(out.stdout.contains("GET /sleep3 HTTP/1.1"), "{out:?}");
    // The change the hook made after its deadline is dropped.
    assert!(header_value(&out.stdout, "x-script").is_none(), "{out:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A hook within its deadline still has its effect.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/quick", origin.port()),
        &[],
    )
    .ok();
    assert!(has_header(&out.stdout, "x-script", "seen"), "{out:?}");
    flowtap.stop();
}

#[test]
fn syntax_error_exits_1_with_the_python_error() {
    let script = TempScript::new("broken.py", "def request(flow):\n    return (\n");
    let (code, stdout, stderr) = Flowtap::run(&["-p", "0", "-s", script.arg()], &[]);
    assert_eq!(code, 1, "{stderr}");
    // As mitmdump: the error in the script on stdout, why it exits on stderr.
    assert!(stdout.contains("SyntaxError"), "{stdout}");
    assert!(stdout.contains("error in script"), "{stdout}");
    assert!(stdout.contains("broken.py"), "{stdout}");
    assert!(
        stderr.contains("Error logged during startup, exiting..."),
        "{stderr}"
    );
}

#[test]
fn exception_in_a_hook_is_logged_and_the_flow_passes_unmodified() {
    let script = TempScript::new(
        "raises.py",
        "def request(flow):\n    raise ValueError('boom in request')\n",
    );
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&["-s", script.arg()]);
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/p?a=1", origin.port()),
        &["-H", "X-Client: 1"],
    )
    .ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(out.stdout.contains("GET /p?a=1 HTTP/1.1"), "{out:?}");
    assert!(has_header(&out.stdout, "x-client", "1"), "{out:?}");
    flowtap.stdout.wait_for("with the exception", |l| {
        l.contains("ValueError: boom in request")
    });
    let log = flowtap.stdout.all().join("\n");
    assert!(log.contains("Addon error: boom in request"), "{log}");
    assert!(log.contains("Traceback"), "{log}");
    assert!(log.contains("raises.py"), "{log}");
    // Reported once, on stdout only.
    assert_eq!(log.matches("Addon error").count(), 1, "{log}");
    assert!(!flowtap.stderr.contains("boom in request"));
    flowtap.stop();
}

/// True once `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn workers_end_when_flowtap_is_killed() {
    let script = TempScript::new("orphan.py", "def request(flow):\n    pass\n");
    let (mut flowtap, _proxy) = Flowtap::start(&["-s", script.arg(), "--set", "script_workers=2"]);
    let workers = flowtap.workers(2);
    sigkill(flowtap.pid());
    let _ = flowtap.wait_exit(Duration::from_secs(10));
    poll("the workers of a killed flowtap to exit", || {
        workers.iter().all(|pid| ended(*pid)).then_some(())
    });
}
