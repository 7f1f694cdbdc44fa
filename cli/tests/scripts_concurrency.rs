//! A blocking sync hook pauses only its own flow: 20 requests whose `request` hook sleeps
//! 0.5 s overlap (mitmproxy would take 10 s); `--set script_serial=true` gives mitmproxy's
//! one-hook-at-a-time behaviour back.

#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::Flowtap;
use support::scripts::{TempScript, curl_parallel, echo_origin, has_header};

const SLEEPY: &str = r#"
import time

def request(flow):
    time.sleep(0.5)
    flow.request.headers["x-slept"] = "0.5"
"#;

const FLOWS: usize = 20;

/// Runs 20 concurrent curls through flowtap with the sleepy script; returns the elapsed time.
fn twenty_sleepy_requests(extra: &[&str]) -> Duration {
    let origin = echo_origin();
    let script = TempScript::new("sleepy.py", SLEEPY);
    let (flowtap, proxy) = Flowtap::start(&[&["-s", script.arg()], extra].concat());
    let (outs, elapsed) = curl_parallel(proxy, FLOWS, |i| {
        format!("http://127.0.0.1:{}/{i}", origin.port())
    });
    for out in &outs {
        assert_eq!(out.code, 0, "{out:?}");
        // The hook ran for every flow: the origin saw its header.
        assert!(has_header(&out.stdout, "x-slept", "0.5"), "{out:?}");
    }
    flowtap.stop();
    eprintln!("{FLOWS} requests with a 0.5 s hook, {extra:?}: {elapsed:?}");
    elapsed
}

#[test]
fn sync_hooks_of_different_flows_overlap() {
    let elapsed = twenty_sleepy_requests(&[]);
    // In sequence they take 10 s; the bound leaves room for a loaded 2-core machine.
    assert!(
        elapsed < Duration::from_secs(3),
        "20 flows with a 0.5 s hook took {elapsed:?}"
    );
}

#[test]
fn script_serial_runs_one_hook_at_a_time() {
    // Waiting for the serial turn counts against the hook's deadline (default 5 s), so the
    // last flows in line would pass unmodified without a longer one.
    let elapsed =
        twenty_sleepy_requests(&["--set", "script_serial=true", "--set", "hook_timeout=60"]);
    assert!(
        elapsed >= Duration::from_secs(9),
        "with script_serial=true 20 flows with a 0.5 s hook took only {elapsed:?}"
    );
}
