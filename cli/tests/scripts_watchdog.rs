//! Hooks that never return, through the real binary and real workers: 40 of them fill a
//! worker's threads; the worker exits once one is stuck past `hook_stuck_timeout` and is
//! replaced (respawned by the proxy, or restarted by hand as Kubernetes would for a shared
//! worker), and later traffic gets the script again within 10 s; so does a hook that holds the
//! interpreter (a regular expression backtracking for ever). A `request` hook past its
//! deadline is the one the 504 names: the flow's `response` hook does not time out in its place.
//! Without `hook_timeout` (the default: no deadline, as in mitmdump) a hook running past
//! `hook_stuck_timeout` is waited for while other threads are free, and the worker is replaced
//! once the stuck hooks hold all of its threads.

#![allow(missing_docs)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::Flowtap;
use support::origin::Origin;
use support::scripts::{
    TempScript, curl_parallel, curl_via, echo_origin, has_header, header_value, poll, status_of,
};
use support::worker::Worker;

/// `/forever/...` waits for an event nobody sets; `/redos` holds the interpreter for ever;
/// `/late` sleeps past the deadline; every
/// request it finishes is marked `x-script: seen`, every response `x-response: seen`.
const SCRIPT: &str = r#"
import re, threading, time

def request(flow):
    if flow.request.path.startswith("/forever"):
        threading.Event().wait()
    if flow.request.path == "/redos":
        # Backtracks for ever, in C, holding the GIL: no Python thread runs meanwhile.
        re.match(r"(a+)+$", "a" * 64 + "b")
    if flow.request.path == "/late":
        time.sleep(1.5)
    flow.request.headers["x-script"] = "seen"

def response(flow):
    flow.response.headers["x-response"] = "seen"
"#;

/// Short bounds so that the test is quick: a hook is late after 0.5 s, stuck after 2 s.
const BOUNDS: [&str; 4] = ["--set", "hook_timeout=0.5", "--set", "hook_stuck_timeout=2"];

/// No deadline (hook_timeout unset, as by default): only the stuck bound.
const NO_DEADLINE: [&str; 2] = ["--set", "hook_stuck_timeout=1"];

/// As `SCRIPT`, but `/forever` blocks only in the first worker that loaded it: without a
/// deadline a request that reaches the replacement would otherwise wait there for ever (as it
/// would in mitmdump), and a slow machine may start some of the 40 requests that late.
const FIRST_WORKER_STUCK: &str = r#"
import os, threading, time

MARK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "first-worker")
if not os.path.exists(MARK):
    with open(MARK, "w") as f:
        f.write(str(os.getpid()))
with open(MARK) as f:
    FIRST = f.read() == str(os.getpid())

def request(flow):
    if flow.request.path.startswith("/forever") and FIRST:
        threading.Event().wait()
    if flow.request.path == "/late":
        time.sleep(1.5)
    flow.request.headers["x-script"] = "seen"

def response(flow):
    flow.response.headers["x-response"] = "seen"
"#;

/// Sends 40 requests whose hooks never return, at once; each gets the policy's answer (open:
/// 200 from the origin, without the script's mark).
fn forty_never_returning_hooks(proxy: SocketAddr, origin: &Origin) {
    let (outs, took) = curl_parallel(proxy, 40, |i| {
        format!("http://127.0.0.1:{}/forever/{i}", origin.port())
    });
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(status_of(out), 200, "{out:?}");
        assert!(header_value(&out.stdout, "x-script").is_none(), "{out:?}");
    }
    eprintln!("40 stuck hooks answered by the policy in {took:?}");
}

/// Polls until a request has the script's mark again; returns how long that took.
fn until_the_script_runs_again(proxy: SocketAddr, origin: &Origin) -> Duration {
    let since = Instant::now();
    let url = format!("http://127.0.0.1:{}/after", origin.port());
    poll("a request with the script's effect again", || {
        let out = curl_via(proxy, &url, &[]);
        (out.code == 0 && has_header(&out.stdout, "x-script", "seen")).then_some(())
    });
    since.elapsed()
}

#[test]
fn forty_stuck_hooks_get_a_spawned_worker_replaced_and_the_script_back_within_10s() {
    let script = TempScript::new("stuck.py", SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[&["-s", script.arg()][..], &BOUNDS].concat());
    let old = flowtap.workers(1);
    forty_never_returning_hooks(proxy, &origin);
    let took = until_the_script_runs_again(proxy, &origin);
    eprintln!("the script ran again {took:?} after the stuck hooks were answered");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_ne!(flowtap.workers(1), old, "the worker was not replaced");
    let log = flowtap.stderr.all().join("\n");
    assert!(
        log.contains("hook request of") && log.contains("is stuck"),
        "no line names the stuck hook: {log}"
    );
    flowtap.stop();
}

#[test]
fn a_stuck_shared_worker_exits_75_the_pool_goes_on_without_it_and_rejoins_it() {
    let script = TempScript::new("stuck.py", SCRIPT);
    let mut worker = Worker::start(&script);
    let origin = echo_origin();
    let address = worker.addr.to_string();
    let (flowtap, proxy) =
        Flowtap::start(&[&["--script-host", address.as_str()][..], &BOUNDS].concat());
    forty_never_returning_hooks(proxy, &origin);
    let status = worker.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(75), "{status:?}");
    // Down meanwhile: flows go on without the script, at once (no hook deadline to wait).
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/gap", origin.port()),
        &[],
    );
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(header_value(&out.stdout, "x-script").is_none(), "{out:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "{out:?}");
    // Restarted where it was, as Kubernetes restarts the container: the pool rejoins it.
    let restarted = Worker::start_on(&script, &address);
    let took = until_the_script_runs_again(proxy, &origin);
    eprintln!("the restarted worker ran the script {took:?} after it was up");
    assert!(took < Duration::from_secs(10), "{took:?}");
    drop(restarted);
    flowtap.stop();
}

#[test]
fn a_hook_that_holds_the_interpreter_gets_its_worker_replaced_too() {
    let script = TempScript::new("stuck.py", SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[&["-s", script.arg()][..], &BOUNDS].concat());
    let old = flowtap.workers(1);
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/redos", origin.port()),
        &[],
    )
    .ok();
    assert_eq!(status_of(&out), 200, "{out:?}");
    assert!(header_value(&out.stdout, "x-script").is_none(), "{out:?}");
    let took = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        until_the_script_runs_again(proxy, &origin)
    }))
    .unwrap_or_else(|_| {
        panic!(
            "the script did not come back; flowtap said: {:#?}",
            flowtap.stderr.all()
        )
    });
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_ne!(flowtap.workers(1), old, "the worker was not replaced");
    assert!(
        flowtap.stderr.contains("no Python code has run"),
        "{:?}",
        flowtap.stderr.all()
    );
    flowtap.stop();
}

#[test]
fn a_late_request_hook_is_the_one_the_504_and_the_log_name() {
    let script = TempScript::new("late.py", SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(
        &[
            &["-s", script.arg(), "--set", "script_failure=closed"][..],
            &BOUNDS,
        ]
        .concat(),
    );
    let started = Instant::now();
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/late", origin.port()),
        &[],
    )
    .ok();
    let took = started.elapsed();
    assert_eq!(status_of(&out), 504, "{out:?}");
    assert!(
        out.stdout.contains("did not answer in time (request hook)"),
        "the 504 does not name the request hook: {out:?}"
    );
    // The response hook was not called for the flow (and so did not time out in its place).
    assert!(header_value(&out.stdout, "x-response").is_none(), "{out:?}");
    // The flow did not wait for the hook that sleeps 1.5 s.
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let line = flowtap.stderr.wait_for("the timeout's log line", |l| {
        l.contains("did not answer in time")
    });
    assert!(line.contains("hook=request"), "{line}");
    // A flow after it runs both hooks.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/quick", origin.port()),
        &[],
    )
    .ok();
    assert!(has_header(&out.stdout, "x-script", "seen"), "{out:?}");
    assert!(has_header(&out.stdout, "x-response", "seen"), "{out:?}");
    let log = flowtap.stderr.all().join("\n");
    assert!(!log.contains("hook=response"), "{log}");
    flowtap.stop();
}

#[test]
fn without_hook_timeout_forty_stuck_hooks_still_get_the_worker_replaced() {
    let script = TempScript::new("stuck.py", FIRST_WORKER_STUCK);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[&["-s", script.arg()][..], &NO_DEADLINE].concat());
    let old = flowtap.workers(1);
    // No deadline: each request stuck in the first worker waits until that worker is gone,
    // then gets the policy's answer (open: 200 without the script's mark); one that only
    // reached its replacement has the mark.
    let (outs, took) = curl_parallel(proxy, 40, |i| {
        format!("http://127.0.0.1:{}/forever/{i}", origin.port())
    });
    let mut answered_by_the_policy = 0;
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(status_of(out), 200, "{out:?}");
        if header_value(&out.stdout, "x-script").is_none() {
            answered_by_the_policy += 1;
        }
    }
    eprintln!("{answered_by_the_policy} of 40 stuck hooks answered by the policy in {took:?}");
    // The worker's 32 hook threads were all stuck before it was replaced.
    assert!(answered_by_the_policy >= 32, "{answered_by_the_policy}");
    let took = until_the_script_runs_again(proxy, &origin);
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_ne!(flowtap.workers(1), old, "the worker was not replaced");
    let log = flowtap.stderr.all().join("\n");
    assert!(
        log.contains("is stuck") && log.contains("every hook thread is taken by a stuck hook"),
        "no line says the worker's threads are all stuck: {log}"
    );
    flowtap.stop();
}

#[test]
fn without_hook_timeout_one_hook_past_the_stuck_bound_is_waited_for() {
    let script = TempScript::new("late.py", SCRIPT);
    let origin = echo_origin();
    let (flowtap, proxy) = Flowtap::start(&[&["-s", script.arg()][..], &NO_DEADLINE].concat());
    let old = flowtap.workers(1);
    let started = Instant::now();
    // Sleeps 1.5 s, past hook_stuck_timeout=1: with threads to spare it is not cut.
    let out = curl_via(
        proxy,
        &format!("http://127.0.0.1:{}/late", origin.port()),
        &[],
    )
    .ok();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(has_header(&out.stdout, "x-script", "seen"), "{out:?}");
    assert!(has_header(&out.stdout, "x-response", "seen"), "{out:?}");
    assert_eq!(flowtap.workers(1), old, "the worker was replaced");
    assert!(
        !flowtap.stderr.contains("is stuck"),
        "{:?}",
        flowtap.stderr.all()
    );
    flowtap.stop();
}
